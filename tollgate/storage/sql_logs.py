"""``SqlStorage``'s reporting half: usage totals, request logs and their retention purge (SQLite and
PostgreSQL alike; the one dialect difference is how a timestamp becomes a day)."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, Connection, Integer, cast, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from tollgate.storage.base import LogEntry, RequestLog, UsageRow, UsageTotal
from tollgate.storage.batch import SqliteWorker, run_batch
from tollgate.storage.money import from_units
from tollgate.storage.tables import request_logs, usage

USAGE_FIELDS = [c.name for c in usage.columns if c.name not in ("id", "cost_units")]
DAY = 86_400


def _write_logs(logs: list[RequestLog], conn: Connection) -> None:
    values = [
        {
            "request_id": g.request_id,
            "account_id": g.account_id,
            "key_id": g.key_id,
            "created_at": g.created_at,
            "expires_at": g.expires_at,
            "input": g.input,
            "output": g.output,
        }
        for g in logs
    ]
    conn.execute(request_logs.insert(), values)


class LogQueries:
    engine: AsyncEngine
    worker: SqliteWorker | None
    is_sqlite: bool

    def _group(self, by: str) -> ColumnElement[Any]:
        if by == "model":
            return usage.c.model
        if by == "key":
            return usage.c.key_id
        if by == "day":
            days = usage.c.created_at / DAY
            # SQLite's CAST truncates (= floor for positive times); PostgreSQL's rounds, so floor first.
            return cast(days, Integer) if self.is_sqlite else cast(func.floor(days), BigInteger)
        raise ValueError(f"cannot group usage by {by!r}")

    async def usage_totals(
        self, account_id: str | None, since: float, until: float, by: str
    ) -> list[UsageTotal]:
        group = self._group(by).label("g")
        q = (
            select(
                group,
                func.count().label("requests"),
                func.coalesce(func.sum(cast(usage.c.cached, Integer)), 0).label("cached"),
                func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt"),
                func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion"),
                func.coalesce(func.sum(usage.c.cost_units), 0).label("cost"),
            )
            .where(usage.c.created_at >= since, usage.c.created_at < until)
            .group_by(group)
            .order_by(group)
        )
        if account_id is not None:
            q = q.where(usage.c.account_id == account_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            name = r.g
            if by == "day":
                name = dt.datetime.fromtimestamp(int(r.g) * DAY, dt.UTC).date().isoformat()
            out.append(
                UsageTotal(
                    name,
                    int(r.requests),
                    int(r.cached),
                    int(r.prompt),
                    int(r.completion),
                    from_units(int(r.cost)),
                )
            )
        return out

    async def write_logs(self, logs: list[RequestLog]) -> None:
        if not logs:
            return
        await run_batch(self.engine, self.worker, partial(_write_logs, logs))

    async def list_logs(
        self, account_id: str | None, limit: int = 50, before: int | None = None
    ) -> list[LogEntry]:
        q = (
            select(usage, request_logs.c.input, request_logs.c.output)
            .select_from(usage.outerjoin(request_logs, request_logs.c.request_id == usage.c.request_id))
            .order_by(usage.c.id.desc())
            .limit(limit)
        )
        if account_id is not None:
            q = q.where(usage.c.account_id == account_id)
        # An id past what the column holds (PostgreSQL's INTEGER is 32-bit) is past every row: no condition.
        wide = self.is_sqlite or isinstance(usage.c.id.type, BigInteger)
        if before is not None and before <= (2**63 - 1 if wide else 2**31 - 1):
            q = q.where(usage.c.id < before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            m = r._mapping
            row = UsageRow(**{f: m[f] for f in USAGE_FIELDS}, cost=from_units(m["cost_units"]))
            out.append(LogEntry(m["id"], row, m["input"], m["output"]))
        return out

    async def purge_logs(self, now: float, batch: int = 1000) -> int:
        claim = (
            select(request_logs.c.id)
            .where(request_logs.c.expires_at.is_not(None), request_logs.c.expires_at <= now)
            .order_by(request_logs.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)  # SQLite has no row locks (one writer); the clause is dropped
        )
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(claim)).scalars())
            if not ids:
                return 0
            # Counted by what this transaction deleted: without row locks (SQLite) two purges may claim
            # the same ids, and only one of them deletes each.
            res = await conn.execute(delete(request_logs).where(request_logs.c.id.in_(ids)))
        return int(res.rowcount)
