"""tollgate/accounts/redis_balances.py against the real Redis: two ledgers (two replicas) share one
account's reservations, settle atomically and never overspend past the grace buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from tests.support.memory_storage import MemoryStorage
from tests.support.redis import RedisServer, redis_with_prefix
from tollgate.accounts.backends import open_redis
from tollgate.accounts.redis_balances import RedisBalanceLedger
from tollgate.errors import InsufficientBalanceError, TollgateError
from tollgate.storage.base import UsageRow
from tollgate.storage.money import from_units, to_units

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


async def state(redis: tuple[Redis, str]) -> dict[str, Decimal]:
    client, prefix = redis
    raw = await client.hgetall(prefix + "bal:" + ACCT)
    return {k.decode(): from_units(int(v)) for k, v in raw.items()}


async def test_a_reservation_nobody_settles_expires_after_its_hold(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    storage = storage_with("1")
    crashed = RedisBalanceLedger(storage, D(0), client, prefix, hold=0.3)
    survivor = RedisBalanceLedger(storage, D(0), client, prefix, hold=0.3)
    await crashed.reserve(ACCT, D("0.6"))  # never settled: its replica died
    with pytest.raises(InsufficientBalanceError):
        await survivor.reserve(ACCT, D("0.5"))
    await asyncio.sleep(0.35)
    await survivor.reserve(ACCT, D("1"))
    assert (await state(redis))["reserved"] == D(1)
    await crashed.drain()
    await survivor.drain()


async def test_over_reported_costs_are_capped_at_the_grace_across_replicas(redis: tuple[Redis, str]) -> None:
    storage = storage_with("1")
    a, b = replicas(storage, redis, grace="0.1")
    honest = await a.reserve(ACCT, D("0.3"))
    greedy = [await b.reserve(ACCT, D("0.1")) for _ in range(8)]
    for r in greedy:
        assert b.settle(r, D("5")) is None, "a cost above the reservation waits for Redis's answer"
    charged = await asyncio.gather(*(b.settle_excess(r, D("5")) for r in greedy))
    assert a.settle(honest, D("0.3")) == D("0.3"), "an honest request is charged in full"
    await a.drain()
    assert sum(charged) == D("0.8")
    assert (b.uncharged.amount, b.uncharged.requests) == (D("39.2"), 8)
    s = await state(redis)
    assert (s["credit"], s["charged"], s["reserved"]) == (D(1), D("1.1"), D(0))
    await b.drain()


async def test_reconcile_sets_charged_to_the_database_plus_what_replicas_hold_in_flight(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    storage = storage_with("1")
    a, b = replicas(storage, redis)
    r = await a.reserve(ACCT, D("0.5"))
    a.settle(r, D("0.3"))
    await a.drain()
    await storage.write_usage([UsageRow("req_1", "chat", 200, 1.0, 0.0, account_id=ACCT, cost=D("0.3"))])
    a.flushed({ACCT: D("0.3")})
    # Replica b settles 0.2 (not flushed yet); then a settle of 0.1 never reaches Redis (the row does).
    r = await b.reserve(ACCT, D("0.2"))
    b.settle(r, D("0.2"))
    await b.drain()
    await storage.write_usage([UsageRow("req_2", "chat", 200, 1.0, 0.0, account_id=ACCT, cost=D("0.1"))])
    await client.hincrby(prefix + "bal:" + ACCT, "charged", to_units(D("0.05")))  # and some drift
    assert (await state(redis))["charged"] == D("0.55")
    await a.heartbeat()
    await b.heartbeat()
    assert await a.reconcile() == {ACCT: D("0.05")}
    s = await state(redis)
    assert s["charged"] == D("0.6"), "spent 0.4 in the database + 0.2 in flight on b"
    assert await b.reconcile() == {}, "one replica reconciles per interval"
    # Once b's row is flushed, its in-flight units go with the next heartbeat; nothing counts twice.
    await storage.write_usage([UsageRow("req_3", "chat", 200, 1.0, 0.0, account_id=ACCT, cost=D("0.2"))])
    b.flushed({ACCT: D("0.2")})
    await b.heartbeat()
    assert await a.reconcile(lock=False) == {}
    assert (await state(redis))["charged"] == D("0.6")
    await b.reserve(ACCT, D("0.4"))
    with pytest.raises(InsufficientBalanceError):
        await a.reserve(ACCT, D("0.0000000001"))
    await a.drain()
    await b.drain()


async def test_reconcile_drops_the_in_flight_costs_of_a_replica_gone_silent(
    redis: tuple[Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = storage_with("1")
    a, b = replicas(storage, redis)
    r = await b.reserve(ACCT, D("0.5"))
    b.settle(r, D("0.5"))  # settled on b, which dies before its row is written: the row is lost
    await b.drain()
    await a.reconcile(lock=False)
    assert (await state(redis))["charged"] == D("0.5"), "b is alive as far as anyone knows"
    monkeypatch.setattr("tollgate.accounts.redis_balances.DEAD_AFTER", 0.05)
    await asyncio.sleep(0.1)
    await a.reconcile(lock=False)
    assert (await state(redis))["charged"] == D(0)
    await a.drain()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_a_reserve_that_times_out_in_a_stall_is_released_afterwards(own_redis: RedisServer) -> None:
    client = open_redis(own_redis.url, timeout=0.3)
    ledger = RedisBalanceLedger(storage_with("1"), D(0), client, "t:", retry_window=10)
    await ledger.settle_excess(await ledger.reserve(ACCT, D("0.1")), D(0))
    own_redis.pause()
    try:
        with pytest.raises(TollgateError) as info:
            await ledger.reserve(ACCT, D("0.9"))
        assert (info.value.status, info.value.code) == (503, "SHARED_STATE_UNAVAILABLE")
        await asyncio.sleep(0.5)
    finally:
        own_redis.resume()
    await ledger.drain()  # the release reached Redis (before or after the late reserve: either way)
    assert from_units(int(await client.hget("t:bal:" + ACCT, "reserved") or 0)) == 0
    await ledger.reserve(ACCT, D("1"))
    await client.aclose()


async def test_a_settle_that_times_out_is_retried_and_counted_once(own_redis: RedisServer) -> None:
    client = open_redis(own_redis.url, timeout=0.2)
    ledger = RedisBalanceLedger(storage_with("1"), D(0), client, "t:", retry_window=10)
    r = await ledger.reserve(ACCT, D("0.5"))
    own_redis.pause()
    try:
        assert ledger.settle(r, D("0.25")) == D("0.25")
        await asyncio.sleep(0.7)  # the first attempt and some retries time out
    finally:
        own_redis.resume()
    await ledger.drain()
    values = await client.hmget("t:bal:" + ACCT, ["charged", "reserved"])
    assert [from_units(int(v)) for v in values] == [D("0.25"), D(0)]
    await client.aclose()


async def test_reconcile_heals_a_reserved_amount_that_no_reservation_holds(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    a, b = replicas(storage_with("1"), redis)
    held = await a.reserve(ACCT, D("0.25"))
    # 0.048 reserved with no entry behind it: what a hash from before reservations had deadlines kept.
    await client.hincrby(prefix + "bal:" + ACCT, "reserved", to_units(D("0.048")))
    await b.reconcile(lock=False)
    assert (await state(redis))["reserved"] == D("0.25"), "the open reservation stays, the stuck amount goes"
    a.settle(held, D("0.25"))
    await a.drain()
    await b.reserve(ACCT, D("0.75"))
    await b.drain()


async def test_a_reserve_cancelled_while_redis_stalls_is_released_afterwards(own_redis: RedisServer) -> None:
    client = open_redis(own_redis.url, timeout=5)
    ledger = RedisBalanceLedger(storage_with("1"), D(0), client, "t:", retry_window=10)
    await ledger.settle_excess(await ledger.reserve(ACCT, D("0.1")), D(0))
    own_redis.pause()
    try:
        call = asyncio.ensure_future(ledger.reserve(ACCT, D("0.9")))
        await asyncio.sleep(0.2)  # the call is out, Redis has not answered
        call.cancel()  # e.g. the client went away
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        own_redis.resume()
    await ledger.drain()
    await asyncio.sleep(0.1)
    assert from_units(int(await client.hget("t:bal:" + ACCT, "reserved") or 0)) == 0
    await ledger.reserve(ACCT, D("1"))
    await client.aclose()
