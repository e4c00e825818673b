"""Where the background batches (usage rows with their debits, request logs, balance refreshes) run.

Each batch is a plain synchronous function of a SQLAlchemy ``Connection``, run in one transaction:

- on PostgreSQL through the async engine (``AsyncConnection.run_sync``): asyncpg does its I/O on the event
  loop without threads, so nothing is gained by moving it;
- on a SQLite file in one dedicated worker thread, on a synchronous engine over the same file. aiosqlite
  hands every cursor operation to its thread and back (about thirty hand-offs for one usage flush, each
  waking the event loop); the worker takes one hand-off per batch. Measured with ``bench/gateway.py``: the
  usage flush was the largest single cost of the gateway beside the HTTP server and client.

Both engines open the file with the same pragmas (WAL, busy timeout), so the worker's transactions and the
async engine's interleave as any two SQLite connections do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class SqliteWorker:
    """A synchronous engine over a SQLite file and the one thread that uses it."""

    def __init__(self, url: str, on_connect: Callable[[Any, Any], None]) -> None:
        self.engine = create_engine(make_url(url).set(drivername="sqlite"))
        event.listen(self.engine, "connect", on_connect)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tollgate-sqlite")

    def _call(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return fn(conn)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, fn)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.dispose)
        self._thread.shutdown(wait=True)


def sqlite_file(url: str) -> bool:
    """A SQLite URL naming a file (an in-memory database cannot be shared by two engines)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")


async def run_batch(engine: AsyncEngine, worker: SqliteWorker | None, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in one transaction: in the SQLite worker when there is one, else on the async engine."""
    if worker is not None:
        return await worker.run(fn)
    async with engine.begin() as conn:
        return await conn.run_sync(fn)
