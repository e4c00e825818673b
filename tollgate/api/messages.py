"""``POST /v1/messages`` (and ``/api/v1/...``): Anthropic's Messages API in front of every configured model.

The request is translated to OpenAI's chat shape and goes through the same pipeline as chat completions
(authentication, limits, billing, routing, one usage row with endpoint ``messages``); the answer is
translated back into an Anthropic ``message`` or Anthropic SSE events. Errors are rendered in Anthropic's
shape by ``api/errors.py``.

``POST /v1/messages/count_tokens`` (``count_tokens``) answers ``{"input_tokens": N}`` for the same body
without ``max_tokens``; see ``services/count_tokens.py``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import SSEResponse, json_response, read_request_body, request_context
from tollgate.errors import (
    TollgateError,
    UpstreamBadResponseError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tollgate.providers.anthropic.ingress import (
    MessagesStreamEncoder,
    messages_response_from_openai,
    openai_request_from_messages,
)
from tollgate.providers.usage import Usage
from tollgate.services.completions import CompletionService, parse_json
from tollgate.services.context import JsonReply
from tollgate.services.count_tokens import TokenCounter
from tollgate.services.reframe import Event, reframe

# The pipeline's in-stream error frames carry our error code; Anthropic's event needs the error's class.
_STREAM_ERRORS: dict[str, type[TollgateError]] = {
    "UPSTREAM_TIMEOUT": UpstreamTimeoutError,
    "UPSTREAM_RATE_LIMITED": UpstreamRateLimitError,
    "UPSTREAM_UNAVAILABLE": UpstreamUnavailableError,
}


class AnthropicEvents:
    """The pipeline's chat chunks as Anthropic Messages events (``reframe``'s encoder)."""

    def __init__(self, model: str, stops: list[str]) -> None:
        # message_start reports 0 input tokens: the real count follows in message_delta, which SDKs apply.
        self.encoder = MessagesStreamEncoder(model=model, stops=stops)

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        return self.encoder.feed(chunk)

    def fail(self, error: dict[str, Any]) -> list[Event]:
        cls = _STREAM_ERRORS.get(str(error.get("code")), UpstreamBadResponseError)
        return self.encoder.error(cls(str(error.get("message") or "upstream error")))

    def finish(self) -> list[Event]:
        return self.encoder.finish(self.encoder.usage or Usage())


async def create_message(request: Request) -> Response:
    state = request.app.state
    service: CompletionService = state.completions
    ctx = request_context(request, "messages")
    raw = await read_request_body(request, state.settings.server.body_limit)
    model = ""
    stops: list[str] = []

    def translate(raw: bytes) -> dict[str, Any]:
        nonlocal model, stops
        body = openai_request_from_messages(parse_json(raw))
        model = body["model"]
        stops = list(body.get("stop") or [])
        return body

    reply = await service.handle(ctx, raw, translate)
    if isinstance(reply, JsonReply):
        message = messages_response_from_openai(orjson.loads(reply.body), model=model, stops=stops)
        return json_response(orjson.dumps(message), reply.headers, reply.status)
    return SSEResponse(reframe(reply, AnthropicEvents(model, stops)))


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}`` for a Messages body (no ``max_tokens``).

    Authenticated and validated like ``POST /v1/messages`` (same 401 and 400s, in Anthropic's shape), but
    free: not rate limited, nothing reserved or billed, no usage row. When the model's first routed target
    is an Anthropic-kind upstream, N is that upstream's own count; for any other upstream N is Tollgate's
    estimate with its bundled cl100k tokenizer (tool definitions included), which can differ from the
    model's real tokenizer. The ``X-Tollgate-Token-Count`` header says which: ``upstream`` or ``estimate``.
    """
    state = request.app.state
    service: CompletionService = state.completions
    ctx = request_context(request, "count_tokens")
    raw = await read_request_body(request, state.settings.server.body_limit)
    counter = TokenCounter(service.router, service.auth, service.upstream_timeout)
    counted = await counter.count(ctx, raw)
    return json_response(orjson.dumps({"input_tokens": counted.input_tokens}), counted.headers(ctx))
