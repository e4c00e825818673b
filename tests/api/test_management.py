"""tollgate/api/management.py through a running gateway: keys, balance, usage and logs, each scoped to
the caller's account (the admin key sees all), errors in the management shape."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.storage.test_sql import pg_database, pg_url, run_in_thread  # noqa: F401  (pg_database: a fixture)
from tests.support.databases import empty
from tests.support.gateway import Gateway
from tollgate.simulator import SimServer

ADMIN = "admin-" + "s3cret" * 4


@pytest.fixture
def gw(tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    with Gateway(tmp_path, sim.base_url, admin_key=ADMIN, key_cache_ttl=0.1) as g:
        yield g


def call(gw: Gateway, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, gw.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw
    )


def chat(gw: Gateway, key: str, content: str = "hello", **kw: Any) -> httpx.Response:
    body = {"model": "sim-small", "messages": [{"role": "user", "content": content}], "max_tokens": 8, **kw}
    return call(gw, "POST", "/chat/completions", key, json=body)


def test_create_key_returns_the_secret_once_and_the_key_works(gw: Gateway) -> None:
    owner = gw.create_key(manager=True)
    created = call(gw, "POST", "/keys", owner, json={"name": "ci", "tier": "developer", "log_inputs": True})
    assert created.status_code == 201
    new = created.json()
    assert new["key"].startswith("tg-") and new["name"] == "ci" and new["tier"] == "developer"
    assert new["log_inputs"] is True and new["log_outputs"] is False and new["cache"] is True
    assert new["rate_limits"] == {
        "requests_per_minute": None,
        "tokens_per_minute": None,
        "concurrent_requests": None,
    }
    assert chat(gw, new["key"]).status_code == 200
    listed = call(gw, "GET", "/keys", owner).json()["data"]
    assert [k["name"] for k in listed] == ["test", "ci"]
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_created_key_rate_limits_apply(gw: Gateway) -> None:
    owner = gw.create_key()
    new = call(gw, "POST", "/keys", owner, json={"rate_limits": {"requests_per_minute": 1}}).json()
    assert chat(gw, new["key"]).status_code == 200
    refused = chat(gw, new["key"])
    assert refused.status_code == 429 and "retry-after" in refused.headers


def test_invalid_key_settings_are_refused_in_the_management_shape(gw: Gateway) -> None:
    owner = gw.create_key()
    bad = call(gw, "POST", "/keys", owner, json={"tier": "gold"})
    assert bad.status_code == 400
    body = bad.json()
    assert body["code"] == "VALIDATION_ERROR" and body["error"] == "validation-error"
    assert body["details"] == {"field": "tier"} and "docs_url" in body
    assert call(gw, "POST", "/keys", owner, json={"log_inputs": "yes"}).json()["details"] == {
        "field": "log_inputs"
    }
    assert call(gw, "POST", "/keys", owner, json={"colour": 1}).status_code == 400


def test_missing_or_wrong_key_is_401_in_the_management_shape(gw: Gateway) -> None:
    r = httpx.get(gw.base_url + "/balance", timeout=30)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_API_KEY"
    assert call(gw, "GET", "/keys", "tg-nope-nope-nope").status_code == 401


def test_revoked_key_stops_working(gw: Gateway) -> None:
    owner = gw.create_key()
    new = call(gw, "POST", "/keys", owner, json={"name": "temp"}).json()
    assert chat(gw, new["key"]).status_code == 200
    r = call(gw, "DELETE", f"/keys/{new['id']}", owner)
    assert r.status_code == 200 and r.json()["revoked"] is True
    deadline = time.monotonic() + 5
    while chat(gw, new["key"]).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.05)
    listed = {k["id"]: k for k in call(gw, "GET", "/keys", owner).json()["data"]}
    assert listed[new["id"]]["revoked_at"] is not None


def test_an_account_never_sees_or_revokes_another_accounts_keys(gw: Gateway) -> None:
    alice = gw.create_key(account="alice")
    bob = gw.create_key(account="bob")
    bobs = call(gw, "GET", "/keys", bob).json()["data"]
    alices = call(gw, "GET", "/keys", alice).json()["data"]
    assert len(bobs) == 1 and len(alices) == 1
    assert alices[0]["account_id"] != bobs[0]["account_id"]
    r = call(gw, "DELETE", f"/keys/{bobs[0]['id']}", alice)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert chat(gw, bob).status_code == 200


def test_balance_shows_balance_spent_and_grace(gw: Gateway) -> None:
    key = gw.create_key(balance="2.5", account="payer")
    assert chat(gw, key).status_code == 200
    gw.usage_rows(expect=1)
    body = call(gw, "GET", "/balance", key).json()
    assert body["account"] == "payer" and body["grace_buffer"] == "0"
    assert Decimal(body["balance"]) + Decimal(body["spent"]) == Decimal("2.5")
    assert Decimal(body["spent"]) > 0


def test_usage_totals_by_day_model_and_key(gw: Gateway) -> None:
    key = gw.create_key(account="user")
    other = gw.create_key(account="other")
    for _ in range(3):
        assert chat(gw, key).status_code == 200
    assert chat(gw, other).status_code == 200
    gw.usage_rows(expect=4)
    by_day = call(gw, "GET", "/usage", key).json()
    assert by_day["group_by"] == "day" and by_day["totals"]["requests"] == 3
    assert len(by_day["data"]) == 1 and by_day["data"][0]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    by_model = call(gw, "GET", "/usage", key, params={"group_by": "model"}).json()
    assert [(d["model"], d["requests"]) for d in by_model["data"]] == [("sim-small", 3)]
    by_key = call(gw, "GET", "/usage", ADMIN, params={"group_by": "key"}).json()
    assert by_key["totals"]["requests"] == 4 and len(by_key["data"]) == 2
    empty = call(gw, "GET", "/usage", key, params={"start": "2020-01-01", "end": "2020-01-02"}).json()
    assert empty["totals"]["requests"] == 0 and empty["data"] == []
    assert call(gw, "GET", "/usage", key, params={"group_by": "hour"}).status_code == 400


def test_logs_carry_bodies_only_where_the_key_allowed_them(gw: Gateway) -> None:
    owner = gw.create_key(account="logged", manager=True)
    logged = call(gw, "POST", "/keys", owner, json={"log_inputs": True, "log_outputs": True}).json()["key"]
    assert chat(gw, logged, "remember me").status_code == 200
    assert chat(gw, owner, "forget me").status_code == 200
    gw.usage_rows(expect=2)
    deadline = time.monotonic() + 5
    while True:
        data = call(gw, "GET", "/logs", owner).json()["data"]
        if data and data[-1]["input"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    newest, oldest = data
    assert (newest["input"], newest["output"]) == (None, None), "the owner key logs nothing"
    assert "remember me" in oldest["input"]
    assert oldest["output"] is not None and '"chat.completion"' in oldest["output"]
    assert oldest["status"] == 200 and oldest["model"] == "sim-small"


def test_streamed_output_is_logged_as_text(gw: Gateway) -> None:
    owner = gw.create_key(account="streamer", manager=True)
    logged = call(gw, "POST", "/keys", owner, json={"log_outputs": True}).json()["key"]
    r = chat(gw, logged, "stream it", stream=True)
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    deadline = time.monotonic() + 5
    while not (data := call(gw, "GET", "/logs", owner).json()["data"]) or data[0]["output"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert data[0]["input"] is None and data[0]["output"] and "data:" not in data[0]["output"]


def test_logs_are_paginated_newest_first(gw: Gateway) -> None:
    key = gw.create_key(account="pager")
    for i in range(5):
        assert chat(gw, key, f"n{i}").status_code == 200
    gw.usage_rows(expect=5)
    first = call(gw, "GET", "/logs", key, params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    ids = [d["id"] for d in first["data"]]
    seen = list(ids)
    cursor = first["next_before"]
    while cursor is not None:
        page = call(gw, "GET", "/logs", key, params={"limit": 2, "before": cursor}).json()
        seen += [d["id"] for d in page["data"]]
        cursor = page["next_before"]
    assert seen == sorted(seen, reverse=True) and len(seen) == 5
    assert call(gw, "GET", "/logs", key, params={"limit": 0}).status_code == 400


def test_admin_key_sees_every_account_and_must_name_one_to_act(gw: Gateway) -> None:
    gw.create_key(account="one")
    gw.create_key(account="two")
    assert len(call(gw, "GET", "/keys", ADMIN).json()["data"]) == 2
    assert len(call(gw, "GET", "/keys", ADMIN, params={"account": "one"}).json()["data"]) == 1
    missing = call(gw, "POST", "/keys", ADMIN, json={"name": "x"})
    assert missing.status_code == 400 and missing.json()["details"] == {"field": "account"}
    made = call(gw, "POST", "/keys", ADMIN, params={"account": "two"}, json={"name": "x"})
    assert made.status_code == 201
    assert call(gw, "GET", "/balance", ADMIN, params={"account": "two"}).json()["account"] == "two"
    assert call(gw, "GET", "/balance", ADMIN, params={"account": "nobody"}).status_code == 404


def test_allowed_models_are_enforced_and_priority_is_kept(gw: Gateway) -> None:
    owner = gw.create_key(manager=True)
    made = call(gw, "POST", "/keys", owner, json={"allowed_models": ["sim-fallback"], "priority": "high"})
    assert made.status_code == 201
    body = made.json()
    assert body["allowed_models"] == ["sim-fallback"] and body["priority"] == "high"
    refused = chat(gw, body["key"], temperature=0)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "PERMISSION_DENIED"
    assert chat(gw, owner, temperature=0).status_code == 200, "the owner key may use every model"
    assert chat(gw, body["key"], temperature=0).status_code == 403, "not even from the account's cache"
    bad = call(gw, "POST", "/keys", owner, json={"priority": "urgent"})
    assert bad.status_code == 400 and bad.json()["details"] == {"field": "priority"}


# On SQLite and PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    """The gateway on a new SQLite file, or on the session's PostgreSQL database emptied."""
    db_url = None
    if request.param == "postgresql":
        db_url = pg_url(request.getfixturevalue("pg_database"))
        run_in_thread(empty(db_url))
    with Gateway(tmp_path, sim.base_url, admin_key=ADMIN, key_cache_ttl=0.1, db_url=db_url) as g:
        yield g


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sim: SimServer
) -> Iterator[Gateway]:
    """One gateway per backend for the tests that only read or add keys (starting one takes ~0.5 s)."""
    db_url = None
    if request.param == "postgresql":
        db_url = pg_url(request.getfixturevalue("pg_database"))
        run_in_thread(empty(db_url))
    with Gateway(tmp_path_factory.mktemp("shared"), sim.base_url, admin_key=ADMIN, db_url=db_url) as g:
        g.manager_key = g.create_key(manager=True)  # type: ignore[attr-defined]
        yield g


