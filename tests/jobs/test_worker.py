"""The batch engine (``jobs/store.py`` + ``jobs/worker.py``) on SQLite and the real PostgreSQL, with a fast
fake scorer in place of the model (the HTTP tests in ``tests/api/test_batch.py`` use the real one): workers
sharing a job, leases taken over, a stale holder fenced off, the balance running out mid-job, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tests.storage.test_sql import pg_database, pg_url  # noqa: F401  (fixture)
from tollgate.accounts.balances import BalanceLedger
from tollgate.accounts.keys import generate_key
from tollgate.accounts.usage import UsageWriter
from tollgate.classify.request import Spec
from tollgate.jobs.objects import LocalObjectStore
from tollgate.jobs.store import ChunkOutcome, JobStore, new_job_id
from tollgate.jobs.worker import MAX_ATTEMPTS, Worker, part_key, results_key
from tollgate.services.billing import Billing
from tollgate.settings import BatchConfig
from tollgate.storage import SqlStorage, open_storage

pytestmark = pytest.mark.asyncio

PRICE = Decimal("0.001")
LABELS = ["even", "odd"]


class FakeScorer:
    """Tokens: the words of a text; label: by the number in the text. ``gate`` pauses each chunk."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    async def classify(self, spec: Spec, texts: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        return [{"label": spec.labels[int(t.split()[-1]) % 2], "confidence": 0.9} for t in texts]


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStorage]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tollgate.db'}"
    else:
        url = pg_url(request.getfixturevalue("pg_database"))
    store = open_storage(url)
    await store.migrate()

    async def empty() -> None:
        async with store.engine.begin() as conn:
            for table in ("batch_chunks", "batch_jobs", "usage", "balance_events", "api_keys", "accounts"):
                await conn.execute(sa.text(f"DELETE FROM {table}"))

    await empty()
    try:
        yield store
    finally:
        await empty()  # the PostgreSQL database is shared with tests/storage/test_sql.py
        await store.close()


class Harness:
    def __init__(self, storage: SqlStorage, tmp: Path, chunk_lines: int = 100) -> None:
        self.storage = storage
        self.jobs = JobStore(storage.engine)
        self.objects = LocalObjectStore(tmp / "files")
        self.ledger = BalanceLedger(storage, Decimal(0))
        self.billing = Billing(self.ledger, UsageWriter(storage, self.ledger))
        self.scorer = FakeScorer()
        self.config = BatchConfig(path=str(tmp / "files"), chunk_lines=chunk_lines, lease_seconds=30)

    def worker(self, lease: float | None = None) -> Worker:
        config = self.config if lease is None else self.config.model_copy(update={"lease_seconds": lease})
        return Worker(self.jobs, self.objects, self.billing, self.scorer, config, PRICE)

    async def job(self, lines: bytes, balance: str = "1000") -> str:
        account = await self.storage.ensure_account("acme")
        await self.storage.add_balance(account.id, Decimal(balance))
        key = generate_key(account.id, "batch")
        await self.storage.insert_key(key.record)
        job_id = new_job_id()
        spec = Spec(tuple(LABELS)).to_json()
        await self.jobs.create(job_id, account.id, key.record.id, spec, time.time())
        job = await self.jobs.get(job_id)
        assert job is not None

        async def body() -> AsyncIterator[bytes]:
            yield lines

        size = await self.objects.write(job.input_key, body(), 1 << 30)
        assert await self.jobs.set_input(job_id, size)
        assert await self.jobs.start(job, 1, 0, time.time())
        return job_id

    async def drain(self, *workers: Worker, timeout: float = 60) -> None:
        """Run the workers until none finds work."""

        async def loop(w: Worker) -> None:
            idle = 0
            while idle < 2:
                idle = 0 if await w.step() else idle + 1

        await asyncio.wait_for(asyncio.gather(*(loop(w) for w in workers)), timeout)

    async def results(self, job_id: str) -> list[dict[str, Any]]:
        data = b"".join([b async for b in self.objects.read(results_key(job_id))])
        return [orjson.loads(line) for line in data.splitlines()]

    async def rows(self) -> list[Any]:
        return list(reversed(await self.storage.list_usage(10_000)))

    async def balance(self) -> Decimal:
        account = await self.storage.find_account("acme")
        assert account is not None
        return account.balance


