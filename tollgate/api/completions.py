"""Legacy ``POST /v1/completions`` (and ``/api/v1/...``): OpenAI's text completions.

The request goes through the chat pipeline (authentication, limits, billing, routing, one usage row with
endpoint ``completions``). Upstreams that serve ``/completions`` get it as the client sent it and their answer
(JSON or chunks) comes back as it is; for the others it is translated onto chat completions
(``protocol/completions.py``) and the answer becomes a ``text_completion``. A stream's usage reaches the client
as its ``stream_options`` asked, as on chat (``services/stream_usage.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import SSEResponse, json_response, read_request_body, request_context
from tollgate.protocol.completions import (
    chat_request_from_completions,
    chunk_from_chat,
    completion_from_chat,
    refusal,
)
from tollgate.providers.sse import DONE, SSESplitter, encode_data, parse_event
from tollgate.services.completions import NATIVE_HEADER, CompletionService, NativeRequest, parse_json
from tollgate.services.context import JsonReply, StreamReply
from tollgate.services.stream_usage import deliver_usage, usage_mode


async def create_completion(request: Request) -> Response:
    state = request.app.state
    service: CompletionService = state.completions
    ctx = request_context(request, "completions")
    raw = await read_request_body(request, state.settings.server.body_limit)
    native = NativeRequest(api="completions")

    def translate(raw: bytes) -> dict[str, Any]:
        body = parse_json(raw)
        chat = chat_request_from_completions(body)
        native.body.update(body)
        native.refusal = refusal(body)
        return chat

    reply = await service.handle(ctx, raw, translate, native)
    translated = not reply.headers.get(NATIVE_HEADER)
    if isinstance(reply, JsonReply):
        if translated:
            body = orjson.dumps(completion_from_chat(orjson.loads(reply.body)))
            return json_response(body, reply.headers, reply.status)
        return json_response(reply.body, reply.headers, reply.status)
    reply = deliver_usage(reply, usage_mode(native.body))
    return SSEResponse(text_completion_frames(reply) if translated else reply)


def text_completion_frames(reply: StreamReply) -> StreamReply:
    """The pipeline's chat chunks as ``text_completion`` chunks (``[DONE]`` and error frames unchanged)."""
    inner = reply.frames

    async def frames() -> AsyncIterator[bytes]:
        splitter = SSESplitter()
        try:
            async for item in inner:
                out: list[bytes] = []
                for raw in splitter.feed(item):
                    data = parse_event(raw)[1]
                    if data == b"[DONE]":
                        out.append(DONE)
                        continue
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        out.append(encode_data(data))
                        continue
                    converted = chunk_from_chat(chunk)
                    if converted is not None:
                        out.append(encode_data(orjson.dumps(converted)))
                if out:
                    yield b"".join(out)
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamReply(frames(), reply.headers, reply.abandon, reply.last)
