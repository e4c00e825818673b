"""Chat completions back into the Responses API: a ``chat.completion`` into a response object, and a chunk
stream into Responses streaming events (pure, no I/O). Output items: an assistant ``message`` with one
``output_text`` part, and one ``function_call`` item per tool call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.usage import Usage

__all__ = ["ResponsesStreamEncoder", "response_from_chat", "responses_usage"]

Event = tuple[str, dict[str, Any]]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _echoed_tools(tools: Any) -> list[Any]:
    """The request's tools as a response echoes them: function tools with ``strict`` (OpenAI's default for
    the Responses API is true) and ``description`` / ``parameters`` always present."""
    if not isinstance(tools, list):
        return []
    out: list[Any] = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function":
            strict = tool.get("strict")
            tool = {
                **tool,
                "description": tool.get("description"),
                "parameters": tool.get("parameters"),
                "strict": True if strict is None else strict,
            }
        out.append(tool)
    return out


def responses_usage(usage: Usage) -> dict[str, Any]:
    """The ``usage`` object of a response (input tokens include cached ones, as in chat completions)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _status(finish: Any) -> tuple[str, dict[str, Any] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response(
    request: dict[str, Any],
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    incomplete: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The response object; request parameters are echoed as the Responses API does."""
    text, reasoning = _obj(request.get("text")), _obj(request.get("reasoning"))
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "model": request.get("model"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False,
        "temperature": request.get("temperature"),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": _echoed_tools(request.get("tools")),
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation") or "disabled",
        "usage": responses_usage(usage) if usage is not None else None,
        "user": request.get("user"),
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_output_text(text)] if text or status != "in_progress" else [],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def _suffix(response_id: str) -> str:
    return response_id.removeprefix("resp_")


def response_from_chat(
    completion: dict[str, Any],
    *,
    request: dict[str, Any],
    response_id: str,
    created_at: int,
) -> dict[str, Any]:
    """Translate a ``chat.completion`` into a response object (``output`` items and ``usage``)."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamBadResponseError("upstream answer has no choices[0].message")
    status, incomplete = _status(choice.get("finish_reason"))
    suffix = _suffix(response_id)
    output: list[dict[str, Any]] = []
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        output.append(_message_item(f"msg_{suffix}", text, status))
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UpstreamBadResponseError("upstream tool call without a function name")
        call_id = call.get("id") or f"call_{suffix}_{i}"
        output.append(
            _call_item(f"fc_{suffix}_{i}", call_id, fn["name"], fn.get("arguments") or "", "completed")
        )
    usage = Usage.from_openai(completion.get("usage")) or Usage()
    return _response(
        request, response_id, created_at, status=status, output=output, usage=usage, incomplete=incomplete
    )


@dataclass(slots=True)
class _Item:
    """One output item being streamed: an assistant message or a function call."""

    id: str
    kind: str  # "message" | "function_call"
    index: int  # output_index
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    status: str = "in_progress"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "message":
            return _message_item(self.id, "".join(self.parts), self.status)
        return _call_item(self.id, self.call_id, self.name, "".join(self.parts), self.status)


class ResponsesStreamEncoder:
    """Turns one chat-completions chunk stream into Responses streaming events, as ``(event, data)`` pairs.

    The documented flow: ``response.created``, ``response.in_progress``; per output item
    ``response.output_item.added``, then for a message ``response.content_part.added``,
    ``response.output_text.delta``\\*, ``response.output_text.done``, ``response.content_part.done``, or for
    a function call ``response.function_call_arguments.delta``\\*, ``response.function_call_arguments.done``;
    ``response.output_item.done``; finally ``response.completed`` (or ``response.incomplete`` when the
    output was cut at ``max_output_tokens``) with the usage, or ``response.failed`` on an upstream error.
    Every event carries an increasing ``sequence_number``; there is no ``[DONE]``.
    """

    def __init__(self, *, request: dict[str, Any], response_id: str, created_at: int) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.usage: Usage | None = None  # the last usage seen in a chunk
        self._seq = 0
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool_call index -> its item
        self._finish: Any = None
        self._started = False
        self._done = False

    def _event(self, kind: str, **fields: Any) -> Event:
        data = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return kind, data

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        output = [item.to_dict() for item in self._items]
        return _response(
            self.request, self.response_id, self.created_at, status=status, output=output, **extra
        )

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        response = self._snapshot("in_progress", usage=None)
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _add(self, item: _Item) -> list[Event]:
        events = self._close()
        self._items.append(item)
        self._open = item
        events.append(self._event("response.output_item.added", output_index=item.index, item=item.to_dict()))
        if item.kind == "message":
            part = _output_text("")
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.id,
                    output_index=item.index,
                    content_index=0,
                    part=part,
                )
            )
        return events

    def _close(self, status: str = "completed") -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        item.status = status
        text = "".join(item.parts)
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "message":
            events = [
                self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", **where, content_index=0, part=_output_text(text)),
            ]
        else:
            events = [
                self._event("response.function_call_arguments.done", **where, arguments=text, name=item.name)
            ]
        events.append(self._event("response.output_item.done", output_index=item.index, item=item.to_dict()))
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if item is None or item.kind != "message":
            n = len(self._items)
            item = _Item(f"msg_{_suffix(self.response_id)}" + (f"_{n}" if n else ""), "message", n)
            events = self._add(item)
        item.parts.append(text)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        raw_position, raw_id, fn = call.get("index"), call.get("id"), _obj(call.get("function"))
        position = raw_position if isinstance(raw_position, int) else 0
        call_id = raw_id if isinstance(raw_id, str) and raw_id else None
        item = self._calls.get(position)
        events: list[Event] = []
        if item is None or (call_id is not None and call_id != item.call_id):
            n = len(self._items)
            raw_name = fn.get("name")
            name = raw_name if isinstance(raw_name, str) else ""
            item = _Item(
                f"fc_{_suffix(self.response_id)}_{n}",
                "function_call",
                n,
                call_id=call_id or f"call_{_suffix(self.response_id)}_{n}",
                name=name,
            )
            self._calls[position] = item
            events = self._add(item)
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.parts.append(arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.index,
                    delta=arguments,
                )
            )
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events for one chat chunk (the first call also yields ``response.created``/``in_progress``)."""
        events = self._start()
        if self._done:
            return events
        counted = Usage.from_openai(chunk.get("usage"))
        if counted is not None:
            self.usage = counted
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = _obj(choice.get("delta"))
            for key in ("content", "refusal"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    events += self._text(text)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """Close the open item and end with ``response.completed`` (or ``response.incomplete``)."""
        if self._done:
            return []
        self._done = True
        status, incomplete = _status(self._finish)
        events = self._start() + self._close("completed" if status == "completed" else "incomplete")
        response = self._snapshot(status, usage=self.usage or Usage(), incomplete=incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=response))
        return events

    def fail(self, error: dict[str, Any]) -> list[Event]:
        """End a stream that failed after it started with ``response.failed`` (``error`` in OpenAI's shape)."""
        if self._done:
            return []
        self._done = True
        code = "rate_limit_exceeded" if error.get("type") == "rate_limit_error" else "server_error"
        message = error.get("message") if isinstance(error.get("message"), str) else "upstream error"
        response = self._snapshot("failed", usage=self.usage, error={"code": code, "message": message})
        return [*self._start(), self._event("response.failed", response=response)]
