"""Scale-out: two ``tollgate serve`` processes on one PostgreSQL and one Redis behave like one gateway —
a consistent balance (no overspend past the grace buffer, no lost usage row) and shared rate limits."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import aiohttp
import httpx
import pytest

from tests.storage.test_sql import pg_database, pg_url  # noqa: F401  (pg_database is a fixture)
from tests.support.redis import REDIS_URL, connect, delete_prefix, new_prefix
from tests.support.replicas import Cluster
from tests.support.servers import run
from tollgate.simulator import SimServer

GRACE = Decimal("0.0001")


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    sim: SimServer,
    pg_database: str,  # noqa: F811
) -> Iterator[Cluster]:
    prefix = new_prefix()
    try:
        with Cluster(
            tmp_path_factory.mktemp("replicas"),
            sim.base_url,
            pg_url(pg_database),
            REDIS_URL,
            prefix,
            grace_buffer=str(GRACE),
            tiers={"shared": {"rpm": 7}},
        ) as c:
            yield c
    finally:

        async def clean() -> None:
            redis = await connect()
            await delete_prefix(redis, prefix)
            await redis.aclose()

        run(clean())


async def fire(urls: list[str], key: str, n: int, **body: object) -> list[int]:
    """``n`` chat requests at once, alternating between the replicas; their statuses in order."""
    payload = {"model": "sim-small", "messages": [{"role": "user", "content": "hello there"}], **body}
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> int:
            async with session.post(
                urls[i % len(urls)] + "/v1/chat/completions", json=payload, headers=headers
            ) as resp:
                await resp.read()
                return resp.status

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_1000_concurrent_requests_on_two_replicas_never_overspend_and_lose_no_row(
    cluster: Cluster,
) -> None:
    balance = Decimal("0.002")
    key = cluster.create_key(str(balance), "overspend")
    statuses = run(fire(cluster.urls, key, 1000, max_tokens=20))
    counts = Counter(statuses)
    assert set(counts) <= {200, 402}, counts
    assert counts[200] > 10 and counts[402] > 10, counts

    acct = cluster.account("overspend")
    rows = cluster.wait_for_rows(acct.id, 1000)
    assert len(rows) == 1000, "exactly one usage row per request"
    assert Counter(r.status for r in rows) == counts
    acct = cluster.account("overspend")
    assert acct.balance >= -GRACE, f"overspent: balance {acct.balance}"
    assert acct.spent == sum((r.cost for r in rows), Decimal(0))
    assert acct.balance == balance - acct.spent


def test_rate_limits_are_shared_by_the_replicas(cluster: Cluster) -> None:
    key = cluster.create_key("1", "limited", tier="shared")
    statuses = run(fire(cluster.urls, key, 20, max_tokens=5))
    assert Counter(statuses) == {200: 7, 429: 13}


def test_the_response_cache_is_shared_by_the_replicas(cluster: Cluster) -> None:
    key = cluster.create_key("1", "cached")
    body = {
        "model": "sim-small",
        "messages": [{"role": "user", "content": "shared " + secrets.token_hex(4)}],
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {key}"}
    first, second = (
        httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        for url in cluster.urls
    )
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json() == first.json()
    acct = cluster.account("cached")
    rows = cluster.wait_for_rows(acct.id, 2)
    assert sorted(r.cached for r in rows) == [False, True]
