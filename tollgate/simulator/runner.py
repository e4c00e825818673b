"""Running the simulator: ``SimServer`` (background thread, for tests) and ``serve`` (foreground)."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from tollgate.simulator.app import SimState, create_app

__all__ = ["SimServer", "serve"]

Predicate = Callable[[list[dict[str, Any]]], bool]


def _loop_impl() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _http_impl() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


class SimServer:
    """The simulator on ``127.0.0.1`` and a free port, served by uvicorn in a background thread.

    Use as a context manager (or ``start()``/``stop()``)::

        with SimServer({"completion_tokens": 5}) as sim:
            client = openai.OpenAI(base_url=sim.base_url, api_key="x")
    """

    def __init__(
        self, defaults: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = create_app(defaults)
        self.state: SimState = self.app.state.sim
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            loop=_loop_impl(),
            http=_http_impl(),
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: the OpenAI ``base_url``."""
        return self.url + "/v1"

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # reported to the starting thread
            self._error = exc

    def start(self, timeout: float = 10.0) -> SimServer:
        """Start serving and wait until the port is bound."""
        if self._thread is not None:
            raise RuntimeError("SimServer already started")
        self._thread = threading.Thread(target=self._run, name="tollgate-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulator failed to start: {self._error!r}")
            time.sleep(0.002)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server; hanging requests are abandoned after ``timeout`` seconds."""
        thread = self._thread
        if thread is None:
            return
        self.state.stopping.set()
        self._server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            self._server.force_exit = True
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    def requests(self) -> list[dict[str, Any]]:
        """Copies of the recorded requests, oldest first (see ``GET /_sim/requests``)."""
        return self.state.snapshot()

    def clear(self) -> None:
        """Forget recorded requests and reset ``fail_first`` counters."""
        self.state.clear()

    async def wait_for(self, predicate: Predicate, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Poll ``requests()`` until ``predicate(records)`` holds, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while not predicate(records := self.requests()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator condition not met within {timeout}s: {records!r}")
            await asyncio.sleep(0.005)
        return records

    def wait_for_sync(self, predicate: Predicate, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Blocking variant of ``wait_for`` (for synchronous tests)."""
        deadline = time.monotonic() + timeout
        while not predicate(records := self.requests()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator condition not met within {timeout}s: {records!r}")
            time.sleep(0.005)
        return records


def serve(host: str, port: int, defaults: dict[str, Any] | None = None) -> None:
    """Run the simulator in the foreground until interrupted."""
    uvicorn.run(
        create_app(defaults),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
