"""``POST /v1/embeddings`` (and ``/api/v1/...``): read the body, call the embeddings service, render."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import json_response, read_request_body, request_context
from tollgate.services.embeddings import EmbeddingsService


async def create_embeddings(request: Request) -> Response:
    state = request.app.state
    service: EmbeddingsService = state.embeddings
    ctx = request_context(request, "embeddings")
    raw = await read_request_body(request, state.settings.server.body_limit)
    reply = await service.embeddings(ctx, raw)
    return json_response(reply.body, reply.headers, reply.status)
