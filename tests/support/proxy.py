"""A forward HTTP proxy on loopback, for tests of upstream calls through ``proxy:``."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LoopbackProxy:
    """A forward proxy: ``CONNECT host:port`` opens a tunnel; any other request is forwarded, bytes as they
    are, to the host its absolute-form target names. With ``password``, asks for Basic credentials (407)."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.heads: list[list[str]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[:-2]
            self.heads.append(lines)
            method, target, _ = lines[0].split(" ")
            auth = next(
                (v for k, _, v in (x.partition(": ") for x in lines[1:]) if k == "Proxy-Authorization"), ""
            )
            if (
                self.password is not None
                and auth != "Basic " + base64.b64encode(self.password.encode()).decode()
            ):
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                host, port = target.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                up_writer.write(head)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@contextmanager
def proxy_thread(password: str | None = None) -> Iterator[tuple[LoopbackProxy, str]]:
    """A ``LoopbackProxy`` serving from a thread of its own: the proxy and its ``host:port``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = LoopbackProxy(password)
    try:
        yield proxy, asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(5)
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
