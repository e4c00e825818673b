"""tollgate/storage/outage.py: PostgreSQL made unreachable under a running gateway (a loopback relay to it is
cut; the shared server keeps running). Requests that need the database get 503 ``DATABASE_UNAVAILABLE`` with
``Retry-After`` in their endpoint's shape and leave one log line each, not a traceback; they succeed again
once the database is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy.exc
import yaml

from tests.storage.test_sql import pg_database, pg_url  # noqa: F401  (pg_database is a fixture)
from tests.support.gateway import gateway_config
from tests.support.servers import ServerThread, run
from tests.support.tcp_relay import TcpRelay
from tollgate.accounts.keys import generate_key
from tollgate.app import create_app
from tollgate.errors import DatabaseUnavailableError
from tollgate.settings import load_settings
from tollgate.simulator import SimServer
from tollgate.storage import open_storage
from tollgate.storage.outage import database_errors, outage

HI = [{"role": "user", "content": "hi"}]


def test_connection_errors_are_outages_and_other_errors_are_not() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, refused)
    assert isinstance(outage(refused), DatabaseUnavailableError)
    assert isinstance(outage(wrapped), DatabaseUnavailableError)
    assert outage(ValueError("a defect")) is None
    assert outage(sqlalchemy.exc.IntegrityError("INSERT", {}, ValueError("duplicate"))) is None
    with pytest.raises(DatabaseUnavailableError) as info:
        with database_errors():
            raise wrapped
    assert (info.value.status, info.value.code, info.value.headers) == (
        503,
        "DATABASE_UNAVAILABLE",
        {"Retry-After": "2"},
    )
    with pytest.raises(KeyError):
        with database_errors():
            raise KeyError("not an outage")


@pytest.fixture
def relay() -> Iterator[TcpRelay]:
    with TcpRelay("127.0.0.1", 5432) as r:
        yield r


def keys(db_url: str, n: int) -> list[str]:
    """``n`` funded keys, each on an account of its own (created directly, not through the relay)."""

    async def go() -> list[str]:
        store = open_storage(db_url)
        try:
            await store.migrate()
            secrets = []
            for i in range(n):
                account = await store.ensure_account(f"outage-{i}")
                await store.add_balance(account.id, Decimal(10))
                new = generate_key(account.id, "test")
                await store.insert_key(new.record)
                secrets.append(new.secret)
            return secrets
        finally:
            await store.close()

    return list(run(go()))


def test_a_database_outage_is_503_with_retry_after_and_one_log_line_per_request(
    tmp_path: Path,
    sim: SimServer,
    relay: TcpRelay,
    pg_database: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    direct = pg_url(pg_database)
    served, looked_up, unseen = keys(direct, 3)
    through_relay = direct.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    config = gateway_config(sim.base_url, through_relay, key_cache_ttl=60, usage_flush_interval=0.05)
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config))
    with ServerThread(create_app(load_settings(str(path), environ={}))) as server:
        base = server.url + "/v1"
        chat = openai.OpenAI(base_url=base, api_key=served, max_retries=0, timeout=30)
        assert chat.chat.completions.create(model="sim-small", messages=HI).choices
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {looked_up}"}, timeout=30) as c:
            # Authenticated (the key is now cached), but its balance was never needed.
            assert c.post("/classify", json={"text": "hi", "classifier": "missing"}).status_code == 404

        relay.cut()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            failures: list[tuple[int, str | None, str]] = []
            for key, call in [
                (unseen, "chat"),  # key lookup
                (looked_up, "chat"),  # balance load
                (looked_up, "classify"),  # saved classifier lookup
                (unseen, "classify"),
                (unseen, "embeddings"),
            ]:
                client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=30)
                started = time.monotonic()
                if call == "chat":
                    with pytest.raises(openai.APIStatusError) as info:
                        client.chat.completions.create(model="sim-small", messages=HI)
                    response, code = info.value.response, info.value.body["code"]  # type: ignore[index]
                elif call == "embeddings":
                    with pytest.raises(openai.APIStatusError) as info:
                        client.embeddings.create(model="sim-small", input="hi")
                    response, code = info.value.response, info.value.body["code"]  # type: ignore[index]
                else:
                    response = httpx.post(
                        base + "/classify",
                        json={"text": "hi", "classifier": "tickets"},
                        headers={"Authorization": f"Bearer {key}"},
                        timeout=30,
                    )
                    code = response.json()["code"]
                assert time.monotonic() - started < 15
                failures.append((response.status_code, response.headers.get("retry-after"), code))
            request_lines = [
                r
                for r in caplog.records
                if r.name.startswith(("tollgate.storage", "tollgate.api", "uvicorn"))
            ]
        assert failures == [(503, "2", "DATABASE_UNAVAILABLE")] * 5
        assert [r.getMessage().split(":")[0] for r in request_lines] == ["database unavailable"] * 5
        assert not any(r.exc_info for r in request_lines), "no traceback per request"

        relay.restore()
        deadline = time.monotonic() + 15
        while True:  # the pool reconnects once the database is back
            try:
                reply = openai.OpenAI(base_url=base, api_key=unseen, max_retries=0).chat.completions.create(
                    model="sim-small", messages=HI
                )
                break
            except openai.APIStatusError as err:
                assert err.status_code == 503 and time.monotonic() < deadline
                time.sleep(0.2)
        assert reply.choices
