"""Scale-out under failure: ``tollgate serve`` processes on one PostgreSQL and a Redis of the test's own
(``RedisServer``, so it can be stopped), checked for what issue 12 found broken: reservations that stuck
after a Redis stall or a killed replica, and an upstream reporting more tokens than admission counted
pushing an account far past its grace buffer."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from redis.asyncio import Redis

from tests.storage.test_sql import pg_database, pg_url  # noqa: F401  (pg_database is a fixture)
from tests.support.gateway import PRICES
from tests.support.redis import RedisServer, new_prefix
from tests.support.replicas import Cluster
from tests.support.servers import run
from tollgate.simulator import SimServer
from tollgate.storage.money import from_units

GRACE = Decimal("0.0001")
PROMPT, COMPLETION = (Decimal(PRICES[k]) for k in ("prompt", "completion"))
TIMEOUT = 3.0  # upstream_timeout: a reservation lives at most this plus the margin
MARGIN = 1.0
SERVER: dict[str, Any] = {
    "grace_buffer": str(GRACE),
    "upstream_timeout": TIMEOUT,
    "reservation_margin": MARGIN,
    "redis_timeout": 0.5,
    "reconcile_interval": 1.0,
}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def cluster(tmp: Path, sim: SimServer, db: str, redis: RedisServer, n: int = 2) -> Cluster:
    return Cluster(tmp, sim.base_url, pg_url(db), redis.url, new_prefix(), n=n, **SERVER)


def account_state(c: Cluster, redis: RedisServer, account_id: str) -> dict[str, Decimal]:
    """The account's Redis hash (credit, charged, reserved), in money."""

    async def go() -> dict[str, Decimal]:
        client = Redis.from_url(redis.url)
        try:
            raw = await client.hgetall(c.prefix + "bal:" + account_id)
            return {k.decode(): from_units(int(v)) for k, v in raw.items()}
        finally:
            await client.aclose()

    result: dict[str, Decimal] = run(go())
    return result


def wait_until_released(c: Cluster, redis: RedisServer, account_id: str, timeout: float) -> float:
    """Seconds until nothing is reserved on the account (or ``timeout``)."""
    began = time.monotonic()
    while account_state(c, redis, account_id).get("reserved") and time.monotonic() - began < timeout:
        time.sleep(0.1)
    return time.monotonic() - began


async def post(
    session: aiohttp.ClientSession, url: str, key: str, *, give_up: float = 30, **body: Any
) -> int:
    """The status, or 0 when the client gave up after ``give_up`` s or the replica went away."""
    payload = {"model": "sim-small", "messages": [{"role": "user", "content": "hello there"}], **body}
    try:
        async with session.post(
            url + "/v1/chat/completions",
            json=payload,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=give_up),
        ) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


