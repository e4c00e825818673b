"""The SQLAlchemy implementation of ``Storage``: SQLite (aiosqlite) and PostgreSQL (asyncpg) alike."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Boolean, Connection, event, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tollgate.storage.base import AccountRecord, ClassifierRecord, KeyRecord, UsageRow
from tollgate.storage.batch import SqliteWorker, run_batch, sqlite_file
from tollgate.storage.migrate import upgrade
from tollgate.storage.money import from_units, to_units
from tollgate.storage.sql_logs import USAGE_FIELDS, LogQueries
from tollgate.storage.tables import accounts, api_keys, balance_events, classifiers, usage


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _account(row: Row[Any]) -> AccountRecord:
    return AccountRecord(row.id, row.name, from_units(row.balance_units), from_units(row.spent_units))


def _key(row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        row.id,
        row.account_id,
        row.name,
        row.prefix,
        row.key_hash,
        row.created_at,
        row.revoked_at,
        tier=row.tier,
        rpm=row.rpm,
        tpm=row.tpm,
        concurrency=row.concurrency,
        cache=row.cache,
        log_inputs=row.log_inputs,
        log_outputs=row.log_outputs,
        retention_days=row.retention_days,
        allowed_models=None if row.allowed_models is None else tuple(row.allowed_models),
        priority=row.priority,
        manager=row.manager,
        created_by=row.created_by,
    )


_USAGE_COLUMNS = [*USAGE_FIELDS, "cost_units"]
# Booleans go to SQLite as 0/1: sqlite3 takes a bool (an int subclass) through its adapter lookup, which
# raises and formats two AttributeErrors per value (measured with callgrind: a third of a row's insert cost).
_USAGE_BOOLS = frozenset(c.name for c in usage.columns if isinstance(c.type, Boolean))
_USAGE_INSERT: dict[str, tuple[str, list[int] | None]] = {}


def _usage_insert(conn: Connection) -> tuple[str, list[int] | None]:
    """The dialect's INSERT for a usage row, and (for positional parameter styles) the order in which the
    row's ``_USAGE_COLUMNS`` values bind; compiled once per dialect."""
    name = conn.dialect.name
    if name not in _USAGE_INSERT:
        compiled = usage.insert().inline().compile(dialect=conn.dialect, column_keys=_USAGE_COLUMNS)
        order = None
        if conn.dialect.positional and compiled.positiontup is not None:
            order = [_USAGE_COLUMNS.index(key) for key in compiled.positiontup]
        _USAGE_INSERT[name] = (str(compiled), order)
    return _USAGE_INSERT[name]


def _write_usage(rows: list[UsageRow], conn: Connection, skip_committed: bool = False) -> int:
    """Insert the rows and debit each account by the sum of its rows' costs, in the caller's transaction;
    returns how many rows were inserted. The rows come bounded to their columns (``bound_row``, applied by
    the usage writer as it takes them).

    ``skip_committed`` (a retried or replayed batch): rows whose request id is already stored are left out,
    with their debits, so a batch whose COMMIT went through unacknowledged is never written or billed twice.

    The rows go to the driver's own ``executemany`` as plain tuples (every column is a type the drivers
    take as is): SQLAlchemy's per-parameter processing cost ~20 µs a row, more than the rest of the flush.
    """
    if skip_committed:
        ids = list({r.request_id for r in rows})
        stored = set(conn.execute(select(usage.c.request_id).where(usage.c.request_id.in_(ids))).scalars())
        rows = [r for r in rows if r.request_id not in stored]
        if not rows:
            return 0
    debits: dict[str, int] = defaultdict(int)
    bools = _USAGE_BOOLS if conn.dialect.name == "sqlite" else frozenset()
    tuples = []
    for r in rows:
        units = to_units(r.cost)
        tuples.append((*(int(getattr(r, f)) if f in bools else getattr(r, f) for f in USAGE_FIELDS), units))
        if units and r.account_id:
            debits[r.account_id] += units
    sql, order = _usage_insert(conn)
    if order is not None:
        conn.exec_driver_sql(sql, [tuple(t[i] for i in order) for t in tuples])
    else:
        conn.exec_driver_sql(sql, [dict(zip(_USAGE_COLUMNS, t, strict=True)) for t in tuples])
    for account_id, units in sorted(debits.items()):
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                balance_units=accounts.c.balance_units - units,
                spent_units=accounts.c.spent_units + units,
            )
        )
    return len(rows)


def _balances(account_ids: list[str], conn: Connection) -> dict[str, Decimal]:
    rows = conn.execute(select(accounts.c.id, accounts.c.balance_units).where(accounts.c.id.in_(account_ids)))
    return {r.id: from_units(r.balance_units) for r in rows}


