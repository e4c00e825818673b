"""The upstream client's response side: the error classes, case-insensitive headers, and the response
whose body arrives into a buffer that ``read`` or ``iter_any`` drain (``connection.py`` feeds it)."""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollgate.providers.h1.connection import Connection

HIGH_WATER = 1 << 20  # buffered, unread body bytes above which reading from the socket pauses


class ConnectError(OSError):
    """The connection could not be opened (refused, unreachable, DNS, TLS handshake)."""


class Disconnected(OSError):
    """The upstream closed the connection before the response was complete."""


class ClosedBeforeAnswer(Disconnected):
    """The upstream closed the connection after the request was sent and before any byte of an answer."""


class ProtocolError(OSError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class Headers(dict[str, str]):
    """Response headers, names lower-cased; ``get`` is case-insensitive. A repeated header keeps its
    last value (the gateway reads single-valued headers only)."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)


class Response:
    """One response. Its headers have arrived when the request returns it; its body arrives into a buffer
    that ``read`` or ``iter_any`` drain. ``close`` before the body is complete drops the connection."""

    __slots__ = (
        "status",
        "headers",
        "_conn",
        "_chunks",
        "_size",
        "_done",
        "_error",
        "_waiter",
        "_decoder",
        "_paused",
        "idle",
    )

    def __init__(self, conn: Connection) -> None:
        self.status = 0
        self.headers = Headers()
        self._conn: Connection | None = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: zlib._Decompress | None = None
        self._paused = False
        self.idle: float | None = None  # ``iter_any``'s default limit between reads

    # -- fed by the connection --
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                self._fail(ProtocolError(f"the upstream sent a corrupt compressed body ({exc})"))
                return
            if not data:
                return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        if self._decoder is not None and self._error is None:
            try:
                tail = self._decoder.flush()
            except zlib.error as exc:
                self._error = ProtocolError(f"the upstream sent a corrupt compressed body ({exc})")
                tail = b""
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
        self._done = True
        self._conn = None
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller --
    async def _wait(self, until: float | None) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        timer = None
        if until is not None:
            timer = waiter.get_loop().call_at(until, expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self._paused and self._conn is not None:
            self._paused = False
            self._conn.resume()
        return data

    async def read(self, deadline: float | None = None) -> bytes:
        """The whole (decoded) body; ``TimeoutError`` if it is not complete by ``deadline`` (loop time)."""
        try:
            while self._error is None and not self._done:
                await self._wait(deadline)
            if self._error is not None:
                raise self._error
        except BaseException:
            self.close()
            raise
        return self._take() if self._chunks else b""

    def iter_any(self) -> BodyChunks:
        """Body bytes as they arrive; ``TimeoutError`` after ``self.idle`` seconds without any."""
        return BodyChunks(self)

    async def next_chunk(self) -> bytes | None:
        """The body bytes that arrived since the last call (waiting for some), or None at the end."""
        while True:
            if self._chunks:
                return self._take()
            if self._error is not None:
                self.close()
                raise self._error
            if self._done:
                return None
            idle = self.idle
            await self._wait(None if idle is None else asyncio.get_running_loop().time() + idle)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.drop()


class BodyChunks:
    """``async for`` over a response's body. A plain iterator, not an async generator: a caller that stops
    early (at a stream's end marker) leaves nothing to finalise (uvloop finalises an abandoned async
    generator through a thread-safe wake-up of the loop: a system call per stream)."""

    __slots__ = ("_resp",)

    def __init__(self, resp: Response) -> None:
        self._resp = resp

    def __aiter__(self) -> BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        data = await self._resp.next_chunk()
        if data is None:
            raise StopAsyncIteration
        return data


def expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
