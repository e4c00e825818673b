"""Anthropic Messages SSE events -> OpenAI ``chat.completion.chunk`` dicts, one event at a time.

A stream is ``message_start``, then per content block ``content_block_start`` / ``content_block_delta``\\* /
``content_block_stop``, then ``message_delta`` (stop_reason, cumulative usage) and ``message_stop``, with
``ping`` events anywhere and possibly an ``error`` event after the 200. Nothing is buffered: every
event yields its chunks immediately (the ``response_format`` emulation streams the forced tool's
partial JSON as ``content``).
"""

from __future__ import annotations

from typing import Any

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.anthropic.errors import error_from_event
from tollgate.providers.anthropic.response import finish_reason
from tollgate.providers.usage import Usage

__all__ = ["StreamTranslator"]

_USAGE_KEYS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")


class StreamTranslator:
    """State machine for one streamed response; feed it every SSE event in order."""

    def __init__(self, *, model: str, created: int, chunk_id: str, json_tool: str | None = None) -> None:
        self.model = model
        self.created = created
        self.chunk_id = chunk_id
        self.json_tool = json_tool
        self._started = False
        self._done = False
        self._blocks: dict[int, tuple[str, int]] = {}  # anthropic block index -> (kind, openai tool index)
        self._tool_count = 0
        self._json_answer = False
        self._finished = False
        self._counts = dict.fromkeys(_USAGE_KEYS, 0)
        self._thinking_tokens = 0

    @property
    def done(self) -> bool:
        """True once ``message_stop`` arrived."""
        return self._done

    @property
    def usage(self) -> Usage:
        """Usage folded over ``message_start`` and every ``message_delta`` so far."""
        c = self._counts
        cache_read, cache_write = c["cache_read_input_tokens"], c["cache_creation_input_tokens"]
        return Usage(
            prompt_tokens=c["input_tokens"] + cache_read + cache_write,
            completion_tokens=c["output_tokens"],
            cached_tokens=cache_read,
            cache_write_tokens=cache_write,
            reasoning_tokens=self._thinking_tokens,
        )

    def usage_chunk(self) -> dict[str, Any]:
        """OpenAI's final ``stream_options.include_usage`` chunk: no choices, only usage."""
        return {
            "id": self.chunk_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage.to_openai(),
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.chunk_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _fold_usage(self, usage: Any, *, start: bool) -> None:
        """Take Anthropic's counts; deltas are cumulative, and a zero or missing count never erases one."""
        if not isinstance(usage, dict):
            return
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                if value > 0 or start:
                    self._counts[key] = value
        details = usage.get("output_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
            self._thinking_tokens = details["thinking_tokens"]

    def _role_chunk(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        btype = block.get("type")
        if btype == "tool_use" and block.get("name") == self.json_tool and not self._json_answer:
            self._json_answer = True
            self._blocks[index] = ("json", -1)
            return []
        if btype == "tool_use":
            tool_index = self._tool_count
            self._tool_count += 1
            self._blocks[index] = ("tool", tool_index)
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if btype in ("text", "thinking"):
            self._blocks[index] = (btype, -1)
            initial = block.get(btype)
            if isinstance(initial, str) and initial:
                key = "content" if btype == "text" else "reasoning_content"
                return [self._chunk({key: initial})]
            return []
        self._blocks[index] = ("other", -1)  # redacted_thinking, server tools: nothing to show
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind, tool_index = self._blocks.get(index, ("other", -1))
        dtype = delta.get("type")
        if dtype == "text_delta" and kind == "text" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if dtype == "thinking_delta" and kind == "thinking" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if dtype == "input_json_delta" and delta.get("partial_json"):
            if kind == "json":
                return [self._chunk({"content": delta["partial_json"]})]
            if kind == "tool":
                call = {"index": tool_index, "function": {"arguments": delta["partial_json"]}}
                return [self._chunk({"tool_calls": [call]})]
        # signature_delta, citations_delta, empty deltas and deltas of hidden blocks carry nothing.
        return []

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Translate one SSE event (its ``event:`` name and parsed ``data:``) into OpenAI chunks.

        Raises the mapped ``UpstreamError`` for an ``error`` event, ``UpstreamBadResponseError`` for a
        malformed one. Unknown event types are ignored, as Anthropic's versioning policy asks.
        """
        if not isinstance(data, dict):
            raise UpstreamBadResponseError(f"anthropic: stream event {event!r} has no JSON object")
        # Anthropic names every event; fall back to the data's own ``type`` for unnamed SSE frames.
        kind = event if event and event != "message" else str(data.get("type", ""))
        match kind:
            case "message_start":
                message = data.get("message")
                self._fold_usage(message.get("usage") if isinstance(message, dict) else None, start=True)
                return self._role_chunk()
            case "content_block_start":
                index, block = data.get("index"), data.get("content_block")
                if not isinstance(index, int) or not isinstance(block, dict):
                    raise UpstreamBadResponseError("anthropic: malformed content_block_start event")
                return self._role_chunk() + self._block_start(index, block)
            case "content_block_delta":
                index, delta = data.get("index"), data.get("delta")
                if not isinstance(index, int) or not isinstance(delta, dict):
                    raise UpstreamBadResponseError("anthropic: malformed content_block_delta event")
                return self._role_chunk() + self._block_delta(index, delta)
            case "content_block_stop":
                return []
            case "message_delta":
                self._fold_usage(data.get("usage"), start=False)
                delta = data.get("delta")
                stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
                if stop_reason is None or self._finished:
                    return []
                self._finished = True
                reason = finish_reason(
                    stop_reason, json_answer=self._json_answer, tool_calls=self._tool_count > 0
                )
                final = self._chunk({}, reason)
                matched = delta.get("stop_sequence") if isinstance(delta, dict) else None
                if stop_reason == "stop_sequence" and isinstance(matched, str):
                    final["choices"][0]["stop_reason"] = matched  # which stop matched, as vLLM reports it
                return self._role_chunk() + [final]
            case "message_stop":
                self._done = True
                return []
            case "ping":
                return []
            case "error":
                raise error_from_event(data)
            case _:
                return []
