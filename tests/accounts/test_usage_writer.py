"""tollgate/accounts/usage.py: the buffered usage writer (batches, retries, back-pressure, shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from tests.storage.test_sql import pg_database, pg_url, sqlite_template, store, usage_row  # noqa: F401  (fixtures)
from tests.support.memory_storage import MemoryStorage
from tests.support.pg_proxy import CommitCutter
from tollgate.accounts.balances import BalanceLedger
from tollgate.accounts.journal import REJECTED_FILE, Journal
from tollgate.accounts.usage import UsageWriter, refused
from tollgate.storage import SqlStorage, open_storage
from tollgate.storage.base import UsageRow

D = Decimal


def row(n: int, account_id: str | None = None, cost: str = "0") -> UsageRow:
    return UsageRow(
        request_id=f"req_{n}",
        endpoint="chat.completions",
        status=200,
        latency_ms=1.0,
        created_at=1_700_000_000.0 + n,
        account_id=account_id,
        cost=D(cost),
    )


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


async def settle_loop(turns: int = 20) -> None:
    """Let every ready task run a few times, without letting any timer fire."""
    for _ in range(turns):
        await asyncio.sleep(0)


class SpyLedger(BalanceLedger):
    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(storage, grace=D(0))
        self.flushes: list[dict[str, Decimal]] = []
        self.refreshes = 0

    def flushed(self, debits: dict[str, Decimal]) -> None:
        self.flushes.append(dict(debits))
        super().flushed(debits)

    async def refresh(self) -> None:
        self.refreshes += 1
        await super().refresh()


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
async def writers() -> AsyncIterator[list[UsageWriter]]:
    """Writers registered here are stopped at the end of the test, whatever happened."""
    made: list[UsageWriter] = []
    yield made
    for w in made:
        await w.stop()


def start(writers: list[UsageWriter], writer: UsageWriter) -> UsageWriter:
    writer.start()
    writers.append(writer)
    return writer


# flushing -----------------------------------------------------------------------------------------------


async def test_rows_are_flushed_after_the_interval(
    storage: MemoryStorage, writers: list[UsageWriter]
) -> None:
    writer = start(writers, UsageWriter(storage, interval=0.02, batch_size=500))
    for n in range(3):
        await writer.submit(row(n))
    assert storage.usage == [], "submit does not wait for the database"
    assert writer.pending == 3
    await eventually(lambda: len(storage.usage) == 3)
    assert [r.request_id for r in storage.usage] == ["req_0", "req_1", "req_2"]
    assert storage.batches == [storage.usage], "one transaction for the whole interval"
    assert writer.pending == 0 and writer.written == 3


async def test_a_full_batch_is_flushed_without_waiting_for_the_interval(
    storage: MemoryStorage, writers: list[UsageWriter]
) -> None:
    writer = start(writers, UsageWriter(storage, interval=30, batch_size=4))
    for n in range(3):
        await writer.submit(row(n))
    await settle_loop()
    assert storage.usage == [], "below the batch size the writer waits for the interval"
    await writer.submit(row(3))
    await settle_loop()
    assert len(storage.usage) == 4
    assert writer.pending == 0


async def test_large_backlogs_are_written_in_batches_of_batch_size(storage: MemoryStorage) -> None:
    writer = UsageWriter(storage, interval=30, batch_size=4)
    for n in range(10):
        writer.submit_nowait(row(n))
    await writer.flush()
    assert [len(b) for b in storage.batches] == [4, 4, 2]
    assert [r.request_id for r in storage.usage] == [f"req_{n}" for n in range(10)]
    assert writer.written == 10


async def test_flush_with_nothing_pending_does_not_touch_storage(storage: MemoryStorage) -> None:
    await UsageWriter(storage).flush()
    assert storage.calls.get("write_usage", 0) == 0


# failures -----------------------------------------------------------------------------------------------


async def test_failed_flush_keeps_the_rows_and_retries(
    storage: MemoryStorage, writers: list[UsageWriter], caplog: pytest.LogCaptureFixture
) -> None:
    storage.fail_writes = ConnectionError("database is down")
    writer = start(writers, UsageWriter(storage, interval=0.005, batch_size=500))
    with caplog.at_level(logging.ERROR, logger="tollgate.usage"):
        for n in range(3):
            await writer.submit(row(n))
        await eventually(lambda: storage.calls.get("write_usage", 0) >= 2)
    assert storage.usage == []
    assert writer.pending == 3 and writer.written == 0
    assert "usage flush failed; 3 rows kept for retry" in caplog.text

    storage.fail_writes = None
    await eventually(lambda: writer.pending == 0, timeout=3.0)
    assert [r.request_id for r in storage.usage] == ["req_0", "req_1", "req_2"]
    assert writer.written == 3


async def test_failed_flush_does_not_report_debits_to_the_ledger(storage: MemoryStorage) -> None:
    ledger = SpyLedger(storage)
    writer = UsageWriter(storage, ledger)
    writer.submit_nowait(row(1, "acct_a", "0.5"))
    storage.fail_writes = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        await writer.flush()
    assert ledger.flushes == []
    assert writer.pending == 1


# back-pressure ------------------------------------------------------------------------------------------


async def test_submit_waits_while_the_buffer_is_at_its_limit(
    storage: MemoryStorage, writers: list[UsageWriter]
) -> None:
    storage.write_gate = asyncio.Event()  # the database is stuck until the gate opens
    writer = start(writers, UsageWriter(storage, interval=0.005, batch_size=2, limit=3))
    for n in range(3):
        await writer.submit(row(n))
    waiting = asyncio.create_task(writer.submit(row(3)))
    await asyncio.sleep(0.03)
    assert not waiting.done(), "submit blocks once `limit` rows are buffered"
    assert writer.pending == 3

    storage.write_gate.set()
    await asyncio.wait_for(waiting, 2.0)
    await eventually(lambda: len(storage.usage) == 4)
    assert [r.request_id for r in storage.usage] == [f"req_{n}" for n in range(4)]


async def test_many_waiting_submitters_never_push_the_buffer_past_the_limit(storage: MemoryStorage) -> None:
    writer = UsageWriter(storage, interval=30, batch_size=2, limit=3)
    for n in range(3):
        await writer.submit(row(n))
    waiting = [asyncio.create_task(writer.submit(row(n))) for n in range(3, 9)]
    await settle_loop()
    assert writer.pending == 3 and not any(t.done() for t in waiting)

    await writer._flush_once()  # two rows out: room for exactly two of the six waiters
    await settle_loop()
    assert writer.pending == 3
    assert sum(t.done() for t in waiting) == 2

    await writer.flush()
    await settle_loop()
    await writer.flush()
    await asyncio.wait_for(asyncio.gather(*waiting), 1.0)
    await writer.flush()
    assert sorted(int(r.request_id[4:]) for r in storage.usage) == list(range(9))


async def test_submit_nowait_never_waits_and_never_drops(storage: MemoryStorage) -> None:
    writer = UsageWriter(storage, interval=30, batch_size=500, limit=2)
    for n in range(10):
        writer.submit_nowait(row(n))
    assert writer.pending == 10
    await writer.stop()
    assert [r.request_id for r in storage.usage] == [f"req_{n}" for n in range(10)]


# shutdown -----------------------------------------------------------------------------------------------


async def test_stop_flushes_everything_left(storage: MemoryStorage) -> None:
    writer = UsageWriter(storage, interval=30, batch_size=3)
    writer.start()
    for n in range(7):
        writer.submit_nowait(row(n))
    await writer.stop()
    assert writer.pending == 0
    assert [r.request_id for r in storage.usage] == [f"req_{n}" for n in range(7)]


async def test_stop_retries_a_failing_final_flush(storage: MemoryStorage) -> None:
    storage.fail_writes = ConnectionError("down")
    writer = UsageWriter(storage, interval=0.005)
    writer.start()
    writer.submit_nowait(row(1))
    await eventually(lambda: storage.calls.get("write_usage", 0) >= 1)  # the background flush failed

    async def heal() -> None:
        calls = storage.calls["write_usage"]
        await eventually(lambda: storage.calls["write_usage"] > calls)  # stop's first attempt failed
        storage.fail_writes = None

    healer = asyncio.create_task(heal())
    await writer.stop()
    await healer
    assert [r.request_id for r in storage.usage] == ["req_1"]
    assert writer.pending == 0


async def test_stop_without_start_still_flushes(storage: MemoryStorage) -> None:
    writer = UsageWriter(storage)
    writer.submit_nowait(row(1))
    await writer.stop()
    assert len(storage.usage) == 1


# the ledger ---------------------------------------------------------------------------------------------


async def test_ledger_is_told_the_debits_of_each_committed_batch(storage: MemoryStorage) -> None:
    ledger = SpyLedger(storage)
    writer = UsageWriter(storage, ledger, batch_size=500)
    writer.submit_nowait(row(1, "acct_a", "0.1"))
    writer.submit_nowait(row(2, "acct_b", "0.3"))
    writer.submit_nowait(row(3, "acct_a", "0.0000000002"))
    writer.submit_nowait(row(4, "acct_c", "0"))  # free: no debit
    writer.submit_nowait(row(5, None, "7"))  # unauthenticated: no account to debit
    await writer.flush()
    assert ledger.flushes == [{"acct_a": D("0.1000000002"), "acct_b": D("0.3")}]


async def test_ledger_balance_follows_reserve_settle_and_flush(storage: MemoryStorage) -> None:
    storage.set_balance("acct_a", D(1))
    ledger = SpyLedger(storage)
    writer = UsageWriter(storage, ledger)
    reservation = await ledger.reserve("acct_a", D("0.5"))
    ledger.settle(reservation, D("0.2"))
    writer.submit_nowait(row(1, "acct_a", "0.2"))
    assert ledger.available("acct_a") == D("0.8")
    await writer.flush()
    assert ledger.available("acct_a") == D("0.8")
    await ledger.refresh()
    assert ledger.available("acct_a") == D("0.8"), "the database was debited exactly once"
    account = await storage.get_account("acct_a")
    assert account is not None and account.balance == D("0.8")


async def test_background_writer_refreshes_the_ledger(
    storage: MemoryStorage, writers: list[UsageWriter]
) -> None:
    ledger = SpyLedger(storage)
    start(writers, UsageWriter(storage, ledger, interval=0.005, refresh_every=0.01))
    await eventually(lambda: ledger.refreshes >= 2)


async def test_an_idle_writer_touches_the_database_only_for_the_balance_refresh(
    storage: MemoryStorage, writers: list[UsageWriter]
) -> None:
    ledger = SpyLedger(storage)
    start(writers, UsageWriter(storage, ledger, interval=0.01, refresh_every=0.05))
    await asyncio.sleep(0.28)
    assert storage.batches == [] and ledger.flushes == []
    assert 3 <= ledger.refreshes <= 6, "one refresh per refresh_every, nothing else"


async def test_a_refresh_does_not_write_rows_before_their_interval(
    storage: MemoryStorage, writers: list[UsageWriter]
) -> None:
    ledger = SpyLedger(storage)
    writer = start(writers, UsageWriter(storage, ledger, interval=30, refresh_every=0.02))
    await writer.submit(row(1))
    await eventually(lambda: ledger.refreshes >= 3)
    assert storage.usage == [] and writer.pending == 1
    await writer.stop()
    assert [r.request_id for r in storage.usage] == ["req_1"]


# refused rows and retried batches, on the real databases ------------------------------------------------


@contextlib.asynccontextmanager
async def refusing(storage: SqlStorage, model: str) -> AsyncIterator[None]:
    """The database refuses every usage row naming ``model`` (a trigger / CHECK constraint)."""
    if storage.is_sqlite:
        create = (
            f"CREATE TRIGGER refuse_model BEFORE INSERT ON usage WHEN NEW.model = '{model}' "
            "BEGIN SELECT RAISE(ABORT, 'refused model'); END"
        )
        drop = "DROP TRIGGER refuse_model"
    else:
        create = f"ALTER TABLE usage ADD CONSTRAINT refuse_model CHECK (model IS NULL OR model <> '{model}')"
        drop = "ALTER TABLE usage DROP CONSTRAINT refuse_model"
    async with storage.engine.begin() as conn:
        await conn.execute(sa.text(create))
    try:
        yield
    finally:
        async with storage.engine.begin() as conn:
            await conn.execute(sa.text(drop))


async def test_a_refused_row_is_set_aside_and_the_rest_of_its_batch_written(
    store: SqlStorage,  # noqa: F811
    tmp_path: Path,
) -> None:
    acct = await store.ensure_account("split")
    await store.add_balance(acct.id, D(10))
    journal = Journal(tmp_path / "journal", store.url)
    journal.open()
    writer = UsageWriter(store, batch_size=500, journal=journal)
    rows = [
        usage_row(
            request_id=f"req_{n}", account_id=acct.id, cost=D("0.25"), model="poison" if n in (3, 7) else "ok"
        )
        for n in range(10)
    ]
    async with refusing(store, "poison"):
        for r in rows:
            writer.submit_nowait(r)
        await writer.flush()
    assert writer.pending == 0 and writer.rejected == 2 and writer.written == 8
    stored = sorted(r.request_id for r in await store.list_usage())
    assert stored == [f"req_{n}" for n in range(10) if n not in (3, 7)]
    after = await store.get_account(acct.id)
    assert after is not None and after.spent == D(2) and after.balance == D(8)
    kept = [orjson.loads(line) for line in (tmp_path / "journal" / REJECTED_FILE).read_bytes().splitlines()]
    assert sorted(k["row"]["request_id"] for k in kept) == ["req_3", "req_7"]
    await writer.stop()
    assert [p.name for p in (tmp_path / "journal").iterdir()] == [REJECTED_FILE]


async def test_a_batch_retried_after_its_commit_skips_the_rows_already_stored(store: SqlStorage) -> None:  # noqa: F811
    """A lost COMMIT acknowledgement: the rows are in, the writer thinks not and retries the batch."""
    acct = await store.ensure_account("retry")
    await store.add_balance(acct.id, D(10))
    writer = UsageWriter(store, batch_size=500)
    rows = [usage_row(account_id=acct.id, cost=D(1)) for _ in range(3)]
    await store.write_usage(rows[:2])  # committed, acknowledgement lost
    writer._retrying = True
    for r in rows:
        writer.submit_nowait(r)
    await writer.flush()
    assert writer.written == 1 and writer.rejected == 0
    assert len(await store.list_usage()) == 3
    after = await store.get_account(acct.id)
    assert after is not None and after.spent == D(3)


async def test_client_chosen_values_are_bounded_before_they_reach_the_database(store: SqlStorage) -> None:  # noqa: F811
    """On PostgreSQL a 201-character model, a NUL byte or an int32 overflow used to refuse the batch."""
    writer = UsageWriter(store)
    rows = [
        usage_row(model="m" * 201),
        usage_row(model="bad\u0000model", upstream_model="\u0000"),
        usage_row(prompt_tokens=2**40, completion_tokens=-(2**40), attempts=2**31),
        usage_row(model="surrogate \ud800 model"),
    ]
    for r in rows:
        writer.submit_nowait(r)
    await writer.flush()
    assert writer.rejected == 0
    stored = {r.request_id: r for r in await store.list_usage()}
    assert stored[rows[0].request_id].model == "m" * 200
    assert stored[rows[1].request_id].model == "badmodel"
    assert stored[rows[1].request_id].upstream_model == ""
    big = stored[rows[2].request_id]
    assert (big.prompt_tokens, big.completion_tokens, big.attempts) == (2**31 - 1, -(2**31), 2**31 - 1)
    assert stored[rows[3].request_id].model == "surrogate ? model"


async def test_lost_commit_acknowledgements_neither_wedge_the_writer_nor_bill_twice(
    pg_database: str,  # noqa: F811
) -> None:
    """Through a proxy that cuts the connection after every third COMMIT went through: each batch whose
    acknowledgement was lost is retried, and its rows are written (and debited) exactly once."""
    direct = open_storage(pg_url(pg_database))
    cutter = CommitCutter(every=3)
    port = await cutter.start()
    proxied = open_storage(pg_url(pg_database).replace(":5432/", f":{port}/"))
    try:
        acct = await direct.ensure_account("commit-" + secrets.token_hex(4))
        await direct.add_balance(acct.id, D(10))
        cutter.armed = True
        writer = UsageWriter(proxied, interval=0.005, batch_size=50)
        writer.start()
        rows = [usage_row(account_id=acct.id, cost=D("0.001")) for _ in range(1000)]
        for r in rows:
            writer.submit_nowait(r)
            if len(writer._rows) >= 200:
                await asyncio.sleep(0.01)
        await eventually(lambda: writer.pending == 0, timeout=60)
        await writer.stop()
        assert cutter.cuts >= 3 and writer.rejected == 0
        async with direct.engine.connect() as conn:
            stored = (
                (
                    await conn.execute(
                        sa.text("SELECT request_id FROM usage WHERE account_id = :a"), {"a": acct.id}
                    )
                )
                .scalars()
                .all()
            )
        assert sorted(stored) == sorted(r.request_id for r in rows)
        after = await direct.get_account(acct.id)
        assert after is not None and after.spent == D(1) and after.balance == D(9)
    finally:
        await proxied.close()
        await direct.close()
        await cutter.close()


def test_only_failures_of_the_rows_themselves_count_as_refused() -> None:
    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    def dbapi(sqlstate: str) -> sa.exc.DBAPIError:
        return sa.exc.DBAPIError("INSERT", None, PgError(sqlstate))

    assert refused(dbapi("22021"))  # a NUL byte
    assert refused(dbapi("23505"))  # a duplicate key
    assert refused(ValueError("no surrogates"))
    assert not refused(dbapi("40P01"))  # a deadlock: retry as it is
    assert not refused(dbapi("57P01"))  # the server is shutting down
    assert not refused(sa.exc.OperationalError("COMMIT", None, PgError("")))
    assert not refused(sa.exc.DBAPIError("COMMIT", None, PgError(""), connection_invalidated=True))
    assert not refused(ConnectionResetError())
    assert not refused(RuntimeError("a defect: retried, not set aside"))
