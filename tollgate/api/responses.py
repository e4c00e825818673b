"""``POST /v1/responses`` (and ``/api/v1/...``): OpenAI's Responses API, translated onto chat completions.

The request goes through the chat pipeline (authentication, limits, billing, routing, one usage row with
endpoint ``responses``) for every upstream; the answer becomes a response object or Responses streaming
events. The response id is derived from the request id, so ``resp_…`` and ``X-Request-ID`` match up.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import SSEResponse, json_response, read_request_body
from tollgate.protocol.responses import (
    ResponsesStreamEncoder,
    chat_request_from_responses,
    response_from_chat,
)
from tollgate.services.completions import CompletionService, parse_json
from tollgate.services.context import JsonReply, RequestContext
from tollgate.services.reframe import reframe


async def create_response(request: Request) -> Response:
    state = request.app.state
    service: CompletionService = state.completions
    headers = request.headers
    ctx = RequestContext(
        endpoint="responses", authorization=headers.get("authorization"), x_api_key=headers.get("x-api-key")
    )
    request.state.request_id = ctx.request_id
    raw = await read_request_body(request, state.settings.server.body_limit)
    original: dict[str, Any] = {}

    def translate(raw: bytes) -> dict[str, Any]:
        body = parse_json(raw)
        chat = chat_request_from_responses(body)
        original.update(body)
        return chat

    reply = await service.handle(ctx, raw, translate)
    response_id = "resp_" + ctx.request_id.removeprefix("req_")
    created_at = int(ctx.created_at)
    if isinstance(reply, JsonReply):
        completion = orjson.loads(reply.body)
        out = response_from_chat(completion, request=original, response_id=response_id, created_at=created_at)
        return json_response(orjson.dumps(out), reply.headers, reply.status)
    encoder = ResponsesStreamEncoder(request=original, response_id=response_id, created_at=created_at)
    return SSEResponse(reframe(reply, encoder))
