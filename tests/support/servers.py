"""Run a Tollgate app under uvicorn in a background thread (in-process integration tests)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    def __init__(self, app: ASGIApp, **config: Any) -> None:
        cfg = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            **config,
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server failed to start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run(coro: Any) -> Any:
    """Run a coroutine on a fresh loop from a test (sync tests talk to storage this way)."""
    return asyncio.run(coro)
