"""One error tree for the whole gateway.

Every failure a client can see is a ``TollgateError``. Each class knows its HTTP status, its OpenAI error
``type`` and a stable ``code``; the route layer renders it in the endpoint's shape (``api/errors.py``)::

    TollgateError
    ├── ClientError                      4xx, the caller can fix it
    │   ├── ValidationError              400 invalid_request_error
    │   ├── AuthenticationError          401 INVALID_API_KEY
    │   ├── InsufficientBalanceError     402 INSUFFICIENT_BALANCE
    │   ├── PermissionDeniedError        403
    │   ├── NotFoundError                404 (unknown model, route, key)
    │   ├── PayloadTooLargeError         413
    │   ├── ClientDisconnectedError      499 the client left before its request was read
    │   └── RateLimitError               429 (our own limits; carries Retry-After)
    ├── DatabaseUnavailableError         503 DATABASE_UNAVAILABLE (carries Retry-After)
    └── UpstreamError                    the provider failed us
        ├── UpstreamRateLimitError       429 upstream said slow down
        ├── UpstreamBadResponseError     502 error or unreadable answer from upstream
        ├── UpstreamUnavailableError     503 no provider reachable
        └── UpstreamTimeoutError         504 over the upstream time limit

When several upstream attempts fail, the final error keeps every attempt's cause in ``attempts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class TollgateError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        attempts: Sequence[TollgateError] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.details = details or {}
        self.headers = headers or {}
        self.attempts = list(attempts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code}, {self.message!r})"


class ClientError(TollgateError):
    status = 400
    type = "invalid_request_error"
    code = "INVALID_REQUEST"


class ValidationError(ClientError):
    status = 400
    code = "VALIDATION_ERROR"


class AuthenticationError(ClientError):
    status = 401
    type = "authentication_error"
    code = "INVALID_API_KEY"


class InsufficientBalanceError(ClientError):
    status = 402
    type = "insufficient_quota"
    code = "INSUFFICIENT_BALANCE"


class PermissionDeniedError(ClientError):
    status = 403
    type = "permission_error"
    code = "PERMISSION_DENIED"


class NotFoundError(ClientError):
    status = 404
    type = "not_found_error"
    code = "NOT_FOUND"


class MethodNotAllowedError(ClientError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class PayloadTooLargeError(ClientError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class ClientDisconnectedError(ClientError):
    """The client left before its request was read; nobody sees the answer."""

    status = 499
    code = "CLIENT_DISCONNECTED"


class RateLimitError(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "RATE_LIMIT_EXCEEDED"


class DatabaseUnavailableError(TollgateError):
    """The gateway's database cannot be reached (``storage/outage.py`` tells an outage from a defect)."""

    status = 503
    code = "DATABASE_UNAVAILABLE"
    retry_after: ClassVar[str] = "2"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", self.retry_after)


class UpstreamError(TollgateError):
    status = 502
    type = "api_error"
    code = "UPSTREAM_ERROR"
    retryable: ClassVar[bool] = True


class UpstreamRateLimitError(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "UPSTREAM_RATE_LIMITED"


class UpstreamBadResponseError(UpstreamError):
    status = 502
    code = "UPSTREAM_ERROR"


class UpstreamRejectedError(UpstreamError):
    """The upstream refused the request itself (4xx other than 429): retrying elsewhere will not help."""

    status = 400
    type = "invalid_request_error"
    code = "UPSTREAM_REJECTED"
    retryable = False


class UpstreamUnavailableError(UpstreamError):
    status = 503
    code = "UPSTREAM_UNAVAILABLE"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "UPSTREAM_TIMEOUT"


class ConfigError(Exception):
    """A configuration file is invalid; raised at start-up, never during a request."""
