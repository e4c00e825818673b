"""Anthropic Messages API adapter: pure translators between OpenAI's chat-completions wire shape and
Anthropic's, in both directions (egress to ``api.anthropic.com``, ingress for ``POST /v1/messages``).

Egress for one OpenAI request ``body``::

    json_tool = json_tool_name(body)                  # carry it from request to response
    payload = build_request(body, upstream_model)     # POST /v1/messages
    # 2xx:      to_openai_response(data, model=..., created=..., json_tool=json_tool)
    # stream:   StreamTranslator(model=..., created=..., chunk_id=..., json_tool=json_tool).feed(event, data)
    # non-2xx:  raise map_error(status, body_bytes, retry_after_header)
"""

from tollgate.providers.anthropic.errors import error_from_event, map_error
from tollgate.providers.anthropic.ingress import (
    MessagesStreamEncoder,
    error_body,
    messages_response_from_openai,
    openai_request_from_messages,
    sse_event,
    stop_reason_from_openai,
)
from tollgate.providers.anthropic.request import JSON_OBJECT_TOOL, build_request, json_tool_name
from tollgate.providers.anthropic.response import finish_reason, to_openai_response, usage_from_anthropic
from tollgate.providers.anthropic.stream import StreamTranslator

__all__ = [
    "JSON_OBJECT_TOOL",
    "MessagesStreamEncoder",
    "StreamTranslator",
    "build_request",
    "error_body",
    "error_from_event",
    "finish_reason",
    "json_tool_name",
    "map_error",
    "messages_response_from_openai",
    "openai_request_from_messages",
    "sse_event",
    "stop_reason_from_openai",
    "to_openai_response",
    "usage_from_anthropic",
]
