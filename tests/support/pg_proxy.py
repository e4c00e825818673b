"""A loopback TCP proxy in front of PostgreSQL that loses COMMIT acknowledgements: it forwards a COMMIT,
waits for the server's answer (the transaction is then committed) and cuts the connection instead of
passing the answer on, so the client cannot know its transaction went through."""

from __future__ import annotations

import asyncio
import contextlib


class CommitCutter:
    def __init__(self, target_port: int = 5432, every: int = 3) -> None:
        self.target_port = target_port
        self.every = every  # cut the acknowledgement of every ``every``-th COMMIT
        self.armed = False
        self.commits = 0
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _conn(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        cut = asyncio.Event()

        async def upstream() -> None:
            while chunk := await client_r.read(65536):
                if self.armed and chunk[:1] == b"Q" and b"COMMIT" in chunk:
                    self.commits += 1
                    if self.commits % self.every == 0:
                        cut.set()  # before the server can answer
                server_w.write(chunk)
                await server_w.drain()
                if cut.is_set():
                    return

        async def downstream() -> None:
            while chunk := await server_r.read(65536):
                if cut.is_set():
                    # The server's answer to the COMMIT: dropped once it is complete (ReadyForQuery).
                    if b"Z\x00\x00\x00\x05" in chunk:
                        self.cuts += 1
                        return
                    continue
                client_w.write(chunk)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if cut.is_set():
                await asyncio.wait(tasks, timeout=5)  # until the server has answered the COMMIT
        finally:
            for t in tasks:
                t.cancel()
            for w in (client_w, server_w):
                w.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await w.wait_closed()
