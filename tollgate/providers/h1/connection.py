"""The upstream client's connections: one asyncio protocol per TCP (or TLS) connection, parsing with
httptools, and a keep-alive pool per origin that opens, reuses, limits and retries them."""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections import deque
from typing import cast

import aiohappyeyeballs
import httptools
from aiohappyeyeballs import AddrInfoType

from tollgate.providers.h1.response import (
    ClosedBeforeAnswer,
    ConnectError,
    Disconnected,
    ProtocolError,
    Response,
    expire,
)
from tollgate.providers.proxy import Proxy, open_tunnel

KEEPALIVE_SECONDS = 30.0  # an idle connection older than this is closed instead of reused


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.headers_waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.delimited = False  # the body has a length or is chunked (else it ends at the close)
        self.leased = False  # carrying a request: holds one of the pool's slots
        self.answered = False  # a byte of the current request's answer has arrived

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports do not subclass ``asyncio.Transport``; they have its methods)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._failed(ProtocolError(f"invalid HTTP response from the upstream ({exc})"))
            self.drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._lost(self)
        resp = self.response
        waiter = self.headers_waiter
        if waiter is not None and not waiter.done():
            lost = ClosedBeforeAnswer if not self.answered else Disconnected
            waiter.set_exception(lost("the upstream closed the connection before answering"))
        elif resp is not None and not resp._done:
            if not self.delimited and resp.status and exc is None:
                resp._finish()  # a body delimited by the connection's close
            else:
                resp._fail(Disconnected("the upstream closed the connection mid-response"))
        self.response = None

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def drop(self) -> None:
        """Close now (a response abandoned mid-way or broken): the connection cannot be reused."""
        self.closed = True
        self.response = None
        self.pool._free(self)
        if self.transport is not None:
            self.transport.abort()

    def _failed(self, exc: BaseException) -> None:
        waiter = self.headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        elif self.response is not None:
            self.response._fail(exc)

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        resp = self.response
        if resp is not None:
            resp.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        resp = self.response
        if resp is None:
            return
        resp.status = self.parser.get_status_code()
        headers = resp.headers
        self.delimited = "content-length" in headers or "transfer-encoding" in headers
        encoding = headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in ("gzip", "x-gzip"):
                resp._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif encoding == "deflate":
                resp._decoder = zlib.decompressobj()
        waiter, self.headers_waiter = self.headers_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        resp, self.response = self.response, None
        if resp is None:
            return
        resp._finish()
        if self.parser.should_keep_alive() and not self.closed:
            self.pool._release(self)
        else:
            self.drop()


async def resolve(host: str, port: int) -> list[AddrInfoType]:
    """The addresses to connect to, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return cast(list[AddrInfoType], infos)


class Pool:
    """Keep-alive connections to one origin (scheme, host, port), at most ``limit`` open at once."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, limit: int, proxy: Proxy | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal is bracketed
        default_port = 80 if tls is None else 443
        self.host_header = (name if port == default_port else f"{name}:{port}").encode("idna")
        self.authority = f"{name}:{port}".encode("idna")
        self.proxy = proxy
        # an http request goes to the proxy itself, with its credentials (an https one is tunnelled)
        self._forwarder = proxy if tls is None else None
        self._via = self._forwarder.authorization if self._forwarder is not None else b""
        self._limit = limit
        self._busy = 0  # connections carrying a request (their response not yet complete)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()

    async def request(self, method: bytes, path: bytes, head: bytes, body: bytes, timeout: float) -> Response:
        """Send one request; return once the response headers arrived, within ``timeout`` seconds (the
        time to get a connection included). ``head`` is the encoded header lines after ``Host``.

        A kept-alive connection can be closed by the upstream (its idle timeout) just as a request goes out
        on it. An upstream that closes an idle connection does not read what arrives on it, so when a reused
        connection closes before any byte of an answer, the request is sent once more on a new connection
        instead of failing (the official SDKs retry such connection errors too)."""
        deadline = asyncio.get_running_loop().time() + timeout
        conn, reused = await self._lease(deadline, reuse=True)
        try:
            return await self._send(conn, method, path, head, body, deadline)
        except ClosedBeforeAnswer:
            if not reused:
                raise
        conn, _ = await self._lease(deadline, reuse=False)
        return await self._send(conn, method, path, head, body, deadline)

    async def _lease(self, deadline: float, *, reuse: bool) -> tuple[Connection, bool]:
        """A connection carrying no request (an idle one when ``reuse``, else a new one), holding a slot;
        and whether it was reused."""
        loop = asyncio.get_running_loop()
        while self._busy >= self._limit:
            await self._wait_slot(deadline)
        self._busy += 1
        try:
            conn = self._reuse(loop.time()) if reuse else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(deadline - loop.time())
        except BaseException:
            self._busy -= 1
            self._wake_one()
            raise
        conn.leased = True
        return conn, reused

    async def _send(
        self, conn: Connection, method: bytes, path: bytes, head: bytes, body: bytes, deadline: float
    ) -> Response:
        loop = asyncio.get_running_loop()
        conn.answered = False
        resp = conn.response = Response(conn)
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.headers_waiter = waiter
        assert conn.transport is not None
        conn.transport.write(
            b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%sContent-Length: %d\r\n\r\n%s"
            % (method, path, self.host_header, self._via, head, len(body), body)
        )
        timer = loop.call_at(deadline, expire, waiter)
        try:
            await waiter
        except BaseException:
            resp.close()
            raise
        finally:
            timer.cancel()
            if conn.headers_waiter is waiter:
                conn.headers_waiter = None
        if resp.status == 407 and self._forwarder is not None:
            resp.close()  # the proxy's answer, not the upstream's: the gateway cannot reach the upstream
            where = f"{self._forwarder.host}:{self._forwarder.port}"
            raise ConnectError(
                None, f"the proxy {where} refused the request: 407 Proxy Authentication Required"
            )
        return resp

    async def _wait_slot(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()  # woken, then gave up: pass the turn on
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _free(self, conn: Connection) -> None:
        if conn.leased:
            conn.leased = False
            self._busy -= 1
            if self._waiters:
                self._wake_one()

    def _reuse(self, now: float) -> Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn
            conn.drop()
        return None

    async def _connect(self, timeout: float) -> Connection:
        """A new connection: the host's addresses tried by Happy Eyeballs (RFC 8305, a 250 ms head start
        each, IPv6 and IPv4 interleaved), so an unreachable address family costs 250 ms, not the timeout."""
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        try:
            async with asyncio.timeout(timeout):
                if proxy is None:
                    infos = await resolve(self.host, self.port)
                else:
                    infos = await resolve(proxy.host, proxy.port)
                sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.25, interleave=1)
                if proxy is not None and self.tls is not None:
                    try:
                        await open_tunnel(sock, proxy, self.authority)
                    except BaseException:
                        sock.close()
                        raise
                _, conn = await loop.create_connection(
                    lambda: Connection(self),
                    sock=sock,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectError(exc.errno, f"{exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        self._free(conn)
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.append(conn)

    def _lost(self, conn: Connection) -> None:
        self._free(conn)
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def close(self) -> None:
        for conn in list(self._all):
            conn.drop()
        self._idle.clear()
