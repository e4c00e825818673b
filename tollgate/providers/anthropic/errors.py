"""Anthropic error bodies and stream ``error`` events -> Tollgate's ``UpstreamError`` tree.

Anthropic always answers errors as ``{"type": "error", "error": {"type": ..., "message": ...},
"request_id": ...}`` with these documented statuses: 400 ``invalid_request_error``, 401
``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 413 ``request_too_large``,
429 ``rate_limit_error``, 500 ``api_error``, 529 ``overloaded_error`` (plus 402 ``billing_error`` and
504 ``timeout_error`` in newer API versions). Mid-stream, the same error object arrives as an SSE
``error`` event after a 200, without a status: :func:`error_from_event` maps its ``type`` to the status
it would have had.

Mapping (message always ``"anthropic: <upstream message>"``):

* 429 -> ``UpstreamRateLimitError``; ``Retry-After`` kept in ``.headers``.
* 529 ``overloaded_error`` and 503 -> ``UpstreamUnavailableError``: capacity is gone for now, another
  provider may well answer, so it is retryable and shown to clients as 503.
* 500 ``api_error``, 502 and other 5xx -> ``UpstreamBadResponseError`` (502): Anthropic failed this one
  request; retryable elsewhere.
* 504 / 408 ``timeout_error`` -> ``UpstreamTimeoutError``.
* 400/404/413/422 and other 4xx -> ``UpstreamRejectedError`` with Anthropic's message: the request
  itself is wrong and retrying it elsewhere will not help.
* 401/403 (and 402 ``billing_error``) -> ``UpstreamBadResponseError`` saying the gateway's provider
  credentials (or account) were rejected: a gateway configuration problem the client cannot fix,
  so Anthropic's wording about API keys is never shown as if it were the client's key.
* A body that is not Anthropic's error JSON -> ``UpstreamBadResponseError``, except for 429/503/504/529
  whose status alone is unambiguous (proxies in front of the API answer those with HTML).
"""

from __future__ import annotations

from typing import Any

import orjson

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

__all__ = ["error_from_event", "map_error"]

PREFIX = "anthropic: "

# The status each documented error ``type`` is sent with (used for stream ``error`` events).
_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_STATUS_ONLY = {429: UpstreamRateLimitError, 503: UpstreamUnavailableError, 529: UpstreamUnavailableError}


def _parse(body: bytes) -> tuple[str, str, str | None] | None:
    """``(type, message, request_id)`` of an Anthropic error body, ``None`` when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return None
    etype = err.get("type")
    request_id = data.get("request_id")
    return (
        etype if isinstance(etype, str) else "error",
        err["message"],
        request_id if isinstance(request_id, str) else None,
    )


def _build(
    status: int, etype: str, message: str, details: dict[str, Any], headers: dict[str, str]
) -> UpstreamError:
    if status in (401, 403):
        return UpstreamBadResponseError(
            f"{PREFIX}the gateway's provider credentials were rejected ({etype}: {message}); "
            "this is a gateway configuration problem, not a problem with your request",
            details=details,
        )
    if status == 402:
        return UpstreamBadResponseError(
            f"{PREFIX}the gateway's provider account cannot be billed ({etype}: {message})", details=details
        )
    text = f"{PREFIX}{message}"
    if status == 429:
        return UpstreamRateLimitError(text, details=details, headers=headers)
    if status in (503, 529) or etype == "overloaded_error":
        return UpstreamUnavailableError(text, details=details, headers=headers)
    if status in (408, 504) or etype == "timeout_error":
        return UpstreamTimeoutError(text, details=details, headers=headers)
    if 400 <= status < 500:
        return UpstreamRejectedError(text, details=details)
    return UpstreamBadResponseError(text, details=details, headers=headers)


def map_error(status: int, body: bytes, retry_after: str | None = None) -> UpstreamError:
    """The ``UpstreamError`` for a non-2xx answer from ``POST /v1/messages``."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    parsed = _parse(body)
    if parsed is None:
        snippet = body[:200].decode("utf-8", "replace").strip() or "<empty body>"
        details: dict[str, Any] = {"upstream_status": status}
        if status in _STATUS_ONLY:
            return _STATUS_ONLY[status](f"{PREFIX}HTTP {status}: {snippet}", details=details, headers=headers)
        return UpstreamBadResponseError(
            f"{PREFIX}HTTP {status} with an unreadable error body: {snippet}",
            details=details,
            headers=headers,
        )
    etype, message, request_id = parsed
    details = {"upstream_status": status, "upstream_type": etype}
    if request_id:
        details["upstream_request_id"] = request_id
    return _build(status, etype, message, details, headers)


def error_from_event(data: dict[str, Any]) -> UpstreamError:
    """The ``UpstreamError`` for an SSE ``error`` event received after the stream started."""
    err = data.get("error")
    if not isinstance(err, dict):
        return UpstreamBadResponseError(f"{PREFIX}malformed error event in stream: {data!r}"[:300])
    etype = err.get("type") if isinstance(err.get("type"), str) else "api_error"
    message = err.get("message") if isinstance(err.get("message"), str) else "unknown error"
    assert isinstance(etype, str) and isinstance(message, str)
    status = _TYPE_STATUS.get(etype, 500)
    details: dict[str, Any] = {"upstream_type": etype, "mid_stream": True}
    return _build(status, etype, message, details, {})
