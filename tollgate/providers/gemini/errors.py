"""Gemini error bodies → Tollgate's ``UpstreamError`` tree.

Gemini answers failures with Google's standard error envelope::

    {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED", "details": [...]}}

``streamGenerateContent`` without ``alt=sse`` (and some proxies in front of it) wraps the same object in a
one-element JSON list: ``[{"error": {...}}]``. Both shapes are accepted here.

The canonical ``status`` string wins over the HTTP status when both are known: an error that arrives
inside a 200 SSE stream only has the envelope, and an invalid API key comes back as HTTP 400
``INVALID_ARGUMENT`` with an ``ErrorInfo`` detail whose reason is ``API_KEY_INVALID`` (that is our
credentials, not the caller's request).
"""

from __future__ import annotations

import math
import re
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

__all__ = ["map_error", "map_error_payload"]

_PREFIX = "gemini: "
_CREDENTIAL_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_REJECTED_STATUSES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE"})
_SERVER_STATUSES = frozenset({"INTERNAL", "UNKNOWN", "CANCELLED", "ABORTED", "DATA_LOSS"})
_STATUS_FROM_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def map_error(status: int, body: bytes, retry_after: str | None = None) -> UpstreamError:
    """Turn a non-2xx Gemini answer (HTTP ``status`` and raw ``body``) into the matching ``UpstreamError``.

    ``retry_after`` is the upstream ``Retry-After`` header, if any; a 429 keeps it (or, failing that, the
    ``google.rpc.RetryInfo.retryDelay`` of the body) in ``.headers["Retry-After"]``.
    """
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return map_error_payload(status, parsed["error"], retry_after)
    # No Google envelope: a proxy or load balancer answered. Throttling and outages still mean what they say.
    if status == 429:
        return _rate_limited("rate limited (HTTP 429, unreadable error body)", retry_after, None, {})
    if status == 503:
        return UpstreamUnavailableError(f"{_PREFIX}upstream unavailable (HTTP 503, unreadable error body)")
    if status == 504:
        return UpstreamTimeoutError(f"{_PREFIX}upstream timed out (HTTP 504, unreadable error body)")
    return UpstreamBadResponseError(f"{_PREFIX}unreadable error response (HTTP {status})")


def map_error_payload(status: int, error: dict[str, Any], retry_after: str | None = None) -> UpstreamError:
    """Map the inner ``error`` object of a Gemini error envelope (also used for errors inside a stream).

    ``status`` is the HTTP status; pass the envelope's ``code`` (or 500) for an error met mid-stream.
    """
    code = error.get("code")
    http = code if isinstance(code, int) and code >= 400 else status
    raw_status = error.get("status")
    grpc = raw_status if isinstance(raw_status, str) and raw_status else _STATUS_FROM_HTTP.get(http, "")
    raw_message = error.get("message")
    message = raw_message.strip() if isinstance(raw_message, str) and raw_message.strip() else grpc or "error"
    details = {"upstream_status": grpc, "upstream_code": http}

    if grpc == "RESOURCE_EXHAUSTED" or http == 429:
        return _rate_limited(message, retry_after, error.get("details"), {**details, "upstream_code": 429})
    if (
        grpc in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        or http in (401, 403)
        or _CREDENTIAL_REASONS & _reasons(error.get("details"))
    ):
        # Gemini's own message can quote the key or the project; it is not the caller's business.
        return UpstreamBadResponseError(
            f"{_PREFIX}the gateway's provider credentials were rejected ({grpc or f'HTTP {http}'})",
            details=details,
        )
    if grpc == "UNAVAILABLE" or http == 503:
        return UpstreamUnavailableError(f"{_PREFIX}{message}", details=details)
    if grpc == "DEADLINE_EXCEEDED" or http == 504:
        return UpstreamTimeoutError(f"{_PREFIX}{message}", details=details)
    if grpc in _REJECTED_STATUSES or (400 <= http < 500 and grpc not in _SERVER_STATUSES):
        return UpstreamRejectedError(f"{_PREFIX}{message}", details=details)
    return UpstreamBadResponseError(f"{_PREFIX}{message}", details=details)


def _rate_limited(
    message: str, retry_after: str | None, error_details: Any, details: dict[str, Any]
) -> UpstreamRateLimitError:
    wait = retry_after.strip() if retry_after and retry_after.strip() else _retry_delay(error_details)
    headers = {"Retry-After": wait} if wait else {}
    return UpstreamRateLimitError(f"{_PREFIX}{message}", headers=headers, details=details)


def _retry_delay(details: Any) -> str | None:
    """``google.rpc.RetryInfo.retryDelay`` (a Duration such as ``"17s"`` or ``"0.5s"``) as whole seconds."""
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DELAY.match(str(item.get("retryDelay", "")))
            if match:
                return str(max(1, math.ceil(float(match.group(1)))))
    return None


def _reasons(details: Any) -> set[str]:
    """The ``reason`` of every ``google.rpc.ErrorInfo`` detail."""
    if not isinstance(details, list):
        return set()
    return {
        item["reason"]
        for item in details
        if isinstance(item, dict)
        and str(item.get("@type", "")).endswith("google.rpc.ErrorInfo")
        and isinstance(item.get("reason"), str)
    }
