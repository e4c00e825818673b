"""Anthropic error bodies and statuses -> Tollgate UpstreamError classes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tollgate.providers.anthropic import error_from_event, map_error


@pytest.mark.parametrize(
    ("status", "fixture", "cls"),
    [
        (400, "invalid_request_error", UpstreamRejectedError),
        (404, "not_found_error", UpstreamRejectedError),
        (413, "request_too_large", UpstreamRejectedError),
        (429, "rate_limit_error", UpstreamRateLimitError),
        (500, "api_error", UpstreamBadResponseError),
        (529, "overloaded_error", UpstreamUnavailableError),
    ],
)
def test_status_and_error_type_map_to_the_upstream_error_class(
    status: int, fixture: str, cls: type[UpstreamError], load_json: Any
) -> None:
    body = load_json("error_bodies.json")[fixture]
    err = map_error(status, orjson.dumps(body))
    assert type(err) is cls
    assert err.message == "anthropic: " + body["error"]["message"]
    assert err.details == {
        "upstream_status": status,
        "upstream_type": fixture,
        "upstream_request_id": body["request_id"],
    }


def test_rejected_requests_are_not_retryable_but_overload_is(load_json: Any) -> None:
    bodies = load_json("error_bodies.json")
    assert map_error(400, orjson.dumps(bodies["invalid_request_error"])).retryable is False
    assert map_error(529, orjson.dumps(bodies["overloaded_error"])).retryable is True


def test_rate_limit_keeps_retry_after_in_headers(load_json: Any) -> None:
    err = map_error(429, orjson.dumps(load_json("error_bodies.json")["rate_limit_error"]), retry_after="17")
    assert isinstance(err, UpstreamRateLimitError)
    assert err.headers == {"Retry-After": "17"}
    assert err.status == 429


@pytest.mark.parametrize(("status", "fixture"), [(401, "authentication_error"), (403, "permission_error")])
def test_rejected_credentials_are_reported_as_a_gateway_problem(
    status: int, fixture: str, load_json: Any
) -> None:
    body = load_json("error_bodies.json")[fixture]
    err = map_error(status, orjson.dumps(body))
    assert type(err) is UpstreamBadResponseError
    assert err.message.startswith("anthropic: the gateway's provider credentials were rejected")
    assert body["error"]["message"] in err.message
    assert err.status == 502


def test_timeout_and_billing_statuses_map_sensibly() -> None:
    timeout = {"type": "error", "error": {"type": "timeout_error", "message": "Request timed out"}}
    assert type(map_error(504, orjson.dumps(timeout))) is UpstreamTimeoutError
    billing = {"type": "error", "error": {"type": "billing_error", "message": "credit balance is too low"}}
    err = map_error(402, orjson.dumps(billing))
    assert type(err) is UpstreamBadResponseError and "credit balance is too low" in err.message


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"", b"[]", b'{"error": "nope"}'])
def test_unparseable_bodies_become_bad_response_errors(body: bytes) -> None:
    err = map_error(400, body)
    assert type(err) is UpstreamBadResponseError
    assert err.message.startswith("anthropic: HTTP 400 with an unreadable error body")


def test_unparseable_rate_limit_and_overload_still_follow_their_status() -> None:
    err = map_error(429, b"<html>Too Many Requests</html>", retry_after="3")
    assert type(err) is UpstreamRateLimitError and err.headers == {"Retry-After": "3"}
    assert type(map_error(529, b"overloaded")) is UpstreamUnavailableError


def test_stream_error_events_map_by_error_type() -> None:
    event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    err = error_from_event(event)
    assert type(err) is UpstreamUnavailableError and err.message == "anthropic: Overloaded"
    api = error_from_event(
        {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
    )
    assert type(api) is UpstreamBadResponseError
    assert type(error_from_event({"type": "error"})) is UpstreamBadResponseError
