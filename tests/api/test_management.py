"""tollgate/api/management.py through a running gateway: keys, balance, usage and logs, each scoped to
the caller's account (the admin key sees all), errors in the management shape."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

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
