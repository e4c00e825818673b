"""tollgate/storage/sql.py and its migrations, against SQLite and the real PostgreSQL alike.

Every test gets migrated, empty tables: SQLite a copy of a file migrated once per session, PostgreSQL a
database created (and migrated) for this session, emptied before each test and dropped at the end. When
PostgreSQL is unreachable the PostgreSQL cases fail rather than skip: CI starts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from tollgate.storage import KeyRecord, SqlStorage, UsageRow, open_storage
from tollgate.storage.base import RequestLog
from tollgate.storage.batch import sqlite_file
from tollgate.storage.migrate import alembic_config

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_ADMIN_DB = "test"
T = TypeVar("T")


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run admin coroutines on their own loop, away from the tests' event loops."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin(sql: str, database: str = PG_ADMIN_DB) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/{database}", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    storage = open_storage(url)
    try:
        await storage.migrate()
    finally:
        await storage.close()


async def _create_database(name: str) -> None:
    await _admin(f'CREATE DATABASE "{name}"')
    # A throwaway database: commits need not wait for the disk.
    await _admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    await _migrate(pg_url(name))


def pg_url(database: str) -> str:
    return f"{PG_SERVER.replace('postgresql://', 'postgresql+asyncpg://')}/{database}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated database for this session; dropped at the end."""
    name = f"tollgate_test_{secrets.token_hex(6)}"
    try:
        run_in_thread(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"PostgreSQL at {PG_SERVER}/{PG_ADMIN_DB} is unreachable ({exc!r}); CI starts it")
    try:
        run_in_thread(_create_database(name))
        yield name
    finally:
        run_in_thread(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly migrated SQLite file; each test gets a copy (cheaper than migrating every time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "tollgate.db"
    run_in_thread(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


TABLES_CHILDREN_FIRST = ("request_logs", "classifiers", "usage", "balance_events", "api_keys", "accounts")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStorage]:
    """A migrated, empty storage: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        path = tmp_path / "tollgate.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = pg_url(request.getfixturevalue("pg_database"))
    storage = open_storage(url)
    try:
        if not storage.is_sqlite:
            async with storage.engine.begin() as conn:
                for table in TABLES_CHILDREN_FIRST:
                    await conn.execute(sa.text(f"DELETE FROM {table}"))
        yield storage
    finally:
        await storage.close()


def usage_row(**overrides: Any) -> UsageRow:
    values: dict[str, Any] = {
        "request_id": "req_" + secrets.token_hex(8),
        "endpoint": "chat.completions",
        "status": 200,
        "latency_ms": 12.5,
        "created_at": 1_700_000_000.25,
    }
    values.update(overrides)
    return UsageRow(**values)


async def table_names(storage: SqlStorage) -> set[str]:
    async with storage.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def count(storage: SqlStorage, table: str) -> int:
    async with storage.engine.connect() as conn:
        return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())


# migrations ---------------------------------------------------------------------------------------------


async def test_migrate_creates_every_table(store: SqlStorage) -> None:
    assert {"accounts", "api_keys", "balance_events", "usage", "alembic_version"} <= await table_names(store)


async def test_migrate_is_idempotent_and_keeps_data(store: SqlStorage) -> None:
    acct = await store.ensure_account("kept")
    await store.add_balance(acct.id, Decimal("3.5"))
    await store.migrate()
    await store.migrate()
    again = await store.get_account(acct.id)
    assert again is not None and again.balance == Decimal("3.5")
    async with store.engine.connect() as conn:
        versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert sorted(versions) == sorted(heads), "every migration branch is at its head"


# accounts -----------------------------------------------------------------------------------------------


async def test_ensure_account_creates_once_and_then_finds_it(store: SqlStorage) -> None:
    created = await store.ensure_account("alice")
    assert created.id.startswith("acct_")
    assert created.name == "alice"
    assert created.balance == Decimal(0) and created.spent == Decimal(0)
    again = await store.ensure_account("alice")
    assert again == created
    assert await store.find_account("alice") == created
    assert await store.get_account(created.id) == created
    assert (await store.ensure_account("bob")).id != created.id


async def test_unknown_accounts_are_none(store: SqlStorage) -> None:
    assert await store.find_account("nobody") is None
    assert await store.get_account("acct_missing") is None


async def test_add_balance_is_exact_to_the_smallest_unit(store: SqlStorage) -> None:
    acct = await store.ensure_account("tiny")
    for _ in range(7):
        record = await store.add_balance(acct.id, Decimal("0.0000000001"))
    assert record.balance == Decimal("0.0000000007")
    record = await store.add_balance(acct.id, Decimal("12345678.9"), note="top-up")
    assert record.balance == Decimal("12345678.9000000007")
    record = await store.add_balance(acct.id, Decimal("-12345678.9000000007"))
    assert record.balance == Decimal(0)
    assert await count(store, "balance_events") == 9


async def test_add_balance_to_unknown_account_raises_and_records_nothing(store: SqlStorage) -> None:
    with pytest.raises(LookupError):
        await store.add_balance("acct_missing", Decimal(1))
    assert await count(store, "balance_events") == 0


async def test_balances_returns_only_known_accounts(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    b = await store.ensure_account("b")
    await store.add_balance(a.id, Decimal("1.25"))
    assert await store.balances([]) == {}
    assert await store.balances([a.id, b.id, "acct_missing"]) == {a.id: Decimal("1.25"), b.id: Decimal(0)}


# keys ---------------------------------------------------------------------------------------------------


def key_record(account_id: str, prefix: str, created_at: float, name: str = "k") -> KeyRecord:
    return KeyRecord(
        id="key_" + secrets.token_hex(8),
        account_id=account_id,
        name=name,
        prefix=prefix,
        key_hash="ab" * 32,
        created_at=created_at,
        revoked_at=None,
    )


async def test_insert_key_and_find_it_by_prefix(store: SqlStorage) -> None:
    acct = await store.ensure_account("owner")
    record = key_record(acct.id, "tg-abcdefgh", 1_700_000_000.5, name="laptop")
    await store.insert_key(record)
    assert await store.key_by_prefix("tg-abcdefgh") == record
    assert await store.key_by_prefix("tg-zzzzzzzz") is None


async def test_key_limits_and_settings_round_trip(store: SqlStorage) -> None:
    acct = await store.ensure_account("owner")
    record = dataclasses.replace(
        key_record(acct.id, "tg-limited1", 1.0),
        tier="developer",
        rpm=7,
        tpm=70_000_000_000,
        concurrency=3,
        cache=False,
        log_inputs=True,
        log_outputs=True,
        retention_days=7,
        allowed_models=("m1", "m2"),
        priority="high",
        manager=True,
        created_by="key_0123456789abcdef",
    )
    await store.insert_key(record)
    assert await store.key_by_prefix("tg-limited1") == record
    plain = key_record(acct.id, "tg-plain001", 2.0)
    await store.insert_key(plain)
    found = await store.key_by_prefix("tg-plain001")
    assert found is not None and (found.tier, found.rpm, found.tpm, found.concurrency) == (None,) * 4
    assert (found.cache, found.log_inputs, found.log_outputs, found.retention_days) == (
        True,
        False,
        False,
        None,
    )
    assert (found.manager, found.created_by) == (False, None)


async def test_key_prefix_is_unique(store: SqlStorage) -> None:
    acct = await store.ensure_account("owner")
    await store.insert_key(key_record(acct.id, "tg-samesame", 1.0))
    with pytest.raises(IntegrityError):
        await store.insert_key(key_record(acct.id, "tg-samesame", 2.0))


async def test_key_needs_an_existing_account(store: SqlStorage) -> None:
    with pytest.raises(IntegrityError):
        await store.insert_key(key_record("acct_missing", "tg-orphaned", 1.0))


async def test_list_keys_in_creation_order_and_by_account(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    b = await store.ensure_account("b")
    k2 = key_record(a.id, "tg-aaaa0002", 2.0)
    k1 = key_record(a.id, "tg-aaaa0001", 1.0)
    k3 = key_record(b.id, "tg-bbbb0003", 3.0)
    for k in (k2, k3, k1):
        await store.insert_key(k)
    assert await store.list_keys() == [k1, k2, k3]
    assert await store.list_keys(a.id) == [k1, k2]
    assert await store.list_keys(b.id) == [k3]
    assert await store.list_keys("acct_missing") == []


async def test_revoke_key_once(store: SqlStorage) -> None:
    acct = await store.ensure_account("owner")
    record = key_record(acct.id, "tg-revokeme", 1.0)
    await store.insert_key(record)
    assert await store.revoke_key(record.id, 1_700_000_123.75) is True
    found = await store.key_by_prefix("tg-revokeme")
    assert found is not None and found.revoked_at == 1_700_000_123.75
    assert await store.revoke_key(record.id, 1_800_000_000.0) is False, "already revoked"
    found = await store.key_by_prefix("tg-revokeme")
    assert found is not None and found.revoked_at == 1_700_000_123.75, "first revocation time is kept"
    assert await store.revoke_key("key_missing", 1.0) is False


# usage --------------------------------------------------------------------------------------------------


async def test_write_usage_inserts_rows_and_debits_balances(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    b = await store.ensure_account("b")
    await store.add_balance(a.id, Decimal(1))
    await store.add_balance(b.id, Decimal(1))
    rows = [
        usage_row(account_id=a.id, cost=Decimal("0.0000000001")),
        usage_row(account_id=a.id, cost=Decimal("0.25")),
        usage_row(account_id=b.id, cost=Decimal("0.0000123456")),
        usage_row(account_id=b.id, cost=Decimal(0), status=500),
        usage_row(account_id=None, cost=Decimal("9"), status=401),
    ]
    await store.write_usage(rows)
    assert await count(store, "usage") == 5
    after_a = await store.get_account(a.id)
    after_b = await store.get_account(b.id)
    assert after_a is not None and after_b is not None
    assert after_a.balance == Decimal("0.7499999999")
    assert after_a.spent == Decimal("0.2500000001")
    assert after_b.balance == Decimal("0.9999876544")
    assert after_b.spent == Decimal("0.0000123456")


async def test_write_usage_can_take_a_balance_below_zero(store: SqlStorage) -> None:
    acct = await store.ensure_account("broke")
    await store.write_usage([usage_row(account_id=acct.id, cost=Decimal("0.5"))])
    after = await store.get_account(acct.id)
    assert after is not None and after.balance == Decimal("-0.5") and after.spent == Decimal("0.5")


async def test_write_usage_of_nothing_is_a_no_op(store: SqlStorage) -> None:
    await store.write_usage([])
    assert await count(store, "usage") == 0


async def test_failed_usage_batch_leaves_neither_rows_nor_debits(store: SqlStorage) -> None:
    acct = await store.ensure_account("atomic")
    await store.add_balance(acct.id, Decimal(10))
    first = usage_row(request_id="req_dup", account_id=acct.id, cost=Decimal(1))
    await store.write_usage([first])

    batch = [
        usage_row(account_id=acct.id, cost=Decimal(2)),
        usage_row(request_id="req_dup", account_id=acct.id, cost=Decimal(3)),
        usage_row(account_id=acct.id, cost=Decimal(4)),
    ]
    with pytest.raises(IntegrityError):
        await store.write_usage(batch)

    assert await count(store, "usage") == 1
    after = await store.get_account(acct.id)
    assert after is not None
    assert after.balance == Decimal(9) and after.spent == Decimal(1)
    assert [r.request_id for r in await store.list_usage()] == ["req_dup"]


async def test_list_usage_round_trips_every_field(store: SqlStorage) -> None:
    acct = await store.ensure_account("fields")
    full = UsageRow(
        request_id="req_full",
        endpoint="chat.completions",
        status=200,
        latency_ms=123.456,
        created_at=1_712_345_678.123456,
        account_id=acct.id,
        key_id="key_0123456789abcdef",
        model="sim-small",
        provider="simulator",
        upstream_model="sim-small-v2",
        stream=True,
        error_code=None,
        prompt_tokens=1234,
        completion_tokens=567,
        cached_tokens=1000,
        reasoning_tokens=89,
        cost=Decimal("0.0001234567"),
        estimated=True,
        cached=True,
        attempts=2,
        ttft_ms=45.5,
    )
    failed = UsageRow(
        request_id="req_failed",
        endpoint="messages",
        status=502,
        latency_ms=0.0,
        created_at=1_712_345_679.0,
        error_code="UPSTREAM_ERROR",
        attempts=3,
    )
    await store.write_usage([full, failed])
    listed = await store.list_usage()
    assert listed == [failed, full], "newest first, every field equal"
    assert isinstance(listed[1].cost, Decimal) and listed[1].cost == Decimal("0.0001234567")
    assert listed[1].stream is True and listed[1].estimated is True and listed[1].cached is True
    assert listed[0].ttft_ms is None and listed[0].account_id is None
    assert listed[0].cost == Decimal(0)


async def test_list_usage_limit_returns_the_newest(store: SqlStorage) -> None:
    await store.write_usage([usage_row(request_id=f"req_{i}") for i in range(5)])
    await store.write_usage([usage_row(request_id="req_last")])
    assert [r.request_id for r in await store.list_usage(limit=3)] == ["req_last", "req_4", "req_3"]


async def test_concurrent_usage_batches_debit_exactly(store: SqlStorage) -> None:
    acct = await store.ensure_account("busy")
    batches = [
        [usage_row(account_id=acct.id, cost=Decimal("0.0000000003")) for _ in range(5)] for _ in range(4)
    ]
    await asyncio.gather(*(store.write_usage(b) for b in batches))
    after = await store.get_account(acct.id)
    assert after is not None
    assert after.balance == Decimal("-0.000000006") and after.spent == Decimal("0.000000006")
    assert await count(store, "usage") == 20


# classifiers --------------------------------------------------------------------------------------------

DEFINITION = {"labels": ["billing", "shipping"], "descriptions": {"billing": "money"}, "mode": "single"}


async def test_saving_a_classifier_again_makes_the_next_version(store: SqlStorage) -> None:
    acct = await store.ensure_account("owner")
    first = await store.save_classifier(acct.id, "tickets", DEFINITION, 1.5)
    second = await store.save_classifier(acct.id, "tickets", {**DEFINITION, "labels": ["refund"]}, 2.5)
    assert (first.version, second.version) == (1, 2)
    latest = await store.get_classifier(acct.id, "tickets")
    assert latest == second and latest.definition["labels"] == ["refund"]
    pinned = await store.get_classifier(acct.id, "tickets", 1)
    assert pinned == first and pinned.definition == DEFINITION and pinned.created_at == 1.5
    assert await store.get_classifier(acct.id, "tickets", 3) is None
    assert await store.get_classifier(acct.id, "nothing") is None


async def test_classifiers_belong_to_their_account(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    b = await store.ensure_account("b")
    await store.save_classifier(a.id, "same", DEFINITION, 1.0)
    await store.save_classifier(a.id, "same", DEFINITION, 2.0)
    mine = await store.save_classifier(b.id, "same", DEFINITION, 3.0)
    assert mine.version == 1, "versions count per account"
    assert await store.get_classifier(b.id, "same", 2) is None


async def test_list_classifiers_gives_the_latest_of_each_name(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    other = await store.ensure_account("other")
    await store.save_classifier(a.id, "zeta", DEFINITION, 1.0)
    await store.save_classifier(a.id, "alpha", DEFINITION, 2.0)
    await store.save_classifier(a.id, "zeta", {**DEFINITION, "mode": "multi"}, 3.0)
    await store.save_classifier(other.id, "beta", DEFINITION, 4.0)
    listed = await store.list_classifiers(a.id)
    assert [(c.name, c.version) for c in listed] == [("alpha", 1), ("zeta", 2)]
    assert listed[1].definition["mode"] == "multi"
    assert await store.list_classifiers("acct_missing") == []


async def test_concurrent_saves_get_distinct_versions(store: SqlStorage) -> None:
    acct = await store.ensure_account("busy")
    saved = await asyncio.gather(
        *(store.save_classifier(acct.id, "race", DEFINITION, float(i)) for i in range(4))
    )
    assert sorted(c.version for c in saved) == [1, 2, 3, 4]


# usage totals, request logs, retention (sql_logs.py) ---------------------------------------------------------

DAY = 86_400
T0 = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC


async def test_usage_totals_group_by_day_model_and_key_within_the_range(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    b = await store.ensure_account("b")
    rows = [
        usage_row(
            account_id=a.id, key_id="k1", model="m1", created_at=T0 + 10, prompt_tokens=5, cost=Decimal("0.1")
        ),
        usage_row(account_id=a.id, key_id="k2", model="m2", created_at=T0 + DAY - 1, completion_tokens=7),
        usage_row(account_id=a.id, key_id="k1", model="m1", created_at=T0 + DAY + 5, cached=True),
        usage_row(account_id=a.id, key_id="k1", model="m1", created_at=T0 + 5 * DAY),  # outside the range
        usage_row(account_id=b.id, key_id="k3", model="m1", created_at=T0 + 20, prompt_tokens=100),
    ]
    await store.write_usage(rows)
    by_day = await store.usage_totals(a.id, T0, T0 + 2 * DAY, "day")
    assert [(t.group, t.requests, t.cached_requests) for t in by_day] == [
        ("2023-11-15", 2, 0),
        ("2023-11-16", 1, 1),
    ]
    assert (by_day[0].prompt_tokens, by_day[0].completion_tokens, by_day[0].cost) == (5, 7, Decimal("0.1"))
    by_model = await store.usage_totals(a.id, T0, T0 + 2 * DAY, "model")
    assert [(t.group, t.requests) for t in by_model] == [("m1", 2), ("m2", 1)]
    by_key = await store.usage_totals(None, T0, T0 + 2 * DAY, "key")
    assert [(t.group, t.requests) for t in by_key] == [("k1", 2), ("k2", 1), ("k3", 1)]


async def test_logs_join_usage_rows_with_their_bodies_newest_first(store: SqlStorage) -> None:
    a = await store.ensure_account("a")
    b = await store.ensure_account("b")
    rows = [usage_row(account_id=a.id, request_id=f"req_{i}", created_at=T0 + i) for i in range(5)]
    await store.write_usage([*rows, usage_row(account_id=b.id, request_id="req_b")])
    await store.write_logs([RequestLog("req_3", a.id, "k", T0 + 3, None, input="in", output="out")])
    page = await store.list_logs(a.id, limit=3)
    assert [e.usage.request_id for e in page] == ["req_4", "req_3", "req_2"]
    assert (page[1].input, page[1].output) == ("in", "out")
    assert (page[0].input, page[0].output) == (None, None)
    rest = await store.list_logs(a.id, limit=3, before=page[-1].id)
    assert [e.usage.request_id for e in rest] == ["req_1", "req_0"]
    assert len(await store.list_logs(None, limit=100)) == 6


async def test_logs_before_an_id_past_the_columns_range_are_all_logs(store: SqlStorage) -> None:
    await store.write_usage([usage_row(request_id=f"req_{i}") for i in range(3)])
    for before in (2**31 - 1, 2**31, 2**63 - 1):
        assert len(await store.list_logs(None, limit=10, before=before)) == 3


async def test_purge_deletes_only_expired_logs_in_batches(store: SqlStorage) -> None:
    logs = [RequestLog(f"req_{i}", None, None, T0, T0 + i, input="x") for i in range(5)]
    keep = RequestLog("req_forever", None, None, T0, None, input="kept")
    await store.write_logs([*logs, keep])
    assert await store.purge_logs(T0 + 2, batch=2) == 2
    assert await store.purge_logs(T0 + 2, batch=2) == 1
    assert await store.purge_logs(T0 + 2, batch=2) == 0
    assert await count(store, "request_logs") == 3


async def test_concurrent_purges_delete_every_row_exactly_once(store: SqlStorage) -> None:
    await store.write_logs([RequestLog(f"req_{i}", None, None, T0, T0, input="x") for i in range(200)])
    other = open_storage(store.url)
    try:

        async def drain(s: SqlStorage) -> int:
            total = 0
            while n := await s.purge_logs(T0 + 1, batch=10):
                total += n
            return total

        results = await asyncio.gather(*(drain(s) for s in [store, other] * 3))
    finally:
        await other.close()
    assert sum(results) == 200
    assert await count(store, "request_logs") == 0


async def test_usage_flushes_and_balance_top_ups_interleave_exactly(store: SqlStorage) -> None:
    """On SQLite the flushes run on the worker's own engine, the top-ups on the async one: as two SQLite
    connections they serialise, and every debit and credit lands."""
    assert (store.worker is not None) == store.is_sqlite
    acct = await store.ensure_account("busy")
    flushes = [
        store.write_usage([usage_row(account_id=acct.id, cost=Decimal("0.001")) for _ in range(10)])
        for _ in range(20)
    ]
    top_ups = [store.add_balance(acct.id, Decimal(1)) for _ in range(20)]
    await asyncio.gather(*flushes, *top_ups)
    after = await store.get_account(acct.id)
    assert after is not None
    assert after.balance == Decimal(20) - Decimal("0.2") and after.spent == Decimal("0.2")
    assert await count(store, "usage") == 200
    assert await store.balances([acct.id]) == {acct.id: Decimal("19.8")}


def test_only_a_sqlite_file_gets_a_worker() -> None:
    assert sqlite_file("sqlite+aiosqlite:///tollgate.db")
    assert not sqlite_file("sqlite+aiosqlite://")
    assert not sqlite_file("sqlite+aiosqlite:///:memory:")
    assert not sqlite_file("postgresql+asyncpg://postgres@127.0.0.1/test")
