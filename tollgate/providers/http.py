"""The one place that talks HTTP to upstreams: a pooled aiohttp session per provider.

aiohttp is used rather than httpx because it measured several times cheaper per request here and keeps
its latency under concurrency (see bench/). All upstream transport failures are mapped into the error tree
in this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


def transport_error(provider: str, exc: BaseException, limit: float | None = None) -> UpstreamError:
    """Map an aiohttp/asyncio failure to the error tree."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        within = f" within {limit:g} s" if limit else ""
        return UpstreamTimeoutError(f"{provider}: the upstream did not answer{within}")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientConnectionResetError):
        return UpstreamUnavailableError(f"{provider}: cannot connect to the upstream ({exc.strerror or exc})")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamBadResponseError(f"{provider}: the upstream closed the connection mid-response")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamBadResponseError(f"{provider}: upstream transport error: {exc}")
    return UpstreamBadResponseError(f"{provider}: unexpected upstream failure: {type(exc).__name__}")


class HttpClient:
    def __init__(self, name: str, *, max_connections: int = 256, headers: Mapping[str, str] | None = None):
        self.name = name
        self._max_connections = max_connections
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=30, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> RawResponse:
        try:
            async with asyncio.timeout(timeout):
                async with self.session.post(url, data=body, headers=headers) as resp:
                    data = await resp.read()
                    return RawResponse(resp.status, resp.headers, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(self.name, exc, timeout) from None

    async def open(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, idle: float
    ) -> aiohttp.ClientResponse:
        """Send a request and return once the response headers arrived (within ``timeout``); reads of the
        body then fail after ``idle`` seconds without data. The caller must ``close()`` the response."""
        try:
            async with asyncio.timeout(timeout):
                return await self.session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=idle),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(self.name, exc, timeout) from None

    async def open_stream(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        map_error: Callable[[int, bytes, str | None], UpstreamError],
    ) -> aiohttp.ClientResponse:
        """``open`` with ``timeout`` as the idle limit too; an error status is read, closed and raised as
        ``map_error(status, body, retry_after)``."""
        resp = await self.open(url, body, headers, timeout, idle=timeout)
        if resp.status >= 400:
            try:
                err_body = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                err_body = b""
            finally:
                resp.close()
            raise map_error(resp.status, err_body, resp.headers.get("Retry-After"))
        return resp

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