def ndjson(n: int) -> bytes:
    return b"".join(orjson.dumps({"text": f"ticket number {i}", "id": f"t{i}"}) + b"\n" for i in range(n))


def expected_bill(lines: int) -> Decimal:
    return PRICE * 3 * lines  # three words a line


async def test_workers_share_a_job_and_commit_every_line_once_in_input_order(
    storage: SqlStorage, tmp_path: Path
) -> None:
    h = Harness(storage, tmp_path)
    job_id = await h.job(ndjson(2500) + b"not json\n" + ndjson(1)[:-1])  # no final newline
    await h.drain(h.worker(), h.worker(), h.worker())
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "completed"
    assert (job.requests_total, job.requests_completed, job.requests_failed) == (2502, 2501, 1)
    results = await h.results(job_id)
    assert [r["line"] for r in results] == list(range(1, 2503))
    assert [r.get("id") for r in results[:3]] == ["t0", "t1", "t2"]
    assert results[7] == {"line": 8, "id": "t7", "label": "odd", "confidence": 0.9, "tokens": 3}
    assert results[2500] == {
        "line": 2501,
        "error": {"code": "VALIDATION_ERROR", "message": "line 2501 is not valid JSON"},
    }
    rows = await h.rows()
    assert sorted(r.request_id for r in rows) == [f"{job_id}-{i:06d}" for i in range(26)]
    assert sum(r.prompt_tokens for r in rows) == job.actual_tokens == 3 * 2501
    assert sum(r.cost for r in rows) == job.cost == expected_bill(2501)
    assert await h.balance() == Decimal(1000) - expected_bill(2501)
    assert await h.objects.size(part_key(job_id, 0)) is None  # parts removed once assembled


async def test_a_chunk_whose_worker_died_is_redone_after_its_lease_and_the_stale_holder_is_fenced_off(
    storage: SqlStorage, tmp_path: Path
) -> None:
    h = Harness(storage, tmp_path)
    job_id = await h.job(ndjson(300))
    await h.worker().step()  # splits the input
    dead = await h.jobs.claim_chunk(time.time(), lease=0.3)  # a worker that claims and dies
    assert dead is not None and dead.idx == 0
    assert await h.jobs.claim_chunk(time.time(), lease=30) is not None  # chunk 1: the lease holds chunk 0
    await asyncio.sleep(0.4)
    taken = await h.jobs.claim_chunk(time.time(), lease=30)
    assert taken is not None and taken.idx == 0  # expired: taken over
    assert not await h.jobs.checkpoint(dead, ChunkOutcome(100, 0, 300), None)  # the dead one comes back
    assert await h.jobs.checkpoint(taken, ChunkOutcome(100, 0, 300), None)
    assert not await h.jobs.checkpoint(taken, ChunkOutcome(100, 0, 300), None)  # never twice
    job = await h.jobs.get(job_id)
    assert job is not None and job.chunks_done == 1 and job.requests_completed == 100


async def test_a_killed_worker_loses_nothing_and_bills_nothing_twice(
    storage: SqlStorage, tmp_path: Path
) -> None:
    h = Harness(storage, tmp_path)
    job_id = await h.job(ndjson(1000))
    first = h.worker(lease=0.5)
    await first.step()  # split
    await first.step()  # chunk 0 committed
    h.scorer.gate = asyncio.Event()
    task = asyncio.get_running_loop().create_task(first.step())  # chunk 1, blocked in the model
    while h.scorer.calls < 2:
        await asyncio.sleep(0.01)
    task.cancel()  # the process dies here: nothing committed for chunk 1, its lease left to expire
    with pytest.raises(asyncio.CancelledError):
        await task
    h.scorer.gate = None
    await asyncio.sleep(0.6)
    await h.drain(h.worker())
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "completed" and job.requests_completed == 1000
    assert [r["line"] for r in await h.results(job_id)] == list(range(1, 1001))
    rows = await h.rows()
    assert len(rows) == 10 == len({r.request_id for r in rows})
    assert await h.balance() == Decimal(1000) - expected_bill(1000)


