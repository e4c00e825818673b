"""The buffered usage writer: the only path by which usage rows (and their debits) reach the database.

Requests hand rows over without waiting on the database. A background task flushes them in batches: when
``batch_size`` rows wait, or ``interval`` seconds after the first row of a batch arrived; each batch in one
transaction with the balance debits. Nothing wakes the task while no row waits, except the ledger's balance
refresh every ``refresh_every`` seconds. When the
database is slow the buffer grows up to ``limit`` rows, after which ``submit`` waits (back-pressure);
``submit_nowait`` never waits and never drops, for paths that cannot wait (a cancelled stream). A failed
flush keeps its rows and is retried; ``stop`` flushes everything that is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from decimal import Decimal

from tollgate.accounts.balances import BalanceLedger
from tollgate.storage.base import RequestLog, Storage, UsageRow

log = logging.getLogger("tollgate.usage")


class UsageWriter:
    def __init__(
        self,
        storage: Storage,
        ledger: BalanceLedger | None = None,
        *,
        interval: float = 0.1,
        batch_size: int = 500,
        limit: int = 10_000,
        refresh_every: float = 1.0,
    ) -> None:
        self._storage = storage
        self._ledger = ledger
        self._interval = interval
        self._batch_size = batch_size
        self._limit = limit
        self._refresh_every = refresh_every
        self._rows: list[UsageRow] = []
        self._logs: list[RequestLog] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._due: asyncio.TimerHandle | None = None  # the flush of the batch being filled
        self._refresh: asyncio.TimerHandle | None = None  # the next balance refresh
        self._stopping = False
        self._flush_due = False
        self._failures = 0
        self.written = 0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="tollgate-usage-writer")
        if self._rows:
            self._due = loop.call_later(self._interval, self._flush_now)

    def submit_nowait(self, row: UsageRow) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch_size:
            self._flush_now()
        elif self._due is None and self._task is not None:
            self._due = asyncio.get_running_loop().call_later(self._interval, self._flush_now)
        if len(self._rows) >= self._limit:
            self._room.clear()

    def submit_log(self, log: RequestLog) -> None:
        """A request's logged bodies; written with the next flush, after the usage rows."""
        self._logs.append(log)
        if len(self._logs) >= self._batch_size:
            self._flush_now()

    async def submit(self, row: UsageRow) -> None:
        while not self._room.is_set():
            await self._room.wait()
        self.submit_nowait(row)

    async def _flush_once(self) -> None:
        batch = self._rows[: self._batch_size]
        if not batch:
            return
        await self._storage.write_usage(batch)
        del self._rows[: len(batch)]
        self.written += len(batch)
        if len(self._rows) < self._limit:
            self._room.set()
        if self._ledger is not None:
            debits: dict[str, Decimal] = defaultdict(Decimal)
            for r in batch:
                if r.account_id and r.cost:
                    debits[r.account_id] += r.cost
            self._ledger.flushed(debits)

    async def flush(self) -> None:
        while self._rows:
            await self._flush_once()
        while self._logs:
            batch = self._logs[: self._batch_size]
            await self._storage.write_logs(batch)
            del self._logs[: len(batch)]

    def _flush_now(self) -> None:
        self._flush_due = True
        self._wake.set()

    def _refresh_due(self) -> None:
        self._refresh = None
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ledger is not None:
            self._refresh = loop.call_later(self._refresh_every, self._refresh_due)
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                try:
                    if self._flush_due:
                        self._flush_due = False
                        if self._due is not None:
                            self._due.cancel()
                            self._due = None
                        await self.flush()
                    if self._ledger is not None and self._refresh is None:
                        await self._ledger.refresh()
                        self._refresh = loop.call_later(self._refresh_every, self._refresh_due)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("usage flush failed; %d rows kept for retry", len(self._rows))
                    await asyncio.sleep(self._retry_wait())
                    self._flush_now()
                    continue
                self._failures = 0
                if self._rows and self._due is None:  # rows that arrived during the flush
                    self._due = loop.call_later(self._interval, self._flush_now)
        finally:
            for handle in (self._due, self._refresh):
                if handle is not None:
                    handle.cancel()
            self._due = self._refresh = None

    def _retry_wait(self) -> float:
        """Back off after a failed flush: ``interval`` doubled per failure in a row, at most 5 s."""
        self._failures += 1
        return float(min(self._interval * 2 ** (self._failures - 1), 5.0))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for attempt in range(20):
            try:
                await self.flush()
                return
            except Exception:
                log.exception("final usage flush failed (attempt %d); retrying", attempt + 1)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        log.error("gave up flushing %d usage rows at shutdown", len(self._rows))
