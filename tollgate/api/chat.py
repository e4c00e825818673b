"""``POST /v1/chat/completions`` (and ``/api/v1/...``) as a raw ASGI handler.

The busiest route skips the framework's middleware and routing layers (they cost a quarter of the
gateway's CPU per request; see bench/): ``api/asgi.py`` dispatches it here directly. It still only reads
the request, calls the service and renders the reply or the error.
"""

from __future__ import annotations

import logging

from starlette.types import Receive, Scope, Send

from tollgate.api.errors import render_error
from tollgate.api.http import SSEResponse, read_body, send_json
from tollgate.errors import TollgateError
from tollgate.services.completions import CompletionService
from tollgate.services.context import JsonReply, RequestContext

log = logging.getLogger("tollgate.api")


async def chat_completions(
    service: CompletionService, body_limit: int, scope: Scope, receive: Receive, send: Send
) -> None:
    authorization = x_api_key = cache_control = None
    declared: int | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            x_api_key = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == b"cache-control":
            cache_control = value.decode("latin-1")
    ctx = RequestContext(
        endpoint="chat.completions",
        authorization=authorization,
        x_api_key=x_api_key,
        cache_control=cache_control,
    )
    try:
        raw = await read_body(receive, body_limit, declared)
        reply = await service.chat(ctx, raw)
    except TollgateError as err:
        body, headers = render_error(err, scope["path"], ctx.request_id)
        await send_json(send, err.status, body, headers)
        return
    if isinstance(reply, JsonReply):
        await send_json(send, reply.status, reply.body, reply.headers)
    else:
        await SSEResponse(reply)(scope, receive, send)