async def test_the_balance_running_out_fails_the_job_and_a_restart_resumes_it(
    storage: SqlStorage, tmp_path: Path
) -> None:
    h = Harness(storage, tmp_path)
    # Each chunk costs 0.3: the balance covers three chunks, the fourth is refused.
    job_id = await h.job(ndjson(1000), balance="1.0")
    await h.drain(h.worker())
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "failed" and job.chunks_done == 3
    assert job.error == {
        "code": "INSUFFICIENT_BALANCE",
        "message": "The balance does not cover lines 301-400; add credit and start the job again: "
        "it resumes from there",
    }
    account = await storage.find_account("acme")
    assert account is not None
    await storage.add_balance(account.id, Decimal(10))
    await h.ledger.refresh()
    assert await h.jobs.start(job, 1, 0, time.time())
    await h.drain(h.worker())
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "completed" and job.requests_completed == 1000
    assert len(await h.rows()) == 10
    assert await h.balance() == Decimal(11) - expected_bill(1000)


async def test_work_finished_after_a_cancel_is_not_committed_or_billed(
    storage: SqlStorage, tmp_path: Path
) -> None:
    h = Harness(storage, tmp_path)
    job_id = await h.job(ndjson(300))
    w = h.worker()
    await w.step()  # split
    h.scorer.gate = asyncio.Event()
    task = asyncio.get_running_loop().create_task(w.step())
    while h.scorer.calls < 1:
        await asyncio.sleep(0.01)
    assert await h.jobs.cancel(job_id, time.time())
    h.scorer.gate.set()
    assert await task
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "cancelled" and job.chunks_done == 0
    assert await h.rows() == []
    assert await h.balance() == Decimal(1000)
    assert not await w.step()  # nothing left to do for a cancelled job


async def test_one_active_job_per_account_is_enforced_atomically(storage: SqlStorage, tmp_path: Path) -> None:
    h = Harness(storage, tmp_path)
    await h.job(ndjson(10))
    account = await storage.find_account("acme")
    assert account is not None
    others = []
    for _ in range(4):
        job_id = new_job_id()
        await h.jobs.create(job_id, account.id, "key", Spec(tuple(LABELS)).to_json(), time.time())
        found = await h.jobs.get(job_id)
        assert found is not None
        others.append(found)
    started = await asyncio.gather(*(h.jobs.start(j, 2, 0, time.time()) for j in others))
    assert sorted(started) == [False, False, False, True]  # limit 2: one was processing already
    assert await h.jobs.active_count(account.id) == 2


async def test_a_chunk_that_keeps_failing_fails_the_job_after_its_attempts(
    storage: SqlStorage, tmp_path: Path
) -> None:
    h = Harness(storage, tmp_path)
    h.config = h.config.model_copy(update={"retry_seconds": 0})

    async def broken(spec: Spec, texts: list[str]) -> list[dict[str, Any]]:  # noqa: ARG001
        raise RuntimeError("model exploded")

    h.scorer.classify = broken  # type: ignore[method-assign]
    job_id = await h.job(ndjson(150))
    await h.drain(h.worker())
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "failed"
    assert job.error == {
        "code": "INTERNAL_ERROR",
        "message": f"Lines 1-100 failed {MAX_ATTEMPTS} times: internal error (logged)",
    }
    assert await h.rows() == [] and await h.balance() == Decimal(1000)  # failed work is not billed
    assert await h.jobs.start(job, 1, 0, time.time())  # a restart tries again, with fresh attempts
    h.scorer.classify = FakeScorer().classify  # type: ignore[method-assign]
    await h.drain(h.worker())
    job = await h.jobs.get(job_id)
    assert job is not None and job.status == "completed" and job.requests_completed == 150