def chat(url: str, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "sim-small", "messages": [{"role": "user", "content": "hello there"}], **body}
    return httpx.post(
        url + "/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_reservations_are_released_after_a_redis_stall_under_load(
    tmp_path: Path,
    sim: SimServer,
    pg_database: str,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    with cluster(tmp_path, sim, pg_database, redis_server) as c:
        key = c.create_key("1", "stall")  # enough for every request of the load: no 402
        acct = c.account("stall")

        async def load() -> Counter[int]:
            statuses: Counter[int] = Counter()
            stop = time.monotonic() + 9.0
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

                async def worker(i: int) -> None:
                    while time.monotonic() < stop:
                        sim_opts = {"latency_ms": 150}
                        url = c.urls[i % 2]
                        statuses[await post(session, url, key, give_up=2, max_tokens=5, sim=sim_opts)] += 1

                async def stall() -> None:
                    await asyncio.sleep(1.0)
                    redis_server.pause()
                    await asyncio.sleep(6.0)
                    redis_server.resume()

                await asyncio.gather(stall(), *(worker(i) for i in range(24)))
            return statuses

        statuses = run(load())
        assert statuses[200] > 20 and set(statuses) <= {200, 503}, statuses
        assert statuses[503] > 0, f"the stall was not felt: {statuses}"
        waited = wait_until_released(c, redis_server, acct.id, TIMEOUT + MARGIN + 3)
        state = account_state(c, redis_server, acct.id)
        assert state["reserved"] == 0, f"{state['reserved']} still reserved {waited:.1f} s after the stall"
        # Nobody holds money any more: Redis agrees with the database once the rows are written.
        rows = c.wait_for_rows(acct.id, statuses[200] + statuses[503])
        assert sum(r.status == 200 for r in rows) == statuses[200]
        time.sleep(2.5)  # a reconcile pass
        db = c.account("stall")
        state = account_state(c, redis_server, acct.id)
        assert state["credit"] - state["charged"] == db.balance, (state, db)
        assert chat(c.urls[0], key, max_tokens=5).status_code == 200


def test_a_killed_replicas_reservations_expire_and_the_account_can_spend_again(
    tmp_path: Path,
    sim: SimServer,
    pg_database: str,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    with cluster(tmp_path, sim, pg_database, redis_server) as c:
        key = c.create_key("0.002", "killed")
        acct = c.account("killed")
        victim, survivor = c.replicas

        async def in_flight() -> list[int]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                calls = [
                    asyncio.ensure_future(
                        post(session, victim.url, key, max_tokens=50, sim={"latency_ms": 2500})
                    )
                    for _ in range(20)
                ]
                await asyncio.sleep(1.0)
                victim.proc.send_signal(signal.SIGKILL)
                return list(await asyncio.gather(*calls))

        killed_at = time.monotonic()
        statuses = run(in_flight())
        assert 0 in statuses, statuses  # requests were cut by the kill
        held = account_state(c, redis_server, acct.id)["reserved"]
        assert held > 0
        # A request that needs more than what the dead replica's reservations leave is refused for now...
        assert chat(survivor.url, key, max_tokens=200).status_code == 402
        # ...and served once they expire: at most upstream_timeout + reservation_margin after they were made.
        waited = wait_until_released(c, redis_server, acct.id, TIMEOUT + MARGIN + 3)
        assert account_state(c, redis_server, acct.id)["reserved"] == 0, f"{held} reserved, stuck"
        assert time.monotonic() - killed_at <= TIMEOUT + MARGIN + 1.5, waited
        assert chat(survivor.url, key, max_tokens=200).status_code == 200


def test_an_over_reporting_upstream_cannot_push_an_account_past_its_grace(
    tmp_path: Path,
    sim: SimServer,
    pg_database: str,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    balance = Decimal("0.002")
    with cluster(tmp_path, sim, pg_database, redis_server) as c:
        key = c.create_key(str(balance), "overreport")
        acct = c.account("overreport")

        async def fire() -> list[int]:
            # Admission counts ~20 prompt tokens; the upstream reports 5,000 for each (0.005 at the price);
            # half the requests stream.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                sim_opts = {"prompt_tokens": 5000, "latency_ms": 200}
                return list(
                    await asyncio.gather(
                        *(
                            post(session, c.urls[i % 2], key, max_tokens=5, stream=i % 4 > 1, sim=sim_opts)
                            for i in range(300)
                        )
                    )
                )

        statuses = run(fire())
        counts = Counter(statuses)
        assert set(counts) <= {200, 402} and counts[200] > 1, counts
        rows = c.wait_for_rows(acct.id, 300)
        assert len(rows) == 300
        served = [r for r in rows if r.status == 200]
        assert all(r.prompt_tokens == 5000 for r in served), "rows keep the tokens the upstream reported"
        db = c.account("overreport")
        assert db.balance >= -GRACE, (
            f"overspent: balance {db.balance} = {-db.balance / GRACE:.1f} x the grace"
        )
        assert db.spent == sum((r.cost for r in rows), Decimal(0))
        uncharged = sum(
            (Decimal(httpx.get(u + "/healthz").json()["uncharged"]["amount"]) for u in c.urls), Decimal(0)
        )
        full = sum((r.prompt_tokens * PROMPT + r.completion_tokens * COMPLETION for r in served), Decimal(0))
        assert uncharged == full - db.spent, (uncharged, full, db.spent)
