"""Low-overhead ASGI responses for the simulator: SSE streams, dropped connections, silence."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tollgate.simulator.behaviour import Behaviour, OptionError
from tollgate.simulator.wire import DONE_EVENT, error_body

if TYPE_CHECKING:
    from tollgate.simulator.app import SimState

__all__ = [
    "CutResponse",
    "DropConnection",
    "SilentResponse",
    "StreamResponse",
    "Watch",
    "install_log_filter",
    "json_reply",
    "open_openai",
]

Ending = Literal["done", "cut", "hang"]
_START: Final = "http.response.start"
_BODY: Final = "http.response.body"
_JSON: Final = "application/json"


class DropConnection(Exception):
    """Raised inside a response to make the server close the connection mid-response."""


class _DropFilter(logging.Filter):
    """Hides the server's error log for deliberate ``DropConnection`` aborts."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


def install_log_filter() -> None:
    """Install the ``DropConnection`` filter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropFilter) for f in logger.filters):
        logger.addFilter(_DropFilter())


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Watch:
    """Sleeps that end early when the client disconnects (one watcher task, created lazily).

    ``stopping`` is set when the server shuts down: waits that would last until the client
    disconnects then give up by dropping the connection."""

    __slots__ = ("_receive", "_stopping", "_task")

    def __init__(self, receive: Receive, stopping: threading.Event) -> None:
        self._receive = receive
        self._stopping = stopping
        self._task: asyncio.Task[None] | None = None

    def _watcher(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.ensure_future(_until_disconnect(self._receive))
        return self._task

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; return True if the client disconnected (possibly earlier)."""
        task = self._watcher()
        if not task.done():
            await asyncio.wait((task,), timeout=seconds)
        return task.done()

    async def forever(self) -> None:
        """Wait until the client disconnects (raise ``DropConnection`` if the server stops first)."""
        task = self._watcher()
        while not task.done():
            if self._stopping.is_set():
                raise DropConnection
            await asyncio.wait((task,), timeout=0.05)

    def close(self) -> None:
        """Stop watching."""
        if self._task is not None and not self._task.done():
            self._task.cancel()


class SilentResponse(Response):
    """Sends nothing (the client already went away)."""

    def __init__(self) -> None:
        self.status_code = 499

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        return None


class CutResponse(Response):
    """Sends the status line and headers (announcing a body), then drops the connection."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], record: dict[str, Any]) -> None:
        self.status_code = status
        self._raw = headers
        self._record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        self._record["status"] = self.status_code
        await send({"type": _START, "status": self.status_code, "headers": self._raw})
        raise DropConnection


class StreamResponse(Response):
    """An SSE stream of prebuilt events, then ``end`` and the end of the body ("done"), a dropped
    connection ("cut") or a hang until the client disconnects ("hang"). ``end`` is OpenAI's ``[DONE]``
    by default; Anthropic (after ``message_stop``) and Gemini send no end marker (``end=b""``). Without a
    chunk delay all events go out in a single write; with one, each event is its own write and
    disconnects are noticed while waiting."""

    def __init__(self, events: list[bytes], ending: Ending, delay: float, record: dict[str, Any],
                 watch: Watch, headers: list[tuple[bytes, bytes]], end: bytes = DONE_EVENT) -> None:  # fmt: skip
        self.status_code = 200
        self._events = events
        self._ending = ending
        self._delay = delay
        self._record = record
        self._watch = watch
        self._raw = headers
        self._end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        record = self._record
        record["status"] = 200
        events = self._events
        await send({"type": _START, "status": 200, "headers": self._raw})
        try:
            if self._delay <= 0:
                record["chunks_sent"] = len(events)
                if self._ending == "done":
                    record["completed"] = True
                    events.append(self._end)
                    await send({"type": _BODY, "body": b"".join(events), "more_body": False})
                    return
                if events:
                    await send({"type": _BODY, "body": b"".join(events), "more_body": True})
            else:
                for i, event in enumerate(events):
                    if i and await self._watch.sleep(self._delay):
                        record["cancelled"] = True
                        return
                    await send({"type": _BODY, "body": event, "more_body": True})
                    record["chunks_sent"] = i + 1
                if self._ending == "done":
                    record["completed"] = True
                    await send({"type": _BODY, "body": self._end, "more_body": False})
                    return
            if self._ending == "cut":
                raise DropConnection
            await self._watch.forever()
            record["cancelled"] = True
        finally:
            self._watch.close()


async def wait_or_leave(
    receive: Receive, stopping: threading.Event, rec: dict[str, Any], b: Behaviour
) -> bool:
    """``latency_ms``, then ``hang``: True when the client went away meanwhile (the record says cancelled)."""
    if b.latency_ms <= 0 and not b.hang:
        return False
    watch = Watch(receive, stopping)
    try:
        gone = await watch.sleep(b.latency_ms / 1000) if b.latency_ms > 0 else False
        if not gone and b.hang:
            await watch.forever()
            gone = True
    finally:
        watch.close()
    if gone:
        rec["cancelled"] = True
    return gone


def json_reply(
    rec: dict[str, Any], status: int, body: bytes, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response, its status recorded and the request marked completed."""
    rec["status"] = status
    rec["completed"] = True
    return Response(body, status, headers, _JSON)


async def open_openai(
    request: Request, state: SimState
) -> tuple[dict[str, Any], dict[str, Any], str | None, Behaviour] | Response:
    """What every OpenAI endpoint does first: record the request, parse its JSON body, resolve the model and
    its behaviour, then latency, hang and the API-key check; a response to send instead, or
    ``(record, body, model, behaviour)`` to go on."""
    rec = state.record(request)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return json_reply(rec, 400, error_body("We could not parse the JSON body of your request."))
    rec["body"] = body
    if not isinstance(body, dict):
        return json_reply(rec, 400, error_body("The request body must be a JSON object."))
    try:
        model, b = state.resolver.resolve(body.get("model"), body.get("sim"))
    except OptionError as exc:
        return json_reply(rec, 400, error_body(str(exc), param="sim"))
    if await wait_or_leave(request.receive, state.stopping, rec, b):
        return SilentResponse()
    if b.require_key is not None and rec["headers"].get("authorization") != f"Bearer {b.require_key}":
        return json_reply(rec, 401, error_body("Incorrect API key provided.", code="invalid_api_key"))
    return rec, body, model, b
