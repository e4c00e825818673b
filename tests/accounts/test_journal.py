"""tollgate/accounts/journal.py: rows on disk before the reply, segments removed once committed, the journals
of dead processes replayed once (by request id), streams cut by a crash billed for what was sent."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests.storage.test_sql import sqlite_template, usage_row  # noqa: F401  (a fixture)
from tollgate.accounts.journal import REJECTED_FILE, Journal, StreamOpen
from tollgate.accounts.usage import UsageWriter
from tollgate.storage import SqlStorage, open_storage

D = Decimal


@pytest.fixture
async def store(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[SqlStorage]:  # noqa: F811
    path = tmp_path / "tollgate.db"
    shutil.copyfile(sqlite_template, path)
    storage = open_storage(f"sqlite+aiosqlite:///{path}")
    yield storage
    await storage.close()


def journal(store: SqlStorage, directory: Path) -> Journal:
    j = Journal(directory, store.url, fsync_interval=0.01)
    j.open()
    return j


def die(j: Journal) -> None:
    """What ``kill -9`` leaves: the files as they are, the lock released (the kernel drops it)."""
    assert j._lock_fd is not None
    os.close(j._lock_fd)
    j._lock_fd = None


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def stream_open(request_id: str, account_id: str) -> StreamOpen:
    return StreamOpen(
        request_id=request_id,
        endpoint="chat.completions",
        created_at=1_700_000_000.0,
        account_id=account_id,
        key_id="key_1",
        model="sim-small",
        provider="sim",
        upstream_model="upstream-small",
        prompt_tokens=100,
        pricing={"prompt": "0.000001", "completion": "0.000002"},
        attempts=1,
        ttft_ms=12.0,
    )


async def test_each_row_is_on_disk_when_submitted_and_its_segment_goes_once_committed(
    store: SqlStorage, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    writer = UsageWriter(store, journal=journal(store, directory))
    rows = [usage_row(request_id=f"req_{n}") for n in range(3)]
    for r in rows:
        writer.submit_nowait(r)
    [segment] = segments(directory)
    lines = [orjson.loads(line) for line in segment.read_bytes().splitlines()]
    assert [(kind, fields[0]) for kind, fields, _cost in lines] == [("row", f"req_{n}") for n in range(3)]

    await writer.flush()
    assert segments(directory) == []
    assert len(await store.list_usage()) == 3
    await writer.stop()
    assert list(directory.iterdir()) == []  # a clean stop leaves nothing, not even the lock


async def test_a_segment_holding_an_open_stream_stays_until_the_stream_is_committed(
    store: SqlStorage, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    writer = UsageWriter(store, journal=journal(store, directory))
    writer.stream_opened(stream_open("req_stream", "acct_a"))
    writer.submit_nowait(usage_row(request_id="req_other"))
    await writer.flush()
    assert len(segments(directory)) == 1  # the stream's open record is still needed
    writer.stream_progress("req_stream", 5)
    writer.submit_nowait(usage_row(request_id="req_stream", stream=True))
    await writer.flush()
    assert segments(directory) == []
    await writer.stop()


async def test_the_journal_of_a_dead_process_is_replayed_once_and_removed(
    store: SqlStorage, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    acct = await store.ensure_account("crash")
    await store.add_balance(acct.id, D(10))
    dead = UsageWriter(store, journal=journal(store, directory))
    rows = [usage_row(request_id=f"req_{n}", account_id=acct.id, cost=D("0.5")) for n in range(4)]
    for r in rows[:2]:
        dead.submit_nowait(r)
    await dead.flush()  # two rows committed before the crash, two not
    for r in rows[2:]:
        dead.submit_nowait(r)
    assert dead.journal is not None
    die(dead.journal)
    kept = tmp_path / "copy"
    shutil.copytree(directory, kept)

    fresh = UsageWriter(store, journal=journal(store, directory))
    assert await fresh.recover() == 2
    assert sorted(r.request_id for r in await store.list_usage()) == [f"req_{n}" for n in range(4)]
    assert [p.name.endswith(".lock") for p in directory.iterdir()] == [True]  # only its own lock

    # The same journal replayed again (say the replay's own process died before removing it): no change.
    for path in kept.iterdir():
        shutil.copy(path, directory / path.name)
    again = UsageWriter(store, journal=journal(store, directory))
    assert await again.recover() == 0
    assert len(await store.list_usage()) == 4
    after = await store.get_account(acct.id)
    assert after is not None and after.balance == D(8) and after.spent == D(2)


async def test_a_stream_cut_by_a_crash_is_billed_for_the_prompt_and_the_chunks_sent(
    store: SqlStorage, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    acct = await store.ensure_account("streams")
    dead = journal(store, directory)
    dead.opened(stream_open("req_cut", acct.id))
    dead.progress("req_cut", 3)
    dead.progress("req_cut", 40)
    die(dead)

    writer = UsageWriter(store, journal=journal(store, directory))
    assert await writer.recover() == 1
    [row] = await store.list_usage()
    assert (row.request_id, row.status, row.error_code) == ("req_cut", 499, "GATEWAY_RESTARTED")
    assert (row.prompt_tokens, row.completion_tokens, row.estimated, row.stream) == (100, 40, True, True)
    assert row.cost == D("0.000001") * 100 + D("0.000002") * 40
    after = await store.get_account(acct.id)
    assert after is not None and after.spent == row.cost


async def test_live_journals_and_those_of_other_databases_are_left_alone(
    store: SqlStorage, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    alive = journal(store, directory)
    alive.append(usage_row(request_id="req_alive"))
    other = Journal(directory, "sqlite+aiosqlite:///elsewhere.db")
    other.open()
    other.append(usage_row(request_id="req_elsewhere"))
    die(other)

    writer = UsageWriter(store, journal=journal(store, directory))
    assert await writer.recover() == 0
    assert await store.list_usage() == []
    assert len(segments(directory)) == 2


async def test_an_unreadable_last_line_is_skipped(store: SqlStorage, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    dead = journal(store, directory)
    dead.append(usage_row(request_id="req_whole"))
    die(dead)
    [segment] = segments(directory)
    with segment.open("ab") as f:
        f.write(b'["row", {"request_id": "req_cut_by_power_lo')  # a machine crash mid-line

    writer = UsageWriter(store, journal=journal(store, directory))
    assert await writer.recover() == 1
    assert [r.request_id for r in await store.list_usage()] == ["req_whole"]


async def test_the_rows_are_fsynced_within_the_interval(store: SqlStorage, tmp_path: Path) -> None:
    j = journal(store, tmp_path / "journal")
    j.append(usage_row())
    assert j.state()["unsynced_records"] == 1
    assert j._syncing is None and j._sync is not None
    j._sync.cancel()
    j._start_sync()
    assert j._syncing is not None
    await j._syncing
    assert j.state()["unsynced_records"] == 0
    await j.close(clean=True)


async def test_a_refused_row_is_kept_in_the_rejected_file(store: SqlStorage, tmp_path: Path) -> None:
    j = journal(store, tmp_path / "journal")
    j.reject(usage_row(request_id="req_bad", model="m"), "DataError: no")
    [line] = (tmp_path / "journal" / REJECTED_FILE).read_bytes().splitlines()
    kept = orjson.loads(line)
    assert kept["reason"] == "DataError: no" and kept["row"]["request_id"] == "req_bad"
    await j.close(clean=True)


async def test_a_row_whose_cost_waits_on_shared_state_is_billed_provisionally_if_the_crash_comes_first(
    store: SqlStorage, tmp_path: Path
) -> None:
    """A row settled with a free allowance or a cost above its reservation (Redis) is journaled at once at
    its provisional cost; its final row, when it comes, wins; a crash before it bills the provisional one."""
    directory = tmp_path / "journal"
    acct = await store.ensure_account("pending")
    await store.add_balance(acct.id, D(10))
    dead = UsageWriter(store, journal=journal(store, directory))
    settled = usage_row(request_id="req_settled", account_id=acct.id, cost=D("0.5"))
    cut = usage_row(request_id="req_cut", account_id=acct.id, cost=D("0.75"))
    dead.provisional(settled)
    dead.provisional(cut)
    dead.submit_nowait(usage_row(request_id="req_settled", account_id=acct.id, cost=D("0.25")))  # final
    assert dead.journal is not None
    die(dead.journal)

    fresh = UsageWriter(store, journal=journal(store, directory))
    assert await fresh.recover() == 2
    rows = {r.request_id: r for r in await store.list_usage()}
    assert (rows["req_settled"].cost, rows["req_settled"].estimated) == (D("0.25"), False)
    assert (rows["req_cut"].cost, rows["req_cut"].estimated) == (D("0.75"), True)
    after = await store.get_account(acct.id)
    assert after is not None and after.balance == D(9)
    await fresh.stop()
