"""Anthropic-compatible ingress (``POST /v1/messages``): Anthropic request -> OpenAI chat request, and the
OpenAI answer back into an Anthropic ``message`` (pure, no I/O). The streaming direction lives in
``ingress_stream`` and is re-exported here.

Losses, by design: ``thinking`` blocks sent back by clients are dropped (OpenAI has no input slot for
them), ``document`` blocks and server tools are rejected, and OpenAI ``reasoning_content`` is not
returned as ``thinking`` (it would need an Anthropic signature).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tollgate.errors import UpstreamBadResponseError, ValidationError
from tollgate.providers.anthropic.ingress_stream import (
    MessagesStreamEncoder,
    anthropic_usage,
    error_body,
    matched_stop,
    message_id,
    sse_event,
    stop_reason_from_openai,
)
from tollgate.providers.usage import Usage

__all__ = [
    "MessagesStreamEncoder",
    "error_body",
    "messages_response_from_openai",
    "openai_request_from_messages",
    "sse_event",
    "stop_reason_from_openai",
]


def _require(body: dict[str, Any], *, counting: bool) -> None:
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ValidationError(
            'model is required: name the model to use, e.g. "claude-sonnet-4-5"', param="model"
        )
    max_tokens = body.get("max_tokens")
    if not counting and max_tokens is None:  # count_tokens takes the body without max_tokens
        raise ValidationError(
            "max_tokens is required: set the maximum number of tokens to generate, e.g. 1024",
            param="max_tokens",
        )
    if not counting and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValidationError("max_tokens must be a positive integer, e.g. 1024", param="max_tokens")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ValidationError(
            'messages is required: send a non-empty list such as [{"role": "user", "content": "Hello"}]',
            param="messages",
        )


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    stype = source.get("type") if isinstance(source, dict) else None
    if stype == "base64" and isinstance(source, dict):
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif stype == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise ValidationError(f"{where}: image source type {stype!r} is not supported", param="messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _text_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("text"), str):
        raise ValidationError(f"{where}: text blocks need a text string", param="messages")
    part: dict[str, Any] = {"type": "text", "text": block["text"]}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValidationError(
            f"{where}: content must be a string or a list of content blocks", param="messages"
        )
    if not all(isinstance(block, dict) for block in content):
        raise ValidationError(f"{where}: every content block must be an object", param="messages")
    return content


def _tool_result(block: dict[str, Any], where: str, extra: list[dict[str, Any]]) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise ValidationError(f"{where}: tool_result blocks need a tool_use_id", param="messages")
    content = block.get("content", "")
    if not isinstance(content, str):
        parts = []
        for k, inner in enumerate(_blocks(content, where)):
            if inner.get("type") == "text":
                parts.append(_text_part(inner, f"{where}.content[{k}]"))
            elif inner.get("type") == "image":  # a tool message holds text only: images follow as user input
                extra.append(_image_part(inner, f"{where}.content[{k}]"))
            else:
                raise ValidationError(
                    f"{where}.content[{k}]: {inner.get('type')!r} is not supported in tool results",
                    param="messages",
                )
        content = parts or ""
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}


def _user_messages(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, where)):
        bwhere = f"{where}.content[{j}]"
        match block.get("type"):
            case "text":
                parts.append(_text_part(block, bwhere))
            case "image":
                parts.append(_image_part(block, bwhere))
            case "tool_result":
                tools.append(_tool_result(block, bwhere, parts))
            case other:
                raise ValidationError(
                    f"{bwhere}: content block type {other!r} is not supported", param="messages"
                )
    return tools + ([{"role": "user", "content": parts}] if parts else [])


def _assistant_message(content: Any, where: str) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, where)):
        btype = block.get("type")
        if btype == "text":
            texts.append(_text_part(block, f"{where}.content[{j}]")["text"])
        elif btype == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise ValidationError(
                    f"{where}.content[{j}]: tool_use blocks need an id and a name", param="messages"
                )
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
        elif btype not in ("thinking", "redacted_thinking"):
            raise ValidationError(
                f"{where}.content[{j}]: content block type {btype!r} is not supported", param="messages"
            )
    if not texts and not calls:  # e.g. only thinking blocks: nothing OpenAI can take
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise ValidationError("tools must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "custom") not in ("custom", None):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise ValidationError(
                f"tools[{i}]: tool type {kind!r} is not supported on this gateway", param="tools"
            )
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            raise ValidationError(f"tools[{i}]: tools need a name and an input_schema object", param="tools")
        fn: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    ctype = choice.get("type") if isinstance(choice, dict) else None
    if ctype in ("auto", "none"):
        return ctype
    if ctype == "any":
        return "required"
    if ctype == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise ValidationError(f"tool_choice {choice!r} is not supported", param="tool_choice")


def _reasoning_effort(thinking: Any) -> str | None:
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        raise ValidationError("thinking.budget_tokens must be an integer >= 1024", param="thinking")
    # Nearest (on a log scale) of the budgets build_request uses: low 1024, medium 4096, high 16384.
    return "low" if budget < 2048 else "medium" if budget < 8192 else "high"


def openai_request_from_messages(body: dict[str, Any], *, counting: bool = False) -> dict[str, Any]:
    """Translate an Anthropic Messages request into an OpenAI chat-completions request.

    Raises ``ValidationError`` saying what to fix when ``model``, ``max_tokens`` or ``messages`` is
    missing or malformed, or when a block, tool or tool_choice cannot be expressed in OpenAI's API.
    ``counting``: the body is a ``count_tokens`` request, which has no ``max_tokens`` (nor any in the
    result) and is never streamed.
    """
    _require(body, counting=counting)
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        parts = [_text_part(block, f"system[{k}]") for k, block in enumerate(_blocks(system, "system"))]
        messages.append({"role": "system", "content": parts})
    for i, msg in enumerate(body["messages"]):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "user":
            messages += _user_messages(msg.get("content"), f"messages[{i}]")
        elif role == "assistant":
            assistant = _assistant_message(msg.get("content"), f"messages[{i}]")
            if assistant is not None:
                messages.append(assistant)
        else:
            raise ValidationError(f'messages[{i}].role must be "user" or "assistant"', param="messages")

    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    if not counting:
        out["max_tokens"] = body["max_tokens"]
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(body["tool_choice"])
            if body["tool_choice"].get("disable_parallel_tool_use") is True:
                out["parallel_tool_calls"] = False
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = stops
    for key in ("temperature", "top_p"):  # top_k has no OpenAI equivalent (OpenAI rejects it)
        if isinstance(body.get(key), int | float) and not isinstance(body.get(key), bool):
            out[key] = body[key]
    effort = _reasoning_effort(body.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream") and not counting:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def messages_response_from_openai(
    resp: dict[str, Any], *, model: str, usage: Usage | None = None, stops: Sequence[str] = ()
) -> dict[str, Any]:
    """Translate an OpenAI ``chat.completion`` into an Anthropic ``message`` object. ``stops`` are the
    request's ``stop_sequences``: ``stop_reason: stop_sequence`` when ``matched_stop`` can tell which ended it.

    ``usage`` overrides the response's own ``usage`` (pass the gateway's figure when it knows better,
    e.g. cache writes, which OpenAI's usage shape cannot carry).
    """
    choices = resp.get("choices") if isinstance(resp, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice is not None else None
    if not isinstance(message, dict):
        raise UpstreamBadResponseError("upstream answer has no choices[0].message")
    content: list[dict[str, Any]] = []
    text, refusal = message.get("content"), message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:  # OpenAI puts refusals beside content: show them as text
        content.append({"type": "text", "text": refusal})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UpstreamBadResponseError("upstream tool call without a function name")
        try:
            arguments = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise UpstreamBadResponseError(
                f"upstream tool call {fn['name']!r} has invalid JSON arguments"
            ) from None
        content.append(
            {"type": "tool_use", "id": call.get("id") or "", "name": fn["name"], "input": arguments}
        )
    counted = usage if usage is not None else Usage.from_openai(resp.get("usage")) or Usage()
    stop_sequence = matched_stop(choice, text if isinstance(text, str) else "", stops) if choice else None
    return {
        "id": message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": "refusal"
        if isinstance(refusal, str) and refusal
        else "stop_sequence"
        if stop_sequence is not None
        else stop_reason_from_openai(choice.get("finish_reason") if choice else None),
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(counted),
    }
