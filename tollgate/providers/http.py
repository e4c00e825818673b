"""The one place that talks HTTP to upstreams: a pooled keep-alive client per provider (``h1/``).

All upstream transport failures are mapped into the error tree in this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tollgate.providers import h1
from tollgate.providers.proxy import Proxy
from tollgate.settings import ProviderConfig

UpstreamResponse = h1.Response


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


def transport_error(provider: str, exc: BaseException, limit: float | None = None) -> UpstreamError:
    """Map a transport failure (``h1`` errors, ``OSError``, ``TimeoutError``) to the error tree."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        within = f" within {limit:g} s" if limit else ""
        return UpstreamTimeoutError(f"{provider}: the upstream did not answer{within}")
    if isinstance(exc, h1.ConnectError):
        return UpstreamUnavailableError(f"{provider}: cannot connect to the upstream ({exc.strerror or exc})")
    if isinstance(exc, h1.Disconnected):
        return UpstreamBadResponseError(f"{provider}: the upstream closed the connection mid-response")
    if isinstance(exc, OSError | ValueError):
        return UpstreamBadResponseError(f"{provider}: upstream transport error: {exc}")
    return UpstreamBadResponseError(f"{provider}: unexpected upstream failure: {type(exc).__name__}")


class HttpClient:
    def __init__(self, name: str, *, max_connections: int = 256, proxy: str | None = None):
        self.name = name
        self._client = h1.Client(max_connections, proxy=Proxy.parse(proxy) if proxy else None)

    @classmethod
    def for_provider(cls, config: ProviderConfig) -> HttpClient:
        return cls(config.name, max_connections=config.max_connections, proxy=config.proxy)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> RawResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            resp = await self._client.post(url, body, headers, timeout)
            data = await resp.read(deadline)
        except (OSError, ValueError, TimeoutError) as exc:
            raise transport_error(self.name, exc, timeout) from None
        return RawResponse(resp.status, resp.headers, data)

    async def post_json(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        map_error: Callable[[int, bytes, str | None], UpstreamError],
    ) -> tuple[bytes, Any]:
        """``post``, then: an error status raises ``map_error(status, body, retry_after)``; a body that is not
        JSON raises a 502. Returns the raw body and its parsed value."""
        raw = await self.post(url, body, headers, timeout)
        if raw.status >= 400:
            raise map_error(raw.status, raw.body, raw.headers.get("Retry-After"))
        try:
            return raw.body, orjson.loads(raw.body)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponseError(f"{self.name}: the upstream answered with invalid JSON") from None

    async def open_stream(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        map_error: Callable[[int, bytes, str | None], UpstreamError],
    ) -> UpstreamResponse:
        """Send a request and return once the response headers arrived (within ``timeout``); reads of the
        body then fail after ``timeout`` seconds without data. An error status is read, closed and raised as
        ``map_error(status, body, retry_after)``. The caller must ``close()`` the response."""
        try:
            resp = await self._client.post(url, body, headers, timeout)
        except (OSError, ValueError, TimeoutError) as exc:
            raise transport_error(self.name, exc, timeout) from None
        resp.idle = timeout
        if resp.status >= 400:
            try:
                err_body = await resp.read(asyncio.get_running_loop().time() + timeout)
            except (OSError, TimeoutError):
                err_body = b""
            finally:
                resp.close()
            raise map_error(resp.status, err_body, resp.headers.get("Retry-After"))
        return resp

    async def close(self) -> None:
        self._client.close()
