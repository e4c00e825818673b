"""The buffered usage writer: the only path by which usage rows (and their debits) reach the database.

Requests hand rows over without waiting on the database. Each row is bounded to its columns (``bound_row``)
and appended to the local journal (``accounts/journal.py``) as it is handed over, so it survives a crash of
the process. A background task flushes them in batches: when ``batch_size`` rows wait, or ``interval``
seconds after the first row of a batch arrived; each batch in one transaction with the balance debits.
Nothing wakes the task while no row waits, except the ledger's balance refresh every ``refresh_every``
seconds.

A batch the database refuses for a data reason is split in halves, recursively, down to the rows it
refuses: those are set aside (the journal's ``rejected.jsonl``, logged, counted in ``rejected``) and the
rest are written. A connectivity failure (connection lost, timeout, database down) keeps the batch and
retries it with back-off; a retried batch skips the rows whose request id is already stored, so a COMMIT
whose acknowledgement was lost is neither retried forever nor billed twice.

When the database is slow the buffer grows up to ``limit`` rows; past it, new requests wait at admission
(``wait_for_room``) until flushes catch up. Settling never waits and never drops (``submit_nowait``).
``stop`` flushes everything that is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from decimal import Decimal

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tollgate.accounts.balances import BalanceLedger
from tollgate.accounts.journal import Journal, StreamOpen
from tollgate.storage.base import RequestLog, Storage, UsageRow
from tollgate.storage.bounds import bound_row

log = logging.getLogger("tollgate.usage")

_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError, OSError, TimeoutError)


# PostgreSQL error classes that say nothing about the rows: connection, transaction rollback (deadlock,
# serialization), insufficient resources, operator intervention (shutdown), system errors.
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "58")


def refused(exc: BaseException) -> bool:
    """The database (or its driver) refused the rows themselves: a constraint, a value it cannot take. Any
    other failure (connection lost, timeout, deadlock, database down) is retried with the batch as it is."""
    if isinstance(exc, _TRANSIENT) or getattr(exc, "connection_invalidated", False):
        return False
    cause: BaseException | None = getattr(exc, "orig", None)
    while cause is not None:
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATES):
            return False
        cause = cause.__cause__
    return isinstance(exc, (StatementError, ValueError, TypeError, OverflowError))


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
        journal: Journal | None = None,
    ) -> None:
        self._storage = storage
        self.journal = journal
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
        self._retrying = False  # the batch at the head failed once: it may be partly committed
        self.written = 0
        self.rejected = 0  # rows the database refused, set aside

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="tollgate-usage-writer")
        if self._rows:
            self._due = loop.call_later(self._interval, self._flush_now)

    @property
    def has_room(self) -> bool:
        return self._room.is_set()

    async def wait_for_room(self) -> None:
        """Back-pressure: wait while more than ``limit`` rows wait for the database."""
        while not self._room.is_set():
            await self._room.wait()

    def stream_opened(self, stream: StreamOpen) -> None:
        if self.journal is not None:
            self.journal.opened(stream)

    def stream_progress(self, request_id: str, chunks: int) -> None:
        if self.journal is not None:
            self.journal.progress(request_id, chunks)

    def submit_nowait(self, row: UsageRow) -> None:
        """Take a settled row: journaled at once, written with the next flush. Never waits, never drops."""
        row = bound_row(row)
        if self.journal is not None:
            self.journal.append(row)
        self._rows.append(row)
        if len(self._rows) >= self._batch_size:
            self._flush_now()
        elif self._due is None and self._task is not None:
            self._due = asyncio.get_running_loop().call_later(self._interval, self._flush_now)
        if len(self._rows) >= self._limit:
            self._room.clear()

    def provisional(self, row: UsageRow) -> None:
        """Journal a row settled at once but whose final cost comes later (``submit_nowait`` then takes the
        final row): a crash in between bills the provisional one, so no answered request goes unbilled."""
        if self.journal is not None:
            self.journal.provisional(bound_row(row))

    def submit_log(self, log: RequestLog) -> None:
        """A request's logged bodies; written with the next flush, after the usage rows."""
        self._logs.append(log)
        if len(self._logs) >= self._batch_size:
            self._flush_now()

    async def submit(self, row: UsageRow) -> None:
        await self.wait_for_room()
        self.submit_nowait(row)

    async def _flush_once(self) -> None:
        batch = self._rows[: self._batch_size]
        if not batch:
            return
        try:
            self.written += await self.write(batch, skip_committed=self._retrying)
        except BaseException:
            self._retrying = True
            raise
        self._retrying = False
        del self._rows[: len(batch)]
        if self.journal is not None:
            self.journal.committed(batch)
        if len(self._rows) < self._limit:
            self._room.set()
        # Rows set aside are counted too: their settle moved the cost into ``unflushed``; the next balance
        # refresh reads what the database really holds.
        if self._ledger is not None:
            debits: dict[str, Decimal] = defaultdict(Decimal)
            for r in batch:
                if r.account_id and r.cost:
                    debits[r.account_id] += r.cost
            self._ledger.flushed(debits)

    async def write(self, rows: list[UsageRow], *, skip_committed: bool) -> int:
        """Write ``rows``, setting aside those the database refuses (halving the batch to find them);
        returns how many were inserted. A connectivity failure is raised, for the caller to retry."""
        try:
            return await self._storage.write_usage(rows, skip_committed=skip_committed)
        except Exception as exc:
            if not refused(exc):
                raise
            if len(rows) == 1:
                self._set_aside(rows[0], exc)
                return 0
            log.warning("a batch of %d usage rows was refused (%s); splitting it", len(rows), _reason(exc))
            half = len(rows) // 2
            # The halves are checked for committed rows: a first half written stays written on a retry.
            first = await self.write(rows[:half], skip_committed=True)
            return first + await self.write(rows[half:], skip_committed=True)

    def _set_aside(self, row: UsageRow, exc: Exception) -> None:
        self.rejected += 1
        reason = _reason(exc)
        log.error("usage row %s refused by the database, set aside: %s", row.request_id, reason)
        if self.journal is not None:
            try:
                self.journal.reject(row, reason)
            except OSError:
                log.exception("could not keep the refused row %s: %r", row.request_id, row)

    async def recover(self, attempts: int = 10) -> int:
        """Replay the journals of dead processes into the database (at start-up, before serving); returns
        the rows inserted. Rows already stored are skipped, so a journal replayed twice bills once."""
        if self.journal is None:
            return 0
        inserted = 0
        for dead in self.journal.dead():
            rows = [bound_row(r) for r in dead.rows()]
            try:
                for start in range(0, len(rows), self._batch_size):
                    batch = rows[start : start + self._batch_size]
                    for attempt in range(attempts):
                        try:
                            inserted += await self.write(batch, skip_committed=True)
                            break
                        except Exception:
                            if attempt == attempts - 1:
                                raise
                            log.exception("journal replay failed; retrying")
                            await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
            except Exception:
                dead.release()  # kept for the next start-up
                raise
            log.info("replayed journal %s: %d rows, %d new", dead.name, len(rows), inserted)
            dead.remove()
        return inserted

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
                except Exception as exc:
                    log.error(
                        "usage flush failed; %d rows kept for retry (%s)", len(self._rows), _reason(exc)
                    )
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
                break
            except Exception:
                log.exception("final usage flush failed (attempt %d); retrying", attempt + 1)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        else:
            log.error(
                "gave up flushing %d usage rows at shutdown; the journal keeps them for the next start",
                len(self._rows),
            )
        if self.journal is not None:
            await self.journal.close(clean=not self._rows)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
