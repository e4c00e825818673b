"""``POST /v1/chat/completions`` (and ``/api/v1/...``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import SSEResponse, json_response, read_body
from tollgate.services.context import JsonReply, RequestContext


async def chat_completions(request: Request) -> Response:
    state = request.app.state
    headers = request.headers
    ctx = RequestContext(
        endpoint="chat.completions",
        authorization=headers.get("authorization"),
        x_api_key=headers.get("x-api-key"),
    )
    request.state.request_id = ctx.request_id
    raw = await read_body(request, state.settings.server.body_limit)
    reply = await state.completions.chat(ctx, raw)
    if isinstance(reply, JsonReply):
        return json_response(reply.body, reply.headers, reply.status)
    return SSEResponse(reply)
