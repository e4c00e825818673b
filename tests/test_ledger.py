"""The usage ledger end to end, on real ``tollgate serve`` processes: no client input stops billing, and a
``kill -9`` loses no row of a request that was answered (or whose stream had begun)."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.storage.test_sql import pg_database, pg_url  # noqa: F401  (pg_database is a fixture)
from tests.support.gateway import gateway_config
from tests.support.redis import REDIS_URL, connect, delete_prefix, new_prefix
from tests.support.replicas import Cluster, Replica
from tests.support.servers import run
from tollgate.accounts.keys import generate_key
from tollgate.simulator import SimServer
from tollgate.storage import SqlStorage, UsageRow, open_storage

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def pg_cluster(tmp_path: Path, sim: SimServer, pg_database: str) -> Iterator[Cluster]:  # noqa: F811
    prefix = new_prefix()
    try:
        with Cluster(tmp_path, sim.base_url, pg_url(pg_database), REDIS_URL, prefix, n=1) as c:
            yield c
    finally:

        async def clean() -> None:
            redis = await connect()
            await delete_prefix(redis, prefix)
            await redis.aclose()

        run(clean())


def healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


async def post(session: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def test_a_poison_request_on_postgresql_stops_no_billing(pg_cluster: Cluster) -> None:
    """A 201-character model name and a NUL byte in the model used to wedge the writer on PostgreSQL."""
    poison_key = pg_cluster.create_key("0", "poison")
    paid_key = pg_cluster.create_key("1", "paid")
    url = pg_cluster.urls[0]

    async def go() -> tuple[list[int], list[int]]:
        async with aiohttp.ClientSession() as session:
            poison = [
                await post(session, url, poison_key, {"model": "m" * 201, "messages": MESSAGES}),
                await post(session, url, poison_key, {"model": "sim-\u0000small", "messages": MESSAGES}),
            ]
            paid = await asyncio.gather(
                *(
                    post(
                        session, url, paid_key, {"model": "sim-small", "messages": MESSAGES, "max_tokens": 20}
                    )
                    for _ in range(100)
                )
            )
            return poison, list(paid)

    poison, paid = run(go())
    assert all(400 <= s < 500 for s in poison), poison
    assert paid == [200] * 100
    acct = pg_cluster.account("paid")
    rows = pg_cluster.wait_for_rows(acct.id, 100)
    assert len(rows) == 100 and {r.status for r in rows} == {200}
    assert pg_cluster.account("paid").balance == Decimal(1) - sum((r.cost for r in rows), Decimal(0))
    assert sum(r.cost for r in rows) > 0
    poisoned = pg_cluster.wait_for_rows(pg_cluster.account("poison").id, 2)
    assert sorted(len(r.model or "") for r in poisoned) == [9, 200]  # kept, bounded: "sim-small", 200 x "m"
    health = healthz(url)
    assert health["usage_rows_pending"] == 0 and health["usage_rows_rejected"] == 0


# kill -9 under load -------------------------------------------------------------------------------------


class Load:
    """``clients`` concurrent clients sending chat requests (every third one a slow stream) until stopped;
    records the request id of every 200 answered in full, and of every stream whose first byte arrived."""

    def __init__(self, url: str, key: str, clients: int) -> None:
        self.url, self.key, self.clients = url, key, clients
        self.answered: set[str] = set()
        self.streams_begun: set[str] = set()
        self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(self._client(session, i, stop) for i in range(self.clients)))

    async def _client(self, session: aiohttp.ClientSession, i: int, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        n = 0
        while not stop.is_set():
            n += 1
            stream = (i + n) % 3 == 0
            body: dict[str, Any] = {"model": "sim-small", "messages": MESSAGES, "max_tokens": 30}
            if stream:
                body.update(stream=True, sim={"completion_tokens": 30, "chunk_delay_ms": 25})
            try:
                async with session.post(
                    self.url + "/v1/chat/completions", json=body, headers=headers
                ) as resp:
                    request_id = resp.headers.get("X-Request-ID", "")
                    if stream and resp.status == 200:
                        await resp.content.readany()  # the first byte
                        self.streams_begun.add(request_id)
                    await resp.read()
                    if resp.status == 200:
                        self.answered.add(request_id)
            except (TimeoutError, aiohttp.ClientError):
                self.failed += 1
                await asyncio.sleep(0.05)


async def _rows(db_url: str) -> list[UsageRow]:
    store: SqlStorage = open_storage(db_url)
    try:
        return await store.list_usage(1_000_000)
    finally:
        await store.close()


async def _create_key(db_url: str, account: str, balance: Decimal) -> str:
    store: SqlStorage = open_storage(db_url)
    try:
        acct = await store.ensure_account(account)
        await store.add_balance(acct.id, balance)
        new = generate_key(acct.id, "load")
        await store.insert_key(new.record)
        return new.secret
    finally:
        await store.close()


async def _account_id(db_url: str, name: str) -> str:
    store: SqlStorage = open_storage(db_url)
    try:
        acct = await store.find_account(name)
        assert acct is not None
        return acct.id
    finally:
        await store.close()


async def _balance(db_url: str, name: str) -> Decimal:
    store: SqlStorage = open_storage(db_url)
    try:
        acct = await store.find_account(name)
        assert acct is not None
        return acct.balance
    finally:
        await store.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_under_load_loses_no_row_of_an_answered_request(
    request: pytest.FixtureRequest, tmp_path: Path, sim: SimServer, database: str
) -> None:
    if database == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'tollgate.db'}"
    else:
        db_url = pg_url(request.getfixturevalue("pg_database"))
    account = "load-" + secrets.token_hex(4)
    config_path = tmp_path / "tollgate.yaml"
    # A slow flush, so that many answered rows wait for the database when the process dies.
    config_path.write_text(yaml.safe_dump(gateway_config(sim.base_url, db_url, usage_flush_interval=5.0)))
    first = Replica(config_path, tmp_path / "first.log")
    first.wait_ready()
    key = run(_create_key(db_url, account, Decimal(100)))
    load = Load(first.url, key, clients=24)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(load.run(stop))
        await asyncio.sleep(2.0)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        stop.set()
        await task

    run(go())
    first.stop()
    assert len(load.answered) > 50 and len(load.streams_begun) > 5, (len(load.answered), load.streams_begun)
    stored_at_kill = {r.request_id for r in run(_rows(db_url))}
    missing_at_kill = load.answered - stored_at_kill

    second = Replica(config_path, tmp_path / "second.log")
    try:
        second.wait_ready()  # the dead process's journal is replayed before it serves
        account_id = run(_account_id(db_url, account))
        rows = [r for r in run(_rows(db_url)) if r.account_id == account_id]
        by_id: dict[str, list[UsageRow]] = {}
        for r in rows:
            by_id.setdefault(r.request_id, []).append(r)
        lost = (load.answered | load.streams_begun) - set(by_id)
        sys.stderr.write(
            f"kill -9 under load ({database}): {len(load.answered)} answered, {len(load.streams_begun)} streams begun, "
            f"{len(missing_at_kill)} answered rows not in the database at the kill, {len(lost)} lost after restart\n"
        )
        assert missing_at_kill, (
            "the kill should leave answered rows not yet flushed (else the test proves nothing)"
        )
        assert lost == set()
        assert all(len(v) == 1 for v in by_id.values())
        restarted = [r for r in rows if r.error_code == "GATEWAY_RESTARTED"]
        assert restarted, "streams in flight at the kill are billed for what was sent"
        assert all(r.stream and r.estimated and r.status == 499 and r.cost > 0 for r in restarted)
        balance = run(_balance(db_url, account))
        assert balance == Decimal(100) - sum((r.cost for r in rows), Decimal(0))
        assert healthz(second.url)["journal"]["segments"] <= 1
        leftover = [p.name for p in (tmp_path / "journal").iterdir() if not p.name.startswith(".")]
        assert len([n for n in leftover if n.endswith(".lock")]) == 1  # only the live process's
    finally:
        second.stop()
