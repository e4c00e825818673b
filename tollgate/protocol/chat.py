"""Validation of ``POST /v1/chat/completions`` bodies.

The body stays a plain dict (unknown fields pass through to OpenAI-compatible upstreams); only the fields
the gateway relies on are checked, each failure naming the field and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollgate.errors import ValidationError

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


@dataclass(slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    max_tokens: int | None


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    v = body.get(name)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ValidationError(f"'{name}' must be a number between {lo:g} and {hi:g}; got {v!r}.", param=name)


# The largest count (of tokens, choices, dimensions) a request may ask for: what a 32-bit column or counter
# holds, far past any model's limit, so no bigger number reaches a stored or computed value.
MAX_COUNT = 2**31 - 1
MAX_CHOICES = 128


def _positive_int(body: dict[str, Any], name: str, most: int = MAX_COUNT) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
        raise ValidationError(f"'{name}' must be a positive integer up to {most}; got {v!r}.", param=name)
    return v


def _message(i: int, m: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise ValidationError(f"'{where}' must be an object with 'role' and 'content'.", param=where)
    role = m.get("role")
    if role not in ROLES:
        raise ValidationError(
            f"'{where}.role' must be one of {', '.join(ROLES)}; got {role!r}.", param=f"{where}.role"
        )
    content = m.get("content")
    if content is None:
        if role == "assistant" and (m.get("tool_calls") or m.get("function_call")):
            return
        raise ValidationError(
            f"'{where}.content' is required for this {role} message.", param=f"{where}.content"
        )
    if isinstance(content, str):
        return
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise ValidationError(
                    f"'{where}.content[{j}]' must be an object with a 'type' (e.g. text, image_url).",
                    param=f"{where}.content",
                )
        return
    raise ValidationError(
        f"'{where}.content' must be a string or an array of content parts.", param=f"{where}.content"
    )


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    model = body.get("model")
    if model is None or model == "":
        raise ValidationError(
            "'model' is required: name one of the models listed by GET /v1/models.", param="model"
        )
    if not isinstance(model, str):
        raise ValidationError("'model' must be a string.", param="model")
    messages = body.get("messages")
    if messages is None:
        raise ValidationError(
            "'messages' is required: an array of {role, content} objects.", param="messages"
        )
    if not isinstance(messages, list):
        raise ValidationError("'messages' must be an array of {role, content} objects.", param="messages")
    if not messages:
        raise ValidationError("'messages' must contain at least one message.", param="messages")
    for i, m in enumerate(messages):
        _message(i, m)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    max_tokens = _positive_int(body, "max_tokens")
    max_completion = _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n", MAX_CHOICES)
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, list):
            if len(stop) > 4:
                raise ValidationError(f"'stop' accepts at most 4 sequences; got {len(stop)}.", param="stop")
            if not all(isinstance(s, str) for s in stop):
                raise ValidationError("'stop' must be a string or an array of strings.", param="stop")
        elif not isinstance(stop, str):
            raise ValidationError("'stop' must be a string or an array of strings.", param="stop")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ValidationError("'stream' must be true or false.", param="stream")
    if body.get("cache") is not None and not isinstance(body["cache"], bool):
        raise ValidationError(
            f"'cache' must be true or false (false: skip the response cache); got {body['cache']!r}.",
            param="cache",
        )
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise ValidationError(
                "'stream_options' must be an object, e.g. {\"include_usage\": true}.", param="stream_options"
            )
        if options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
            raise ValidationError(
                "'stream_options.include_usage' must be true or false.", param="stream_options.include_usage"
            )
    return ChatRequest(body, model, stream, max_completion or max_tokens)
