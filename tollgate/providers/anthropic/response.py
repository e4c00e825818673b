"""Anthropic Messages response -> OpenAI ``chat.completion`` (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import orjson

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.usage import Usage

__all__ = ["finish_reason", "to_openai_response", "usage_from_anthropic"]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any, *, json_answer: bool = False, tool_calls: bool = True) -> str:
    """OpenAI ``finish_reason`` for an Anthropic ``stop_reason``.

    ``tool_use`` becomes ``stop`` when the only tool called was the ``response_format`` emulation
    (``json_answer`` true and no real ``tool_calls``). Unknown or missing reasons map to ``stop``.
    """
    reason = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and json_answer and not tool_calls:
        return "stop"
    return reason


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_anthropic(usage: Any) -> Usage:
    """Anthropic ``usage`` -> ``Usage`` with OpenAI semantics.

    Anthropic's ``input_tokens`` excludes cache traffic, so ``prompt_tokens = input_tokens +
    cache_read_input_tokens + cache_creation_input_tokens``. ``reasoning_tokens`` comes from
    ``output_tokens_details.thinking_tokens`` when the API reports it.
    """
    if not isinstance(usage, dict):
        return Usage()
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    details = usage.get("output_tokens_details")
    return Usage(
        prompt_tokens=_count(usage, "input_tokens") + cache_read + cache_write,
        completion_tokens=_count(usage, "output_tokens"),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_count(details, "thinking_tokens") if isinstance(details, dict) else 0,
    )


def dumps(value: Any) -> str:
    """Compact JSON text, as OpenAI sends tool-call arguments."""
    return orjson.dumps(value).decode()


def to_openai_response(
    data: dict[str, Any], *, model: str, created: int, json_tool: str | None = None
) -> dict[str, Any]:
    """Translate an Anthropic ``message`` object into an OpenAI ``chat.completion`` dict.

    ``model`` is the model name the client asked for; ``json_tool`` is ``json_tool_name(request_body)``
    when the request used ``response_format`` (that tool's input becomes the message content).
    """
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list) or data.get("type", "message") != "message":
        raise UpstreamBadResponseError("anthropic: the response is not a message object")
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    answer: str | None = None
    for block in content:
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif btype == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif btype == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise UpstreamBadResponseError("anthropic: tool_use block without id or name")
            if json_tool is not None and block["name"] == json_tool and answer is None:
                answer = dumps(block.get("input", {}))
                continue
            tool_calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": dumps(block.get("input", {}))},
                }
            )
        # redacted_thinking, server tool blocks and future block types carry nothing OpenAI can show.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer if answer is not None else ("".join(texts) if texts else None),
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(
            data.get("stop_reason"), json_answer=answer is not None, tool_calls=bool(tool_calls)
        ),
    }
    if data.get("stop_reason") == "stop_sequence" and isinstance(data.get("stop_sequence"), str):
        choice["stop_reason"] = data["stop_sequence"]  # which stop matched, as vLLM reports it
    return {
        "id": data.get("id") if isinstance(data.get("id"), str) else "",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_from_anthropic(data.get("usage")).to_openai(),
    }
