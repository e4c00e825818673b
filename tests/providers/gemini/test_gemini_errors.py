"""Gemini error bodies → Tollgate's UpstreamError tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tollgate.providers.gemini import map_error

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gemini"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("status", "fixture", "expected"),
    [
        (400, "error_400_invalid_argument.json", UpstreamRejectedError),
        (400, "error_400_failed_precondition.json", UpstreamRejectedError),
        (404, "error_404_not_found.json", UpstreamRejectedError),
        (429, "error_429_resource_exhausted.json", UpstreamRateLimitError),
        (500, "error_500_internal.json", UpstreamBadResponseError),
        (503, "error_503_unavailable.json", UpstreamUnavailableError),
        (504, "error_504_deadline_exceeded.json", UpstreamTimeoutError),
        (403, "error_403_permission_denied.json", UpstreamBadResponseError),
        (400, "error_400_api_key_invalid.json", UpstreamBadResponseError),
    ],
)
def test_error_maps_to_the_upstream_error_class(
    status: int, fixture: str, expected: type[UpstreamError]
) -> None:
    error = map_error(status, body(fixture))
    assert type(error) is expected
    assert error.message.startswith("gemini: ")


def test_rejected_request_keeps_geminis_message_and_is_not_retryable() -> None:
    error = map_error(404, body("error_404_not_found.json"))
    assert "models/gemini-9.9-ultra is not found" in error.message
    assert error.retryable is False
    assert error.details["upstream_status"] == "NOT_FOUND"


def test_rate_limit_keeps_the_retry_after_header() -> None:
    error = map_error(429, body("error_429_resource_exhausted.json"), retry_after="30")
    assert error.headers == {"Retry-After": "30"}
    assert error.status == 429


def test_rate_limit_without_header_uses_the_retry_info_delay_rounded_up() -> None:
    error = map_error(429, body("error_429_resource_exhausted.json"))
    assert error.headers == {"Retry-After": "17"}


def test_rate_limit_without_any_delay_has_no_retry_after() -> None:
    error = map_error(
        429, b'{"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}'
    )
    assert isinstance(error, UpstreamRateLimitError) and error.headers == {}


def test_invalid_api_key_reported_as_400_is_our_credentials_not_the_callers_request() -> None:
    error = map_error(400, body("error_400_api_key_invalid.json"))
    assert "provider credentials were rejected" in error.message
    assert error.retryable is True


@pytest.mark.parametrize("status", [401, 403])
def test_credential_errors_do_not_leak_geminis_message(status: int) -> None:
    error = map_error(status, body("error_403_permission_denied.json"))
    assert "provider credentials were rejected" in error.message
    assert "AIza" not in error.message and "suspended" not in error.message


def test_status_string_wins_over_the_http_status() -> None:
    payload = b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}'
    assert isinstance(map_error(200, payload), UpstreamUnavailableError)


def test_error_wrapped_in_a_one_element_list_is_understood() -> None:
    payload = b'[{"error": {"code": 400, "message": "bad field", "status": "INVALID_ARGUMENT"}}]'
    error = map_error(400, payload)
    assert isinstance(error, UpstreamRejectedError) and error.message == "gemini: bad field"


@pytest.mark.parametrize("payload", [b"<html>Bad Gateway</html>", b"", b'{"detail": "nope"}', b"[1, 2]"])
def test_unparseable_error_body_is_a_bad_upstream_response(payload: bytes) -> None:
    error = map_error(502, payload)
    assert type(error) is UpstreamBadResponseError
    assert error.message == "gemini: unreadable error response (HTTP 502)"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, UpstreamRateLimitError), (503, UpstreamUnavailableError), (504, UpstreamTimeoutError)],
)
def test_unparseable_body_still_honours_throttling_and_outage_statuses(
    status: int, expected: type[UpstreamError]
) -> None:
    error = map_error(status, b"<html>busy</html>", retry_after="5")
    assert type(error) is expected
    if expected is UpstreamRateLimitError:
        assert error.headers == {"Retry-After": "5"}