def refused(r: httpx.Response, field: str, status: int = 400) -> str:
    """The management error shape, naming ``field``; returns the message."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert body["details"] == {"field": field}, body
    assert body["code"] == ("VALIDATION_ERROR" if status == 400 else "PERMISSION_DENIED")
    assert set(body) == {"error", "code", "message", "details", "docs_url"}
    assert len(body["message"]) < 700, "a client's value is quoted cut short"
    return str(body["message"])


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"rate_limits": {"requests_per_minute": 2**31}}, "rate_limits.requests_per_minute", "2147483647"),
        ({"rate_limits": {"concurrent_requests": 2**31}}, "rate_limits.concurrent_requests", "2147483647"),
        (
            {"rate_limits": {"tokens_per_minute": 2**63}},
            "rate_limits.tokens_per_minute",
            "9223372036854775807",
        ),
        ({"rate_limits": {"tokens_per_minute": 2**64}}, "rate_limits.tokens_per_minute", "from 1 to"),
        ({"rate_limits": {"requests_per_minute": 0}}, "rate_limits.requests_per_minute", "from 1 to"),
        ({"retention_days": 2**31}, "retention_days", "from 0 to 36500"),
        ({"retention_days": -1}, "retention_days", "from 0 to 36500"),
        ({"tier": []}, "tier", "one of"),
        ({"tier": {"a": 1}}, "tier", "one of"),
        ({"tier": "gold" * 10_000}, "tier", "one of"),
        ({"priority": []}, "priority", "one of"),
        ({"name": "ci\x00job"}, "name", "control characters"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"name": "x" * 100_000}, "name", "at most 200"),
        ({"name": ["x"]}, "name", "string"),
        ({"allowed_models": ["sim-small\x00"]}, "allowed_models", "control characters"),
        ({"allowed_models": ["m" * 201]}, "allowed_models", "at most 200"),
        ({"allowed_models": [f"m{i}" for i in range(1001)]}, "allowed_models", "at most 1000"),
        ({"allowed_models": "sim-small"}, "allowed_models", "list"),
        ({"manager": "yes"}, "manager", "true or false"),
        ({"c" * 5000: 1}, "c" * 100, "Unknown field"),
    ],
)
def test_key_settings_out_of_bounds_are_400s_that_say_what_to_fix(
    shared: Gateway, body: dict[str, Any], field: str, hint: str
) -> None:
    owner = shared.manager_key  # type: ignore[attr-defined]
    assert hint in refused(call(shared, "POST", "/keys", owner, json=body), field)


def test_key_settings_at_their_bounds_are_stored(both: Gateway) -> None:
    owner = both.create_key(manager=True)
    limits = {
        "requests_per_minute": 2**31 - 1,
        "tokens_per_minute": 2**63 - 1,
        "concurrent_requests": 2**31 - 1,
    }
    made = call(
        both,
        "POST",
        "/keys",
        owner,
        json={"rate_limits": limits, "retention_days": 36_500, "name": "Ünïcødé ✓"},
    )
    assert made.status_code == 201, made.text
    listed = {k["id"]: k for k in call(both, "GET", "/keys", owner).json()["data"]}
    assert listed[made.json()["id"]]["rate_limits"] == limits
    assert listed[made.json()["id"]]["name"] == "Ünïcødé ✓"
    assert chat(both, made.json()["key"]).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/logs", {"limit": "0"}, "limit"),
        ("/logs", {"limit": "201"}, "limit"),
        ("/logs", {"limit": "²"}, "limit"),
        ("/logs", {"limit": "9" * 5000}, "limit"),
        ("/logs", {"before": str(2**63)}, "before"),
        ("/logs", {"before": "9" * 5000}, "before"),
        ("/logs", {"before": "-1"}, "before"),
        ("/usage", {"start": "1e400"}, "start"),
        ("/usage", {"start": "nan"}, "start"),
        ("/usage", {"start": "-1"}, "start"),
        ("/usage", {"end": str(2**63)}, "end"),
        ("/usage", {"end": "9" * 5000}, "end"),
        ("/usage", {"start": "2026-13-01"}, "start"),
        ("/usage", {"group_by": "hour" * 10_000}, "group_by"),
    ],
)
def test_query_parameters_out_of_bounds_are_400s(
    shared: Gateway, path: str, params: dict[str, str], field: str
) -> None:
    refused(call(shared, "GET", path, shared.manager_key, params=params), field)  # type: ignore[attr-defined]


def test_a_before_cursor_past_every_id_returns_every_log(both: Gateway) -> None:
    key = both.create_key()
    assert chat(both, key).status_code == 200
    both.usage_rows(expect=1)
    for before in (2**31 - 1, 2**31, 2**63 - 1):
        page = call(both, "GET", "/logs", key, params={"before": before})
        assert page.status_code == 200 and len(page.json()["data"]) == 1


def test_the_admins_account_parameter_is_bounded(both: Gateway) -> None:
    both.create_key(account="real")
    for wanted in ("a\x00b", "a" * 201, "tab\there"):
        refused(call(both, "GET", "/balance", ADMIN, params={"account": wanted}), "account")
    missing = call(both, "GET", "/balance", ADMIN, params={"account": "nobody"})
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert call(both, "DELETE", "/keys/key%00x", ADMIN).status_code == 404


# Least privilege --------------------------------------------------------------------------------------------


def test_a_restricted_key_cannot_mint_a_more_permissive_one(both: Gateway) -> None:
    owner = both.create_key(manager=True)
    restricted = call(
        both, "POST", "/keys", owner, json={"tier": "public", "allowed_models": ["sim-small"]}
    ).json()["key"]
    for body, field in [
        ({"name": "x", "tier": "enterprise"}, "rate_limits"),
        ({"tier": None}, "rate_limits"),
        ({"rate_limits": {"requests_per_minute": 31}}, "rate_limits"),
        ({"allowed_models": None}, "allowed_models"),
        ({"allowed_models": ["sim-small", "sim-fallback"]}, "allowed_models"),
        ({"log_inputs": True}, "log_inputs"),
        ({"priority": "high"}, "priority"),
        ({"manager": True}, "manager"),
    ]:
        message = refused(call(both, "POST", "/keys", restricted, json=body), field, status=403)
        assert "at most as permissive as itself" in message
    made = call(both, "POST", "/keys", restricted, json={"name": "child"})
    assert made.status_code == 201
    child = made.json()
    assert (
        child["tier"] == "public" and child["allowed_models"] == ["sim-small"] and child["manager"] is False
    )
    assert child["created_by"] is not None
    narrower = call(
        both, "POST", "/keys", restricted, json={"rate_limits": {"requests_per_minute": 5}}
    ).json()
    assert (narrower["tier"], narrower["rate_limits"]["requests_per_minute"]) == ("public", 5)
    client = both.client(child["key"])
    assert client.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    ).choices
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="sim-fallback", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )


def test_a_plain_key_revokes_only_itself_and_the_keys_it_created(both: Gateway) -> None:
    owner = both.create_key(manager=True)
    plain = call(both, "POST", "/keys", owner, json={"name": "plain"}).json()
    sibling = call(both, "POST", "/keys", owner, json={"name": "sibling"}).json()
    child = call(both, "POST", "/keys", plain["key"], json={"name": "child"}).json()
    grandchild = call(both, "POST", "/keys", child["key"], json={"name": "grandchild"}).json()
    owner_id = next(k["id"] for k in call(both, "GET", "/keys", owner).json()["data"] if k["name"] == "test")
    for target in (sibling["id"], owner_id):
        message = refused(call(both, "DELETE", f"/keys/{target}", plain["key"]), "key_id", status=403)
        assert "manager key" in message
    assert chat(both, sibling["key"]).status_code == 200 and chat(both, owner).status_code == 200
    assert call(both, "DELETE", f"/keys/{grandchild['id']}", plain["key"]).status_code == 200
    assert call(both, "DELETE", f"/keys/{child['id']}", plain["key"]).status_code == 200
    assert call(both, "DELETE", f"/keys/{plain['id']}", plain["key"]).status_code == 200
    assert call(both, "DELETE", f"/keys/{sibling['id']}", owner).status_code == 200, "a manager revokes any"


def test_only_the_admin_or_a_manager_makes_manager_keys(both: Gateway) -> None:
    both.create_key(account="team")
    made = call(both, "POST", "/keys", ADMIN, params={"account": "team"}, json={"manager": True})
    assert made.status_code == 201 and made.json()["manager"] is True
    manager = made.json()["key"]
    second = call(both, "POST", "/keys", manager, json={"manager": True, "tier": "enterprise"})
    assert second.status_code == 201 and second.json()["manager"] is True
    plain = call(both, "POST", "/keys", manager, json={}).json()
    assert plain["manager"] is False and plain["tier"] is None, "a manager's keys get the defaults"
    refused(call(both, "POST", "/keys", plain["key"], json={"manager": True}), "manager", status=403)


# Revocation -----------------------------------------------------------------------------------------------


def test_a_key_revoked_through_the_api_stops_at_once_on_that_process(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, key_cache_ttl=600) as g:
        owner = g.create_key(manager=True)
        new = call(g, "POST", "/keys", owner, json={"name": "temp"}).json()
        client = g.client(new["key"])
        messages: Any = [{"role": "user", "content": "hi"}]
        assert client.chat.completions.create(model="sim-small", messages=messages, max_tokens=4).choices
        assert call(g, "DELETE", f"/keys/{new['id']}", owner).status_code == 200
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            client.chat.completions.create(model="sim-small", messages=messages, max_tokens=4)


def test_a_key_revoked_on_another_replica_stops_within_the_key_cache_ttl(
    tmp_path: Path, sim: SimServer
) -> None:
    ttl = 0.5
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        Gateway(tmp_path / "a", sim.base_url, key_cache_ttl=ttl, db_url=db_url) as a,
        Gateway(tmp_path / "b", sim.base_url, key_cache_ttl=ttl, db_url=db_url) as b,
    ):
        owner = a.create_key(manager=True)
        new = call(a, "POST", "/keys", owner, json={"name": "temp"}).json()
        assert chat(b, new["key"]).status_code == 200
        assert call(a, "DELETE", f"/keys/{new['id']}", owner).status_code == 200
        revoked = time.monotonic()
        while chat(b, new["key"]).status_code == 200:
            time.sleep(0.02)
        assert time.monotonic() - revoked <= ttl + 0.2
