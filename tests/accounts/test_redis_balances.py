"""tollgate/accounts/redis_balances.py against the real Redis: two ledgers (two replicas) share one
account's reservations, settle atomically and never overspend past the grace buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from tests.support.memory_storage import MemoryStorage
from tests.support.redis import redis_with_prefix
from tollgate.accounts.redis_balances import RedisBalanceLedger
from tollgate.errors import InsufficientBalanceError
from tollgate.storage.base import UsageRow

D = Decimal
ACCT = "acct_a"


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    async for pair in redis_with_prefix():
        yield pair


def replicas(storage: MemoryStorage, redis: tuple[Redis, str], grace: str = "0") -> list[RedisBalanceLedger]:
    client, prefix = redis
    return [RedisBalanceLedger(storage, D(grace), client, prefix) for _ in range(2)]


def storage_with(balance: str) -> MemoryStorage:
    storage = MemoryStorage()
    storage.set_balance(ACCT, D(balance))
    return storage


async def test_reservations_on_one_replica_are_seen_by_the_other(redis: tuple[Redis, str]) -> None:
    a, b = replicas(storage_with("1"), redis)
    await a.reserve(ACCT, D("0.6"))
    with pytest.raises(InsufficientBalanceError, match="0.4 available"):
        await b.reserve(ACCT, D("0.5"))
    await b.reserve(ACCT, D("0.4"))
    assert b.available(ACCT) == D(0)


async def test_settle_releases_the_reservation_and_charges_the_cost(redis: tuple[Redis, str]) -> None:
    a, b = replicas(storage_with("1"), redis)
    r = await a.reserve(ACCT, D("0.6"))
    a.settle(r, D("0.1"))
    a.settle(r, D("0.1"))  # once only
    await a.drain()
    await b.reserve(ACCT, D("0.9"))
    with pytest.raises(InsufficientBalanceError):
        await b.reserve(ACCT, D("0.0000000001"))


async def test_grace_buffer_allows_going_that_far_below_zero_and_no_further(redis: tuple[Redis, str]) -> None:
    a, b = replicas(storage_with("0.5"), redis, grace="0.1")
    await a.reserve(ACCT, D("0.55"))
    await b.reserve(ACCT, D("0.05"))
    with pytest.raises(InsufficientBalanceError):
        await a.reserve(ACCT, D("0.0000000001"))


async def test_flushed_debits_are_not_counted_twice(redis: tuple[Redis, str]) -> None:
    storage = storage_with("1")
    a, b = replicas(storage, redis)
    r = await a.reserve(ACCT, D("0.5"))
    a.settle(r, D("0.3"))
    await a.drain()
    # The usage writer commits the debit: balance 0.7, spent 0.3; credit (balance + spent) is unchanged.
    await storage.write_usage([UsageRow("req_1", "chat", 200, 1.0, 0.0, account_id=ACCT, cost=D("0.3"))])
    a.flushed({ACCT: D("0.3")})
    await a.refresh()
    await b.refresh()
    await b.reserve(ACCT, D("0.7"))
    with pytest.raises(InsufficientBalanceError):
        await a.reserve(ACCT, D("0.0000000001"))


async def test_top_ups_are_picked_up_on_refresh(redis: tuple[Redis, str]) -> None:
    storage = storage_with("0.1")
    a, b = replicas(storage, redis)
    await a.reserve(ACCT, D("0.1"))
    with pytest.raises(InsufficientBalanceError):
        await b.reserve(ACCT, D("0.1"))
    await storage.add_balance(ACCT, D("1"))
    await b.refresh()
    await b.reserve(ACCT, D("1"))


async def test_concurrent_reservations_from_two_replicas_never_overspend(redis: tuple[Redis, str]) -> None:
    a, b = replicas(storage_with("1"), redis, grace="0.05")

    async def one(ledger: RedisBalanceLedger) -> bool:
        try:
            r = await ledger.reserve(ACCT, D("0.03"))
        except InsufficientBalanceError:
            return False
        ledger.settle(r, D("0.03"))
        return True

    results = await asyncio.gather(*(one(a if i % 2 else b) for i in range(200)))
    await a.drain()
    await b.drain()
    assert sum(results) == 35  # floor((1 + 0.05) / 0.03)
