"""A scripted HTTP server for the upstream client's tests: a raw asyncio socket server whose every connection
runs a handler that says byte for byte what it answers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Script"], Awaitable[None]]


class Script:
    """A loopback server whose every connection runs ``handler``; counts connections, keeps requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> str:
        self.server = await asyncio.start_server(self._conn, host, 0, ssl=tls)
        port = self.server.sockets[0].getsockname()[1]
        name = f"[{host}]" if ":" in host else host
        return f"{'https' if tls else 'http'}://{name}:{port}"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # (a cancelled handler must not end cancelled: Python 3.11's start_server logs that)
        finally:
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = (lines[0].encode(), headers, body)
        self.requests.append(request)
        return request

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def serve_forever(answer: Callable[[bytes], bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        while True:
            _, _, body = await s.read_request(reader)
            writer.write(answer(body))
            await writer.drain()

    return handler