class SqlStorage(LogQueries):
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # Background batches (usage flushes, request logs, balance refreshes): see storage/batch.py.
        self.worker = SqliteWorker(url, _sqlite_pragmas) if sqlite_file(url) else None

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.close()
        await self.engine.dispose()

    # accounts -------------------------------------------------------------------------------------------
    async def find_account(self, name: str) -> AccountRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.name == name))).first()
        return _account(row) if row else None

    async def get_account(self, account_id: str) -> AccountRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        return _account(row) if row else None

    async def ensure_account(self, name: str) -> AccountRecord:
        found = await self.find_account(name)
        if found:
            return found
        new_id = "acct_" + secrets.token_hex(8)
        async with self.engine.begin() as conn:
            await conn.execute(
                accounts.insert().values(
                    id=new_id, name=name, balance_units=0, spent_units=0, created_at=time.time()
                )
            )
        return AccountRecord(new_id, name, Decimal(0), Decimal(0))

    async def add_balance(self, account_id: str, amount: Decimal, note: str = "") -> AccountRecord:
        units = to_units(amount)
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(balance_units=accounts.c.balance_units + units)
            )
            if res.rowcount != 1:
                raise LookupError(f"no account {account_id}")
            await conn.execute(
                balance_events.insert().values(
                    account_id=account_id, amount_units=units, note=note, created_at=time.time()
                )
            )
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).one()
        return _account(row)

    async def balances(self, account_ids: list[str]) -> dict[str, Decimal]:
        if not account_ids:
            return {}
        return await run_batch(self.engine, self.worker, partial(_balances, account_ids))

    # keys -----------------------------------------------------------------------------------------------
    async def insert_key(self, record: KeyRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=record.id,
                    account_id=record.account_id,
                    name=record.name,
                    prefix=record.prefix,
                    key_hash=record.key_hash,
                    created_at=record.created_at,
                    revoked_at=record.revoked_at,
                    tier=record.tier,
                    rpm=record.rpm,
                    tpm=record.tpm,
                    concurrency=record.concurrency,
                    cache=record.cache,
                    log_inputs=record.log_inputs,
                    log_outputs=record.log_outputs,
                    retention_days=record.retention_days,
                    allowed_models=None if record.allowed_models is None else list(record.allowed_models),
                    priority=record.priority,
                    manager=record.manager,
                    created_by=record.created_by,
                )
            )

    async def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.prefix == prefix))).first()
        return _key(row) if row else None

    async def list_keys(self, account_id: str | None = None) -> list[KeyRecord]:
        q = select(api_keys).order_by(api_keys.c.created_at)
        if account_id is not None:
            q = q.where(api_keys.c.account_id == account_id)
        async with self.engine.connect() as conn:
            return [_key(r) for r in await conn.execute(q)]

    async def revoke_key(self, key_id: str, when: float) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=when)
            )
        return bool(res.rowcount == 1)

    # usage ----------------------------------------------------------------------------------------------
    async def write_usage(self, rows: list[UsageRow], *, skip_committed: bool = False) -> int:
        if not rows:
            return 0
        return await run_batch(
            self.engine, self.worker, partial(_write_usage, rows, skip_committed=skip_committed)
        )

    async def list_usage(self, limit: int = 100) -> list[UsageRow]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(usage).order_by(usage.c.id.desc()).limit(limit))
            out = []
            for r in rows:
                m = r._mapping
                out.append(UsageRow(**{f: m[f] for f in USAGE_FIELDS}, cost=from_units(m["cost_units"])))
            return out

    # classifiers ----------------------------------------------------------------------------------------
    async def save_classifier(
        self, account_id: str, name: str, definition: dict[str, Any], when: float
    ) -> ClassifierRecord:
        owned = (classifiers.c.account_id == account_id) & (classifiers.c.name == name)
        for attempt in range(5):
            try:
                async with self.engine.begin() as conn:
                    latest = (
                        await conn.execute(select(func.max(classifiers.c.version)).where(owned))
                    ).scalar()
                    version = int(latest or 0) + 1
                    await conn.execute(
                        classifiers.insert().values(
                            account_id=account_id,
                            name=name,
                            version=version,
                            definition=definition,
                            created_at=when,
                        )
                    )
                return ClassifierRecord(account_id, name, version, definition, when)
            except IntegrityError:
                # Another writer took this version number at the same moment: take the next one.
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def get_classifier(
        self, account_id: str, name: str, version: int | None = None
    ) -> ClassifierRecord | None:
        q = select(classifiers).where(classifiers.c.account_id == account_id, classifiers.c.name == name)
        q = q.where(classifiers.c.version == version) if version is not None else q
        async with self.engine.connect() as conn:
            row = (await conn.execute(q.order_by(classifiers.c.version.desc()).limit(1))).first()
        return _classifier(row) if row else None

    async def list_classifiers(self, account_id: str) -> list[ClassifierRecord]:
        latest = (
            select(classifiers.c.name, func.max(classifiers.c.version).label("version"))
            .where(classifiers.c.account_id == account_id)
            .group_by(classifiers.c.name)
            .subquery()
        )
        q = (
            select(classifiers)
            .join(latest, (classifiers.c.name == latest.c.name) & (classifiers.c.version == latest.c.version))
            .where(classifiers.c.account_id == account_id)
            .order_by(classifiers.c.name)
        )
        async with self.engine.connect() as conn:
            return [_classifier(r) for r in await conn.execute(q)]


def _classifier(row: Row[Any]) -> ClassifierRecord:
    return ClassifierRecord(row.account_id, row.name, row.version, dict(row.definition), row.created_at)


def open_storage(url: str) -> SqlStorage:
    return SqlStorage(url)
