"""``POST /v1/responses`` (and ``/api/v1/...``): OpenAI's Responses API.

The request goes through the chat pipeline (authentication, limits, billing, routing, one usage row with
endpoint ``responses``) for every upstream. Upstreams that serve the Responses API get it as it is and their
answer (JSON or events) comes back unchanged; for the others it is translated onto chat completions and the
answer becomes a response object or Responses streaming events, whose response id is derived from the
request id, so ``resp_…`` and ``X-Request-ID`` match up. Stored state (``previous_response_id``, ...) is only
served natively.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import SSEResponse, json_response, read_request_body, request_context
from tollgate.protocol.responses import (
    ResponsesStreamEncoder,
    chat_request_from_responses,
    response_from_chat,
    stateful_refusal,
)
from tollgate.services.completions import NATIVE_HEADER, CompletionService, NativeRequest, parse_json
from tollgate.services.context import JsonReply
from tollgate.services.reframe import reframe


async def create_response(request: Request) -> Response:
    state = request.app.state
    service: CompletionService = state.completions
    ctx = request_context(request, "responses")
    raw = await read_request_body(request, state.settings.server.body_limit)
    original: dict[str, Any] = {}
    native = NativeRequest()

    def translate(raw: bytes) -> dict[str, Any]:
        body = parse_json(raw)
        chat = chat_request_from_responses(body, stateful=True)
        original.update(body)
        native.body.update(body)
        native.refusal = stateful_refusal(body)
        return chat

    reply = await service.handle(ctx, raw, translate, native)
    if reply.headers.get(NATIVE_HEADER):  # the upstream's own Responses answer
        if isinstance(reply, JsonReply):
            return json_response(reply.body, reply.headers, reply.status)
        return SSEResponse(reply)
    response_id = "resp_" + ctx.request_id.removeprefix("req_")
    created_at = int(ctx.created_at)
    if isinstance(reply, JsonReply):
        completion = orjson.loads(reply.body)
        out = response_from_chat(completion, request=original, response_id=response_id, created_at=created_at)
        return json_response(orjson.dumps(out), reply.headers, reply.status)
    encoder = ResponsesStreamEncoder(request=original, response_id=response_id, created_at=created_at)
    return SSEResponse(reframe(reply, encoder))
