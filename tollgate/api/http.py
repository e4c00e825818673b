"""Reading requests and writing JSON and SSE responses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tollgate.errors import ClientDisconnectedError, PayloadTooLargeError
from tollgate.services.context import RequestContext, StreamReply

log = logging.getLogger("tollgate.api")


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"The request body is {declared} bytes; the limit is {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # gone (or cut by the server's read limits) mid-body
            raise ClientDisconnectedError("The client closed the connection before sending the whole body.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"The request body is over the limit of {limit} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_request_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    return await read_body(request.receive, limit, int(declared) if declared and declared.isdigit() else None)


def request_context(request: Request, endpoint: str) -> RequestContext:
    """The request's context from its key headers (``Authorization``, ``X-API-Key``); its request id is
    kept on the request for the error handlers."""
    headers = request.headers
    ctx = RequestContext(
        endpoint=endpoint, authorization=headers.get("authorization"), x_api_key=headers.get("x-api-key")
    )
    request.state.request_id = ctx.request_id
    return ctx


_JSON = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def json_response(body: bytes, headers: Mapping[str, str] | None = None, status: int = 200) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class SSEResponse(Response):
    """Streams frames as they come and cancels the producer the moment the client disconnects.

    Uvicorn silently drops writes after a disconnect, so without a watcher a stream that is between
    chunks would keep its upstream request running; the watcher cancels it at once.
    """

    media_type = "text/event-stream"

    def __init__(self, reply: StreamReply) -> None:
        super().__init__(None, 200, {**reply.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        streamer = asyncio.current_task()
        assert streamer is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    streamer.cancel()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        started = False
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            frames, last = self.reply.frames, self.reply.last
            ended = False
            async for frame in frames:
                started = True
                if not ended:
                    ended = last()
                    await send({"type": "http.response.body", "body": frame, "more_body": not ended})
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            # The client left; the relay settled in its ``finally``. End quietly.
            streamer.uncancel()
        except OSError:
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not started:
                await self.reply.abandon()
