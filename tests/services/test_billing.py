"""tollgate/services/billing.py: the monthly free allowance applied at settle, through the gateway with the
openai SDK, on SQLite (one process, rebuilt after a restart) and on the real Redis (shared by replicas)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway
from tests.support.redis import REDIS_URL, connect, delete_prefix, new_prefix
from tests.support.servers import run
from tollgate.simulator import SimServer

PROMPT, COMPLETION = Decimal("0.000001"), Decimal("0.000002")  # tests/support/gateway.py PRICES


def ask(gw: Gateway, key: str, prompt: int, completion: int) -> Any:
    """A chat request whose usage is ``prompt`` + ``completion`` tokens; its raw response."""
    return gw.client(key).chat.completions.with_raw_response.create(
        model="sim-small",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=64,
        extra_body={"sim": {"prompt_tokens": prompt, "completion_tokens": completion}},
    )


def free_remaining(gw: Gateway, key: str) -> Any:
    got = httpx.get(gw.base_url + "/balance", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert got.status_code == 200
    return got.json()["free_tokens_remaining"]


def test_tokens_within_the_month_allowance_cost_nothing_and_past_it_normal_prices(
    tmp_path: Path, sim: SimServer
) -> None:
    with Gateway(tmp_path, sim.base_url, free_tokens_per_month=100) as gw:
        key = gw.create_key()
        assert free_remaining(gw, key) == 100
        assert ask(gw, key, 30, 20).headers["x-tokens-used"] == "50"
        assert free_remaining(gw, key) == 50
        ask(gw, key, 40, 20)  # 50 free: the 40 prompt tokens, then 10 of the completion tokens
        ask(gw, key, 30, 20)  # nothing free
        rows = gw.usage_rows(expect=3)
        assert [r.cost for r in rows] == [0, 10 * COMPLETION, 30 * PROMPT + 20 * COMPLETION]
        assert free_remaining(gw, key) == 0
        assert gw.balance() == 10 - sum(r.cost for r in rows)


def test_streams_get_the_allowance_and_carry_their_usage_in_the_last_chunk(
    tmp_path: Path, sim: SimServer
) -> None:
    with Gateway(tmp_path, sim.base_url, free_tokens_per_month=100) as gw:
        key = gw.create_key()
        raw = gw.client(key).chat.completions.with_raw_response.create(
            model="sim-small",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=64,
            stream=True,
            extra_body={"sim": {"prompt_tokens": 30, "completion_tokens": 20}},
        )
        assert "x-tokens-used" not in raw.headers  # sent before the usage is known
        chunks = list(raw.parse())
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 50
        assert gw.usage_rows(expect=1)[0].cost == 0
        assert free_remaining(gw, key) == 50


def test_after_a_restart_the_allowance_used_this_month_is_remembered(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, free_tokens_per_month=100) as gw:
        key = gw.create_key()
        ask(gw, key, 30, 30)
        gw.usage_rows(expect=1)
    with Gateway(tmp_path, sim.base_url, free_tokens_per_month=100) as gw:
        assert free_remaining(gw, key) == 40
        ask(gw, key, 40, 10)
        assert gw.usage_rows(expect=2)[1].cost == 10 * COMPLETION


def test_without_an_allowance_the_balance_reports_none_and_every_token_is_billed(gateway: Gateway) -> None:
    key = gateway.create_key()
    assert free_remaining(gateway, key) is None
    ask(gateway, key, 30, 20)
    assert gateway.usage_rows(expect=1)[0].cost == 30 * PROMPT + 20 * COMPLETION


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    async def reachable() -> None:  # fails, not skips, when Redis is down
        await (await connect()).aclose()

    run(reachable())
    prefix = new_prefix()
    yield prefix

    async def clean() -> None:
        redis = await connect()
        await delete_prefix(redis, prefix)
        await redis.aclose()

    run(clean())


def test_replicas_sharing_redis_share_the_allowance(
    tmp_path: Path, sim: SimServer, redis_prefix: str
) -> None:
    shared: dict[str, Any] = {"free_tokens_per_month": 100, "redis_prefix": redis_prefix}
    with (
        Gateway(tmp_path, sim.base_url, sections={"redis_url": REDIS_URL}, **shared) as one,
        Gateway(tmp_path, sim.base_url, sections={"redis_url": REDIS_URL}, **shared) as two,
    ):
        key = one.create_key()
        ask(one, key, 40, 20)  # 60 free
        one.usage_rows(expect=1)
        ask(two, key, 40, 20)  # 40 free: the prompt tokens
        rows = one.usage_rows(expect=2)
        assert [r.cost for r in rows] == [0, 20 * COMPLETION]
        assert free_remaining(one, key) == free_remaining(two, key) == 0
