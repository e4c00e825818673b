"""OpenAI ``chat.completion.chunk`` dicts -> Anthropic Messages SSE events, for ``POST /v1/messages``.

The encoder emits exactly the documented event flow: ``message_start``; per content block
``content_block_start``, ``content_block_delta``\\* (``text_delta`` or ``input_json_delta``),
``content_block_stop``; then ``message_delta`` (stop_reason + cumulative usage) and ``message_stop``.
Blocks never interleave: a new text run or tool call closes the open block first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from tollgate.errors import TollgateError
from tollgate.providers.usage import Usage

__all__ = [
    "MessagesStreamEncoder",
    "anthropic_usage",
    "error_body",
    "matched_stop",
    "message_id",
    "sse_event",
    "stop_reason_from_openai",
]

Event = tuple[str, dict[str, Any]]

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def stop_reason_from_openai(finish: Any) -> str:
    """Anthropic ``stop_reason`` for an OpenAI ``finish_reason`` (missing or unknown -> ``end_turn``)."""
    return _STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def matched_stop(choice: dict[str, Any], text: str, stops: Sequence[str]) -> str | None:
    """The stop sequence that ended an OpenAI choice whose ``finish_reason`` is ``stop``, if it can be told:

    1. the choice's own ``stop_reason`` string (vLLM reports the matched stop there; Tollgate's Anthropic
       translation does too), or
    2. a requested stop sequence the generated text ends with (upstreams that keep it in the text).

    Otherwise None: OpenAI itself drops the sequence from the text and does not say which one matched,
    so such a stop reads as ``end_turn``.
    """
    if choice.get("finish_reason") != "stop":
        return None
    reported = choice.get("stop_reason")
    if isinstance(reported, str) and reported and (reported in stops or not stops):
        return reported
    return next((s for s in stops if s and text.endswith(s)), None)


def error_body(exc: TollgateError) -> dict[str, Any]:
    """Anthropic's error shape for a Tollgate error (HTTP body, or ``data`` of a stream ``error`` event)."""
    etype = _ERROR_TYPES.get(exc.status, "invalid_request_error" if 400 <= exc.status < 500 else "api_error")
    return {"type": "error", "error": {"type": etype, "message": exc.message}}


def anthropic_usage(usage: Usage) -> dict[str, int]:
    """Anthropic ``usage``: ``input_tokens`` excludes cache reads and writes, which OpenAI counts in."""
    return {
        "input_tokens": max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: ``event: <name>\\ndata: <json>\\n\\n``."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def message_id(openai_id: Any) -> str:
    """An Anthropic-looking ``msg_`` id derived from an OpenAI completion id (random when missing)."""
    if not isinstance(openai_id, str) or not openai_id:
        return "msg_" + uuid.uuid4().hex
    return openai_id if openai_id.startswith("msg_") else "msg_" + openai_id.removeprefix("chatcmpl-")


class MessagesStreamEncoder:
    """Turns one OpenAI chunk stream into Anthropic SSE events; call :meth:`finish` once at the end.

    ``input_tokens`` is what ``message_start`` reports (Anthropic sends the prompt count up front, OpenAI
    only at the end: pass the gateway's local estimate, or 0); ``finish`` sends the real figures in
    ``message_delta``, whose counts are cumulative and replace the earlier ones in Anthropic's SDKs.
    """

    def __init__(
        self, *, model: str, message_id: str | None = None, input_tokens: int = 0, stops: Sequence[str] = ()
    ) -> None:
        self.model = model
        self.stops = [s for s in stops if s]
        self._keep = max(map(len, self.stops), default=0)  # how much of the text's end ``matched_stop`` needs
        self._tail = ""
        self._stop_sequence: str | None = None
        self.message_id = message_id
        self.input_tokens = input_tokens
        self.usage: Usage | None = None  # the last ``usage`` seen in a chunk, if the upstream sent one
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (kind, block index) of the block being streamed
        self._tools: dict[int, tuple[str, int]] = {}  # OpenAI tool_call index -> (call id, block index)
        self._stop_reason = "end_turn"

    def _start(self, openai_id: Any = None) -> list[Event]:
        if self._started:
            return []
        self._started = True
        if self.message_id is None:
            self.message_id = message_id(openai_id)
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        index = self._next_index
        self._next_index += 1
        self._open = (kind, index)
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        return events

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _text(self, text: str) -> list[Event]:
        events = (
            []
            if self._open and self._open[0] == "text"
            else self._open_block("text", {"type": "text", "text": ""})
        )
        assert self._open is not None
        events.append(self._delta(self._open[1], {"type": "text_delta", "text": text}))
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        raw_position, raw_id, raw_fn = call.get("index"), call.get("id"), call.get("function")
        position = raw_position if isinstance(raw_position, int) else 0
        call_id = raw_id if isinstance(raw_id, str) and raw_id else None
        fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
        known = self._tools.get(position)
        events: list[Event] = []
        if known is None or (call_id is not None and call_id != known[0]):
            call_id = call_id or "toolu_" + uuid.uuid4().hex[:24]
            name = fn.get("name") if isinstance(fn.get("name"), str) else ""
            block: dict[str, Any] = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            events = self._open_block("tool", block)
            known = self._tools[position] = (call_id, self._next_index - 1)
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._delta(known[1], {"type": "input_json_delta", "partial_json": arguments}))
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events for one OpenAI chunk (the first call also yields ``message_start``)."""
        events = self._start(chunk.get("id"))
        if self._finished:
            return []
        counted = Usage.from_openai(chunk.get("usage"))
        if counted is not None:
            self.usage = counted
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            raw_delta = choice.get("delta")
            delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                events += self._text(text)
                if self._keep:
                    self._tail = (self._tail + text)[-self._keep :]
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._stop_reason = stop_reason_from_openai(choice["finish_reason"])
                self._stop_sequence = matched_stop(choice, self._tail, self.stops)
                if self._stop_sequence is not None:
                    self._stop_reason = "stop_sequence"
        return events

    def finish(self, usage: Usage) -> list[Event]:
        """Close the open block and end the message with its stop_reason and final ``usage``."""
        if self._finished:
            return []
        events = self._start() + self._close()
        self._finished = True
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason, "stop_sequence": self._stop_sequence},
                    "usage": anthropic_usage(usage),
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def error(self, exc: TollgateError) -> list[Event]:
        """The ``error`` event that ends a stream that failed after it started."""
        self._finished = True
        return [("error", error_body(exc))]
