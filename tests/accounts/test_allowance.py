"""tollgate/accounts/allowance.py: the monthly free allowance of tokens, in process and in the real Redis
held to the same behaviour (atomic, per account and UTC month, rebuilt from the usage table after a restart),
and its pricing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from tests.support.redis import redis_with_prefix
from tollgate.accounts.allowance import (
    FreeAllowance,
    LocalAllowance,
    RedisAllowance,
    billable,
    free_part,
    month_of,
)
from tollgate.accounts.pricing import cost_of
from tollgate.providers.usage import Usage
from tollgate.settings import Pricing
from tollgate.storage import SqlStorage, UsageRow, open_storage

Make = Callable[[int], FreeAllowance]
NOW = dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC).timestamp()
LAST_MONTH = dt.datetime(2026, 10, 31, 23, 59, tzinfo=dt.UTC).timestamp()
NEXT_MONTH = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()

# months, shares and prices ------------------------------------------------------------------------------------


def test_months_are_utc_calendar_months_and_december_rolls_over() -> None:
    label, start, end = month_of(NOW)
    assert label == "2026-11"
    assert start == dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp() and end == NEXT_MONTH
    assert month_of(dt.datetime(2026, 12, 31, 23, tzinfo=dt.UTC).timestamp())[0] == "2026-12"
    assert month_of(dt.datetime(2026, 12, 31, tzinfo=dt.UTC).timestamp())[2] == (
        dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    )


@pytest.mark.parametrize(
    ("used_before", "tokens", "free"),
    [(0, 30, 30), (90, 30, 10), (100, 30, 0), (150, 30, 0), (0, 0, 0)],
)
def test_the_free_part_is_what_the_request_uses_below_the_allowance(
    used_before: int, tokens: int, free: int
) -> None:
    assert free_part(100, used_before, tokens) == free


def test_free_tokens_cover_uncached_prompt_then_cached_prompt_then_completion() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=50, cached_tokens=40)
    assert billable(usage, 0) == usage
    assert billable(usage, 50) == Usage(prompt_tokens=50, completion_tokens=50, cached_tokens=40)
    assert billable(usage, 80) == Usage(prompt_tokens=20, completion_tokens=50, cached_tokens=20)
    assert billable(usage, 120) == Usage(prompt_tokens=0, completion_tokens=30, cached_tokens=0)
    assert billable(usage, 500) == Usage(prompt_tokens=0, completion_tokens=0, cached_tokens=0)


def test_a_fully_free_request_still_pays_a_per_request_price() -> None:
    pricing = Pricing(prompt=Decimal("0.001"), completion=Decimal("0.002"), request=Decimal("0.01"))
    usage = Usage(prompt_tokens=10, completion_tokens=5)
    assert cost_of(billable(usage, 15), pricing) == Decimal("0.01")
    assert cost_of(billable(usage, 12), pricing) == Decimal("0.01") + 3 * Decimal("0.002")


# both implementations ---------------------------------------------------------------------------------------


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqlStorage]:
    store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'allowance.db'}")
    await store.migrate()
    yield store
    await store.close()


def row(account_id: str, when: float, prompt: int, completion: int, **kw: object) -> UsageRow:
    return UsageRow(
        f"req_{when}_{prompt}_{completion}",
        "chat.completions",
        200,
        1.0,
        when,
        account_id=account_id,
        prompt_tokens=prompt,
        completion_tokens=completion,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "redis"])
async def make(request: pytest.FixtureRequest, storage: SqlStorage) -> AsyncIterator[Make]:
    """A factory of allowances over one storage; Redis ones share one Redis and prefix (like replicas)."""
    if request.param == "local":
        yield partial(LocalAllowance, storage)
        return
    async for redis, prefix in redis_with_prefix():
        yield partial(RedisAllowance, storage, redis=redis, prefix=prefix)


async def test_tokens_are_free_until_the_month_allowance_is_used(make: Make) -> None:
    free: FreeAllowance = make(100)
    assert await free.remaining("acct", NOW) == 100
    assert await free.take("acct", NOW, 60) == 60
    assert await free.take("acct", NOW, 60) == 40
    assert await free.take("acct", NOW, 60) == 0
    assert await free.remaining("acct", NOW) == 0


async def test_accounts_and_months_are_counted_apart(make: Make) -> None:
    free: FreeAllowance = make(100)
    assert await free.take("a", NOW, 100) == 100
    assert await free.take("b", NOW, 30) == 30
    assert await free.take("a", NEXT_MONTH, 30) == 30
    assert await free.remaining("a", NEXT_MONTH) == 70
    assert await free.remaining("b", NOW) == 70  # a request started last month still settles there


async def test_concurrent_requests_never_share_out_more_than_the_allowance(make: Make) -> None:
    free: FreeAllowance = make(1000)
    got = await asyncio.gather(*(free.take("acct", NOW, 7) for _ in range(200)))
    assert sum(got) == 1000
    assert sorted(set(got)) == [0, 6, 7]


async def test_after_a_restart_the_month_usage_comes_from_the_usage_table(
    make: Make, storage: SqlStorage
) -> None:
    acct = (await storage.ensure_account("default")).id
    await storage.write_usage(
        [
            row(acct, NOW - 3600, 30, 10),
            row(acct, NOW - 60, 15, 5),
            row(acct, LAST_MONTH, 500, 500),  # last month's tokens do not count
            row("other", NOW, 500, 500),  # nor another account's
            row(acct, NOW, 0, 0, cached=True),  # a cache hit used none
        ]
    )
    fresh: FreeAllowance = make(100)
    assert await fresh.remaining(acct, NOW) == 40
    assert await fresh.take(acct, NOW, 50) == 40


async def test_replicas_sharing_redis_share_one_allowance(storage: SqlStorage) -> None:
    async for redis, prefix in redis_with_prefix():
        one = RedisAllowance(storage, 100, redis, prefix)
        two = RedisAllowance(storage, 100, redis, prefix)
        assert await one.take("acct", NOW, 70) == 70
        assert await two.take("acct", NOW, 70) == 30
        assert await one.remaining("acct", NOW) == 0
        ttl = await redis.ttl(f"{prefix}free:acct:2026-11")
        assert 0 < ttl  # the counter goes away a day after the month ends
