"""The job and chunk rows (``batch_jobs``, ``batch_chunks``): every state change is one conditional statement
or one transaction, so any number of workers, on one machine or many, share the work safely.

Claims take a lease (a random token and an expiry) with a conditional ``UPDATE``; on PostgreSQL the candidate
is first picked with ``FOR UPDATE SKIP LOCKED`` so concurrent workers do not queue on the same row (SQLite
serialises writers and ignores the clause). A worker that dies leaves its lease to expire, and the next claim
takes the work over. A chunk's checkpoint (``checkpoint``) fences on the lease token: the results' counters,
the chunk's usage row and its debit commit together, or not at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollgate.jobs.lines import Chunk
from tollgate.storage.base import KeyRecord, UsageRow
from tollgate.storage.money import from_units, to_units
from tollgate.storage.sql import _key, _write_usage
from tollgate.storage.tables import accounts, api_keys, batch_chunks, batch_jobs

ACTIVE = "processing"
STARTABLE = ("pending", "failed")


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    account_id: str
    key_id: str
    status: str
    spec: dict[str, Any]
    input_key: str
    input_bytes: int | None
    requests_total: int | None
    requests_completed: int
    requests_failed: int
    estimated_tokens: int | None
    actual_tokens: int
    cost: Decimal
    chunks_total: int | None
    chunks_done: int
    error: dict[str, Any] | None
    created_at: float
    started_at: float | None
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class ChunkClaim:
    job: JobRecord
    idx: int
    start: int
    end: int
    first_line: int
    lines: int
    token: str
    attempts: int  # this claim included


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    completed: int
    failed: int
    tokens: int


class _Undo(Exception):
    """Roll the transaction back: a condition of the change did not hold."""


def new_job_id() -> str:
    return "batch_" + secrets.token_hex(12)


def _job(row: Row[Any]) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=m["id"],
        account_id=m["account_id"],
        key_id=m["key_id"],
        status=m["status"],
        spec=dict(m["spec"]),
        input_key=m["input_key"],
        input_bytes=m["input_bytes"],
        requests_total=m["requests_total"],
        requests_completed=m["requests_completed"],
        requests_failed=m["requests_failed"],
        estimated_tokens=m["estimated_tokens"],
        actual_tokens=m["actual_tokens"],
        cost=from_units(m["cost_units"]),
        chunks_total=m["chunks_total"],
        chunks_done=m["chunks_done"],
        error=m["error"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
    )


def _free(table: Any, now: float) -> Any:
    """Nobody holds the row's lease (never taken, or expired)."""
    return or_(table.c.lease_until.is_(None), table.c.lease_until < now)


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # the API's operations ---------------------------------------------------------------------------------
    async def create(
        self, job_id: str, account_id: str, key_id: str, spec: dict[str, Any], now: float
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(batch_jobs).values(
                    id=job_id,
                    account_id=account_id,
                    key_id=key_id,
                    status="pending",
                    spec=spec,
                    input_key=f"jobs/{job_id}/input.ndjson",
                    requests_completed=0,
                    requests_failed=0,
                    actual_tokens=0,
                    cost_units=0,
                    chunks_done=0,
                    created_at=now,
                )
            )

    async def get(self, job_id: str, account_id: str | None = None) -> JobRecord | None:
        q = select(batch_jobs).where(batch_jobs.c.id == job_id)
        if account_id is not None:
            q = q.where(batch_jobs.c.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _job(row) if row else None

    async def page(self, account_id: str, limit: int, after: JobRecord | None) -> list[JobRecord]:
        """Newest first; ``after``: only jobs older than that one (the previous page's last)."""
        c = batch_jobs.c
        q = select(batch_jobs).where(c.account_id == account_id)
        if after is not None:
            q = q.where(
                or_(c.created_at < after.created_at, and_(c.created_at == after.created_at, c.id < after.id))
            )
        q = q.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_job(r) for r in await conn.execute(q)]

    async def set_input(self, job_id: str, size: int) -> bool:
        """Record an uploaded input; only while the job is pending (or failed before it was split)."""
        c = batch_jobs.c
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(batch_jobs)
                .where(c.id == job_id, c.status.in_(STARTABLE), c.chunks_total.is_(None))
                .values(input_bytes=size)
            )
        return bool(res.rowcount == 1)

    async def start(self, job: JobRecord, limit: int, estimated_tokens: int, now: float) -> bool:
        """Move a pending or failed job to processing, unless the account already has ``limit`` jobs
        processing. Atomic: the count and the change are one statement, under the account's row lock on
        PostgreSQL (two starts of one account queue on it) and under SQLite's write lock."""
        c = batch_jobs.c
        active = (
            select(func.count())
            .select_from(batch_jobs)
            .where(c.account_id == job.account_id, c.status == ACTIVE)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            await conn.execute(select(accounts.c.id).where(accounts.c.id == job.account_id).with_for_update())
            res = await conn.execute(
                update(batch_jobs)
                .where(c.id == job.id, c.status.in_(STARTABLE), active < limit)
                .values(
                    status=ACTIVE,
                    started_at=func.coalesce(c.started_at, now),
                    estimated_tokens=estimated_tokens,
                    error=None,
                    completed_at=None,
                )
            )
            if res.rowcount != 1:
                return False
            # A restarted job's failing chunks get their attempts back.
            ch = batch_chunks.c
            await conn.execute(
                update(batch_chunks).where(ch.job_id == job.id, ch.status != "done").values(attempts=0)
            )
        return True

    async def active_count(self, account_id: str) -> int:
        q = select(func.count()).where(batch_jobs.c.account_id == account_id, batch_jobs.c.status == ACTIVE)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar() or 0)

    async def cancel(self, job_id: str, now: float) -> bool:
        c = batch_jobs.c
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(batch_jobs)
                .where(c.id == job_id, c.status.in_((*STARTABLE, ACTIVE)))
                .values(status="cancelled", completed_at=now, lease_token=None, lease_until=None)
            )
        return bool(res.rowcount == 1)

    async def delete(self, job_id: str) -> bool:
        """Remove a job that is not processing, with its chunks."""
        c = batch_jobs.c
        try:
            async with self.engine.begin() as conn:
                await conn.execute(delete(batch_chunks).where(batch_chunks.c.job_id == job_id))
                res = await conn.execute(delete(batch_jobs).where(c.id == job_id, c.status != ACTIVE))
                if res.rowcount != 1:
                    raise _Undo
        except _Undo:
            return False
        return True

    async def fail(self, job_id: str, error: dict[str, Any], now: float) -> None:
        c = batch_jobs.c
        async with self.engine.begin() as conn:
            await conn.execute(
                update(batch_jobs)
                .where(c.id == job_id, c.status == ACTIVE)
                .values(status="failed", error=error, completed_at=now, lease_token=None, lease_until=None)
            )

    async def key(self, key_id: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _key(row) if row else None

    async def chunks(self, job_id: str, after: int, limit: int) -> list[tuple[int, int, int, str]]:
        """``(idx, first_line, lines, status)`` of the job's chunks past ``after``, in order."""
        c = batch_chunks.c
        q = (
            select(c.idx, c.first_line, c.lines, c.status)
            .where(c.job_id == job_id, c.idx > after)
            .order_by(c.idx)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [(r.idx, r.first_line, r.lines, r.status) for r in await conn.execute(q)]

    # the workers' claims ----------------------------------------------------------------------------------
    async def claim_job(self, now: float, lease: float) -> tuple[JobRecord, str] | None:
        """A processing job with job-level work and no live lease: its input to split (``chunks_total`` is
        NULL) or its results to assemble (every chunk done)."""
        c = batch_jobs.c
        todo = and_(
            c.status == ACTIVE,
            or_(c.chunks_total.is_(None), c.chunks_done >= c.chunks_total),
            _free(batch_jobs, now),
        )
        token = secrets.token_hex(16)
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(
                    select(c.id).where(todo).order_by(c.started_at).limit(1).with_for_update(skip_locked=True)
                )
            ).first()
            if found is None:
                return None
            res = await conn.execute(
                update(batch_jobs)
                .where(c.id == found.id, todo)
                .values(lease_token=token, lease_until=now + lease)
            )
            if res.rowcount != 1:
                return None
            row = (await conn.execute(select(batch_jobs).where(c.id == found.id))).one()
        return _job(row), token

    async def renew_job(self, job_id: str, token: str, until: float) -> bool:
        c = batch_jobs.c
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(batch_jobs).where(c.id == job_id, c.lease_token == token).values(lease_until=until)
            )
        return bool(res.rowcount == 1)

    async def clear_chunks(self, job_id: str, token: str) -> bool:
        """Before (re-)splitting: drop chunk rows a split that died half-way left (none can be done: chunks
        are claimed only once ``chunks_total`` is set)."""
        async with self.engine.begin() as conn:
            if not await self._holds(conn, job_id, token):
                return False
            await conn.execute(delete(batch_chunks).where(batch_chunks.c.job_id == job_id))
        return True

    async def add_chunks(self, job_id: str, token: str, chunks: Sequence[tuple[int, Chunk]]) -> bool:
        async with self.engine.begin() as conn:
            if not await self._holds(conn, job_id, token):
                return False
            await conn.execute(
                insert(batch_chunks),
                [
                    {
                        "job_id": job_id,
                        "idx": idx,
                        "start_offset": ch.start,
                        "end_offset": ch.end,
                        "first_line": ch.first_line,
                        "lines": ch.lines,
                        "status": "pending",
                        "attempts": 0,
                        "completed": 0,
                        "failed": 0,
                        "tokens": 0,
                    }
                    for idx, ch in chunks
                ],
            )
        return True

    async def split_done(self, job_id: str, token: str, chunks: int, lines: int) -> bool:
        c = batch_jobs.c
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(batch_jobs)
                .where(c.id == job_id, c.lease_token == token, c.status == ACTIVE)
                .values(chunks_total=chunks, requests_total=lines, lease_token=None, lease_until=None)
            )
        return bool(res.rowcount == 1)

    async def complete(self, job_id: str, token: str, now: float) -> bool:
        c = batch_jobs.c
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(batch_jobs)
                .where(c.id == job_id, c.lease_token == token, c.status == ACTIVE)
                .values(status="completed", completed_at=now, lease_token=None, lease_until=None)
            )
        return bool(res.rowcount == 1)

    async def _holds(self, conn: Any, job_id: str, token: str) -> bool:
        c = batch_jobs.c
        res = await conn.execute(
            update(batch_jobs)
            .where(c.id == job_id, c.lease_token == token, c.status == ACTIVE)
            .values(lease_token=token)
        )
        return bool(res.rowcount == 1)

    async def claim_chunk(self, now: float, lease: float) -> ChunkClaim | None:
        """The first chunk nobody holds, of the processing job started first."""
        j, ch = batch_jobs.c, batch_chunks.c
        todo = and_(ch.status != "done", _free(batch_chunks, now))
        token = secrets.token_hex(16)
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(
                    select(ch.job_id, ch.idx)
                    .join(batch_jobs, j.id == ch.job_id)
                    .where(j.status == ACTIVE, j.chunks_total.is_not(None), todo)
                    .order_by(j.started_at, ch.idx)
                    .limit(1)
                    .with_for_update(of=batch_chunks, skip_locked=True)
                )
            ).first()
            if found is None:
                return None
            res = await conn.execute(
                update(batch_chunks)
                .where(ch.job_id == found.job_id, ch.idx == found.idx, todo)
                .values(
                    status="running", lease_token=token, lease_until=now + lease, attempts=ch.attempts + 1
                )
            )
            if res.rowcount != 1:
                return None
            row = (
                await conn.execute(select(batch_chunks).where(ch.job_id == found.job_id, ch.idx == found.idx))
            ).one()
            job = (await conn.execute(select(batch_jobs).where(j.id == found.job_id))).one()
        return ChunkClaim(
            _job(job),
            row.idx,
            row.start_offset,
            row.end_offset,
            row.first_line,
            row.lines,
            token,
            row.attempts,
        )

    async def renew_chunk(self, claim: ChunkClaim, until: float) -> bool:
        ch = batch_chunks.c
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(batch_chunks)
                .where(ch.job_id == claim.job.id, ch.idx == claim.idx, ch.lease_token == claim.token)
                .values(lease_until=until)
            )
        return bool(res.rowcount == 1)

    async def release_chunk(self, claim: ChunkClaim, until: float | None = None) -> None:
        """Give the chunk back (to be claimed again after ``until``)."""
        ch = batch_chunks.c
        async with self.engine.begin() as conn:
            await conn.execute(
                update(batch_chunks)
                .where(ch.job_id == claim.job.id, ch.idx == claim.idx, ch.lease_token == claim.token)
                .values(status="pending", lease_token=None, lease_until=until)
            )

    async def checkpoint(self, claim: ChunkClaim, outcome: ChunkOutcome, row: UsageRow | None) -> bool:
        """Commit a processed chunk in one transaction: its usage row and the account's debit, the job's
        counters, the chunk marked done. Nothing commits unless the job is still processing and the
        chunk's lease is still this worker's (``False``: another worker took it over, or the job was
        cancelled; the chunk's results object is then simply rewritten by whoever finishes it)."""
        j, ch = batch_jobs.c, batch_chunks.c
        units = to_units(row.cost) if row is not None else 0
        try:
            async with self.engine.begin() as conn:
                if row is not None:
                    # First, so the account's row is locked before the job's (as ``start`` does).
                    await conn.run_sync(lambda sync: _write_usage([row], sync))
                done = await conn.execute(
                    update(batch_chunks)
                    .where(
                        ch.job_id == claim.job.id,
                        ch.idx == claim.idx,
                        ch.lease_token == claim.token,
                        ch.status == "running",
                    )
                    .values(
                        status="done",
                        lease_token=None,
                        lease_until=None,
                        completed=outcome.completed,
                        failed=outcome.failed,
                        tokens=outcome.tokens,
                    )
                )
                counted = await conn.execute(
                    update(batch_jobs)
                    .where(j.id == claim.job.id, j.status == ACTIVE)
                    .values(
                        requests_completed=j.requests_completed + outcome.completed,
                        requests_failed=j.requests_failed + outcome.failed,
                        actual_tokens=j.actual_tokens + outcome.tokens,
                        cost_units=j.cost_units + units,
                        chunks_done=j.chunks_done + 1,
                    )
                )
                if done.rowcount != 1 or counted.rowcount != 1:
                    raise _Undo
        except _Undo:
            return False
        except IntegrityError:
            return False  # the chunk's usage row exists: it was committed already
        return True
