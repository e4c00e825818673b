"""tollgate/services/billing.py: the monthly free allowance applied at settle, through the gateway with the
openai SDK, on SQLite (one process, rebuilt after a restart) and on the real Redis (shared by replicas); and
the one row of a request made of several model calls (``merged_row``, ``UsageCollector``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_classify import llm_sections
from tests.support.gateway import Gateway
from tests.support.redis import REDIS_URL, connect, delete_prefix, new_prefix
from tests.support.servers import run
from tollgate.services.billing import merged_row
from tollgate.services.context import RequestContext
from tollgate.simulator import SimServer
from tollgate.storage.base import UsageRow

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


# several model calls, one row -------------------------------------------------------------------------------


def call_row(status: int = 200, **kw: Any) -> UsageRow:
    """The row one model call of a batch settles (``RequestContext.rows`` takes it instead of the writer)."""
    return UsageRow(
        request_id="req_x-0", endpoint="classify.batch", status=status, latency_ms=1, created_at=0, **kw
    )


def test_merged_row_sums_the_calls_and_is_200_when_any_succeeded() -> None:
    ctx = RequestContext(endpoint="classify.batch", request_id="req_batch")
    rows = [
        call_row(400, error_code="UPSTREAM_REJECTED", model="m", attempts=1),
        call_row(
            prompt_tokens=10,
            completion_tokens=2,
            cached_tokens=4,
            cost=Decimal("0.3"),
            provider="a",
            model="m",
            upstream_model="up-a",
            attempts=1,
        ),
        call_row(
            prompt_tokens=7,
            completion_tokens=3,
            cost=Decimal("0.25"),
            provider="b",
            model="m2",
            upstream_model="up-b",
            attempts=2,
            estimated=True,
        ),
        call_row(
            prompt_tokens=5,
            completion_tokens=1,
            cost=Decimal("0.05"),
            provider="b",
            model="m2",
            upstream_model="up-b",
            attempts=1,
        ),
    ]
    row = merged_row(ctx, rows)
    assert (row.request_id, row.endpoint, row.status, row.error_code) == (
        "req_batch",
        "classify.batch",
        200,
        None,
    )
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (22, 6, 4)
    assert row.cost == Decimal("0.60") and row.attempts == 5 and row.estimated
    # The calls differ: the provider and model that served most of the successful calls.
    assert (row.provider, row.model, row.upstream_model) == ("b", "m2", "up-b")


def test_merged_row_of_calls_that_all_failed_is_the_first_failure() -> None:
    ctx = RequestContext(endpoint="tag.batch")
    rows = [
        call_row(429, error_code="RATE_LIMIT_EXCEEDED", model="m"),
        call_row(503, error_code="UPSTREAM_UNAVAILABLE", model="m"),
    ]
    row = merged_row(ctx, rows)
    assert (row.status, row.error_code, row.cost, row.model, row.provider) == (
        429,
        "RATE_LIMIT_EXCEEDED",
        0,
        "m",
        None,
    )
    assert merged_row(ctx, []).status == 499


def test_an_llm_batch_counts_each_call_against_the_allowance_and_leaves_one_row(
    tmp_path: Path, sim: SimServer
) -> None:
    with Gateway(tmp_path, sim.base_url, sections=llm_sections(sim), free_tokens_per_month=10) as gw:
        key = gw.create_key()
        texts = ["one", "two", "three"]
        r = httpx.post(
            gw.base_url + "/classify/batch",
            json={"texts": texts, "labels": ["billing", "shipping"]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        [row] = gw.usage_rows(expect=1)
        assert row.request_id == r.headers["x-request-id"] and row.status == 200
        assert row.prompt_tokens > 3 * 10, "every call has more prompt tokens than the allowance"
        # The first call to settle took the 10 free tokens (prompt tokens first); the rest is billed.
        assert row.cost == (row.prompt_tokens - 10) * PROMPT + row.completion_tokens * COMPLETION
        assert gw.balance() == 10 - row.cost
        assert free_remaining(gw, key) == 0


def test_admission_waits_while_the_usage_writer_is_over_its_limit(tmp_path: Path, sim: SimServer) -> None:
    """Back-pressure: past ``usage_queue_limit`` waiting rows, a new request waits at admission until the
    writer has flushed; nothing is dropped."""
    with Gateway(tmp_path, sim.base_url, usage_queue_limit=3, usage_flush_interval=3.0) as gw:
        key = gw.create_key()
        for _ in range(3):
            ask(gw, key, 10, 5)
        health = httpx.get(gw.server.url + "/healthz", timeout=10).json()
        assert health["usage_rows_pending"] == 3 and health["usage_backpressure"] is True
        began = time.monotonic()
        ask(gw, key, 10, 5)
        assert time.monotonic() - began > 1.0, "the fourth request waited for the flush"
        rows = gw.usage_rows(expect=4)
        assert len(rows) == 4 and {r.status for r in rows} == {200}
        assert gw.balance() == 10 - sum(r.cost for r in rows)


@pytest.mark.parametrize("stream", [False, True])
def test_an_over_reporting_upstream_cannot_take_an_account_past_its_grace(
    tmp_path: Path, sim: SimServer, stream: bool
) -> None:
    """200 concurrent requests on one process, each reported at 5,000 prompt tokens where admission
    counted ~25: the balance ends at >= -grace exactly, rows keep the reported tokens, the shortfall is
    in /healthz (before settling capped the cost: -0.12826, 1,282.6 x the grace of 0.0001)."""
    import asyncio

    import aiohttp

    grace = Decimal("0.0001")
    with Gateway(tmp_path, sim.base_url, grace_buffer=str(grace)) as gw:
        key = gw.create_key(balance="0.002")
        body = {
            "model": "sim-small",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 5,
            "stream": stream,
            "sim": {"prompt_tokens": 5000, "latency_ms": 100},
        }

        async def fire() -> list[int]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

                async def one() -> int:
                    async with session.post(
                        gw.base_url + "/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {key}"},
                    ) as resp:
                        await resp.read()
                        return resp.status

                return list(await asyncio.gather(*(one() for _ in range(200))))

        statuses = run(fire())
        assert set(statuses) <= {200, 402} and statuses.count(200) > 1, statuses
        rows = gw.usage_rows(expect=200)
        served = [r for r in rows if r.status == 200]
        assert len(rows) == 200 and all(r.prompt_tokens == 5000 for r in served)
        balance = gw.balance()
        assert balance >= -grace, f"balance {balance}: {-balance / grace:.1f} x the grace"
        assert balance == Decimal("0.002") - sum((r.cost for r in rows), Decimal(0))
        reported = sum(
            (r.prompt_tokens * PROMPT + r.completion_tokens * COMPLETION for r in served), Decimal(0)
        )
        uncharged = httpx.get(gw.server.url + "/healthz").json()["uncharged"]
        assert Decimal(uncharged["amount"]) == reported - (Decimal("0.002") - balance)
        assert uncharged["requests"] >= 1
