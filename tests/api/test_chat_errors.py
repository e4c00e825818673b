"""Every documented error of the chat endpoint, in OpenAI's error shape with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "hello"}]


def post(gw: Gateway, key: str | None, body: Any, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.base_url + "/chat/completions", headers=headers, json=body, timeout=30, **kw)


def assert_openai_error(r: httpx.Response, status: int, code: str, says: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    assert says in err["message"], err["message"]
    assert r.headers["x-request-id"].startswith("req_")
    return dict(err)


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"messages": USER}, "model", "'model' is required"),
        ({"model": "sim-small"}, "messages", "'messages' is required"),
        ({"model": "sim-small", "messages": "hi"}, "messages", "must be an array"),
        ({"model": "sim-small", "messages": []}, "messages", "at least one message"),
        (
            {"model": "sim-small", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "must be one of",
        ),
        ({"model": "sim-small", "messages": [{"role": "user"}]}, "messages[0].content", "is required"),
        (
            {"model": "sim-small", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "string or an array",
        ),
        ({"model": "sim-small", "messages": USER, "temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"model": "sim-small", "messages": USER, "temperature": -0.1}, "temperature", "between 0 and 2"),
        ({"model": "sim-small", "messages": USER, "top_p": 1.5}, "top_p", "between 0 and 1"),
        ({"model": "sim-small", "messages": USER, "max_tokens": 0}, "max_tokens", "positive integer"),
        ({"model": "sim-small", "messages": USER, "max_tokens": 2.5}, "max_tokens", "positive integer"),
        (
            {"model": "sim-small", "messages": USER, "max_completion_tokens": -3},
            "max_completion_tokens",
            "positive integer",
        ),
        ({"model": "sim-small", "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(
    gateway: Gateway, body: Any, param: str, says: str
) -> None:
    key = gateway.create_key()
    err = assert_openai_error(post(gateway, key, body), 400, "VALIDATION_ERROR", says)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


def test_body_that_is_not_json_gets_400(gateway: Gateway) -> None:
    key = gateway.create_key()
    r = httpx.post(
        gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, content=b"{nope"
    )
    assert_openai_error(r, 400, "VALIDATION_ERROR", "not valid JSON")


def test_model_outside_the_allow_list_lists_the_valid_models(gateway: Gateway) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client(key).chat.completions.create(model="gpt-9", messages=USER)  # type: ignore[arg-type]
    assert (
        "gpt-9" in exc.value.message
        and "sim-small" in exc.value.message
        and "sim-fallback" in exc.value.message
    )


@pytest.mark.parametrize("key", [None, "tg-notarealkey000000000", "sk-other-format"])
def test_missing_or_invalid_key_gets_401(gateway: Gateway, key: str | None) -> None:
    assert_openai_error(
        post(gateway, key, {"model": "sim-small", "messages": USER}), 401, "INVALID_API_KEY", "API key"
    )


def test_revoked_key_gets_401(gateway: Gateway) -> None:
    import asyncio
    import time

    from tollgate.storage import open_storage

    key = gateway.create_key()
    assert post(gateway, key, {"model": "sim-small", "messages": USER}).status_code == 200

    async def revoke() -> None:
        store = open_storage(gateway.db_url)
        rec = await store.key_by_prefix(key[:11])
        assert rec is not None
        await store.revoke_key(rec.id, time.time())
        await store.close()

    asyncio.run(revoke())
    time.sleep(0.6)  # the test gateway's key cache TTL is 0.5 s
    assert_openai_error(
        post(gateway, key, {"model": "sim-small", "messages": USER}), 401, "INVALID_API_KEY", "revoked"
    )


def test_insufficient_balance_gets_402(gateway: Gateway) -> None:
    key = gateway.create_key(balance="0")
    r = post(gateway, key, {"model": "sim-small", "messages": USER})
    assert_openai_error(r, 402, "INSUFFICIENT_BALANCE", "balance")
    (row,) = gateway.usage_rows(expect=1)
    assert row.status == 402 and row.cost == 0


def test_balance_within_grace_buffer_is_served(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, grace_buffer="1") as gw:
        key = gw.create_key(balance="0")
        assert post(gw, key, {"model": "sim-small", "messages": USER}).status_code == 200
        gw.usage_rows(expect=1)
        assert gw.balance() < 0


def test_body_over_the_limit_gets_413(gateway: Gateway) -> None:
    key = gateway.create_key()
    big = [{"role": "user", "content": "x" * 1_100_000}]
    assert_openai_error(
        post(gateway, key, {"model": "sim-small", "messages": big}), 413, "PAYLOAD_TOO_LARGE", "limit"
    )


@pytest.mark.parametrize(
    ("sim_opts", "status", "code"),
    [
        ({"error": 500}, 502, "UPSTREAM_ERROR"),
        ({"invalid_json": True}, 502, "UPSTREAM_ERROR"),
        ({"error": 503}, 503, "UPSTREAM_UNAVAILABLE"),
        ({"error": 429, "retry_after": 7}, 429, "UPSTREAM_RATE_LIMITED"),
        ({"error": 401}, 502, "UPSTREAM_ERROR"),
    ],
)
def test_upstream_failures_map_to_gateway_statuses(
    gateway: Gateway, sim_opts: dict[str, Any], status: int, code: str
) -> None:
    key = gateway.create_key()
    r = post(gateway, key, {"model": "sim-small", "messages": USER, "sim": sim_opts})
    assert_openai_error(r, status, code, "sim")
    if status == 429:
        assert r.headers["retry-after"] == "7"
    (row,) = gateway.usage_rows(expect=1)
    assert row.status == status and row.cost == 0


def test_upstream_rejecting_the_request_passes_its_message_on(gateway: Gateway) -> None:
    key = gateway.create_key()
    r = post(gateway, key, {"model": "sim-small", "messages": USER, "sim": {"error": 400}})
    assert r.status_code == 400
    assert "upstream answered 400" in r.json()["error"]["message"]


def test_no_reachable_provider_gets_503(gateway: Gateway) -> None:
    key = gateway.create_key()
    assert_openai_error(
        post(gateway, key, {"model": "unreachable", "messages": USER}),
        503,
        "UPSTREAM_UNAVAILABLE",
        "cannot connect",
    )


def test_upstream_over_the_time_limit_gets_504_and_is_cancelled(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, upstream_timeout=0.5) as gw:
        key = gw.create_key()
        r = post(gw, key, {"model": "sim-small", "messages": USER, "sim": {"hang": True, "scenario": "t504"}})
        assert_openai_error(r, 504, "UPSTREAM_TIMEOUT", "0.5 s")
        rs = post(
            gw,
            key,
            {
                "model": "sim-small",
                "messages": USER,
                "stream": True,
                "sim": {"hang": True, "scenario": "t504s"},
            },
        )
        assert_openai_error(rs, 504, "UPSTREAM_TIMEOUT", "0.5 s")
        rows = gw.usage_rows(expect=2)
        assert [r.status for r in rows] == [504, 504]


def test_unknown_route_and_method_answer_json(gateway: Gateway) -> None:
    r = httpx.get(gateway.base_url + "/nope")
    assert r.status_code == 404
    error = r.json()["error"]  # OpenAI's shape: an unknown /v1 route is read by OpenAI SDKs
    assert error["code"] == "NOT_FOUND" and "/v1/nope" in error["message"]
    r = httpx.get(gateway.base_url + "/chat/completions")
    assert r.status_code == 405 and "GET" in r.json()["error"]["message"]


def test_a_defect_inside_the_gateway_is_a_500_that_still_leaves_its_row(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tollgate.providers.openai_compat import OpenAICompatProvider

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(OpenAICompatProvider, "chat", broken)
    key = gateway.create_key(balance="1")
    r = post(gateway, key, {"model": "sim-small", "messages": USER})
    assert r.status_code == 500
    err = r.json()["error"]
    assert "Internal error" in err["message"] and "simulated defect" not in r.text
    (row,) = gateway.usage_rows(expect=1)
    assert row.status == 500 and row.cost == 0
    # The reservation was released: the whole balance is still available to the next request.
    ledger = gateway.server.server.config.app.state.ledger
    assert ledger.available(row.account_id) == 1


def test_a_cancelled_request_still_leaves_its_row_and_releases_its_reservation(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose task is cancelled mid-call (a shutdown past its grace period) is not lost."""
    import asyncio

    from tollgate.providers.openai_compat import OpenAICompatProvider

    async def cancelled(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(5)

    monkeypatch.setattr(OpenAICompatProvider, "chat", cancelled)
    key = gateway.create_key(balance="1")
    r = post(gateway, key, {"model": "sim-small", "messages": USER})
    assert r.status_code == 500
    (row,) = gateway.usage_rows(expect=1)
    assert (row.status, row.error_code, row.cost) == (499, "CLIENT_DISCONNECTED", 0)
    ledger = gateway.server.server.config.app.state.ledger
    assert ledger.available(row.account_id) == 1
