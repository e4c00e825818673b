"""OpenAI's Responses API on the simulator: ``POST /v1/responses``, JSON and SSE, in the documented wire
format. The answer is one assistant ``message`` item with one ``output_text`` part. A stream sends
``response.created``, ``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` (one per token), ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done`` and ``response.completed`` (``response.incomplete`` when cut at
``max_output_tokens``), each ``event: <type>`` with a ``data`` object carrying an increasing
``sequence_number``; there is no ``[DONE]``. Usage (``input_tokens`` including ``cached_tokens``,
``output_tokens``) is in the response object, and in a stream in the terminal event's ``response``.

The behaviour options of the chat endpoint apply (``@k=v`` model suffix or the body's ``"sim"`` object):
latency_ms, chunk_delay_ms, completion_tokens, prompt_tokens, cached_tokens, reply, error (+ retry_after,
fail_first, scenario), cut_after (a stream dropped after N text deltas), hang, no_usage (``usage: null``)
and require_key. Stored state is not kept: ``previous_response_id`` and ``store`` are only echoed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tollgate.simulator import generate
from tollgate.simulator.behaviour import Behaviour
from tollgate.simulator.responses import DropConnection, Watch, json_reply, open_openai
from tollgate.simulator.wire import error_body, error_for_status

if TYPE_CHECKING:
    from tollgate.simulator.app import SimState

__all__ = ["responses_routes"]

_JSON: Final = "application/json"


def _prompt_messages(body: dict[str, Any]) -> list[Any]:
    """The request as chat-like messages, to count its tokens the way the chat endpoint does."""
    messages: list[Any] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"content": body["instructions"]})
    value = body.get("input")
    if isinstance(value, str):
        messages.append({"content": value})
    elif isinstance(value, list):
        for item in value:
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, list):  # input_text parts count as text
                content = [{**p, "type": "text"} if p.get("type") == "input_text" else p for p in content]
            messages.append({"content": content})
    return messages


def _usage(prompt: int, output: int, cached: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


class _Answer:
    """One response: its object at each stage, and its streaming events."""

    def __init__(self, body: dict[str, Any], rid: str, model: str, text: str, finish: str,
                 usage: dict[str, Any] | None) -> None:  # fmt: skip
        self.body = body
        self.id = rid
        self.model = model
        self.text = text
        self.incomplete = finish == "length"
        self.usage = usage
        self.created_at = int(time.time())
        self.msg_id = "msg_" + rid.removeprefix("resp_")
        self._seq = 0

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
        return {
            "id": self.msg_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def response(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        b = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": b.get("tool_choice", "auto"),
            "tools": b.get("tools", []),
            "top_p": b.get("top_p", 1.0),
            "truncation": b.get("truncation", "disabled"),
            "usage": usage,
            "user": b.get("user"),
            "metadata": b.get("metadata", {}),
        }

    def final(self) -> dict[str, Any]:
        status = "incomplete" if self.incomplete else "completed"
        return self.response(status, [self._message(status, self.text)], self.usage)

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def opening(self) -> list[bytes]:
        where = {"item_id": self.msg_id, "output_index": 0, "content_index": 0}
        return [
            self._event("response.created", response=self.response("in_progress", [], None)),
            self._event("response.in_progress", response=self.response("in_progress", [], None)),
            self._event(
                "response.output_item.added", output_index=0, item=self._message("in_progress", None)
            ),
            self._event(
                "response.content_part.added",
                **where,
                part={"type": "output_text", "text": "", "annotations": []},
            ),
        ]

    def delta(self, piece: str) -> bytes:
        return self._event(
            "response.output_text.delta", item_id=self.msg_id, output_index=0, content_index=0, delta=piece
        )

    def closing(self) -> list[bytes]:
        where = {"item_id": self.msg_id, "output_index": 0, "content_index": 0}
        final = self.final()
        item = final["output"][0]
        return [
            self._event("response.output_text.done", **where, text=self.text),
            self._event("response.content_part.done", **where, part=item["content"][0]),
            self._event("response.output_item.done", output_index=0, item=item),
            self._event(f"response.{final['status']}", response=final),
        ]


class Responses:
    """``POST /v1/responses`` bound to one ``SimState``; requests are recorded like the others."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        opened = await open_openai(request, self.state)
        if isinstance(opened, Response):
            return opened
        rec, body, model, b = opened
        if model is None:
            return json_reply(rec, 400, error_body("you must provide a model parameter", param="model"))
        if body.get("input") is None:
            return json_reply(rec, 400, error_body("Missing required parameter: 'input'.", param="input"))
        early = self._injected_error(rec, b)
        if early is not None:
            return early
        limit = body.get("max_output_tokens")
        pieces, finish = generate.completion_pieces(b, limit if isinstance(limit, int) else None, None)
        prompt = b.prompt_tokens
        if prompt is None:
            prompt = generate.count_prompt_tokens(_prompt_messages(body))
        usage = None if b.no_usage else _usage(prompt, len(pieces), min(b.cached_tokens, prompt))
        answer = _Answer(body, f"resp_sim{self.state.next_id():08d}", model, "".join(pieces), finish, usage)
        if body.get("stream") is True:
            return self._stream(request, rec, b, answer, pieces)
        return json_reply(rec, 200, orjson.dumps(answer.final()))

    def _injected_error(self, rec: dict[str, Any], b: Behaviour) -> Response | None:
        status = self.state.injected_status(b)
        if status is None:
            return None
        headers = {"retry-after": f"{b.retry_after:g}"} if b.retry_after is not None else None
        return json_reply(rec, status, error_for_status(status), headers)

    def _stream(self, request: Request, rec: dict[str, Any], b: Behaviour, answer: _Answer,
                pieces: list[str]) -> Response:  # fmt: skip
        rec["status"] = 200
        cut = b.cut_after
        events = answer.opening() + [answer.delta(p) for p in pieces[:cut]]
        if cut is None:
            events += answer.closing()
        delay = b.chunk_delay_ms / 1000

        async def body() -> AsyncIterator[bytes]:
            watch = Watch(request.receive, self.state.stopping)
            try:
                for i, event in enumerate(events):
                    if i and delay > 0 and await watch.sleep(delay):
                        rec["cancelled"] = True
                        return
                    yield event
                    rec["chunks_sent"] = i + 1
                if cut is not None:
                    raise DropConnection
                rec["completed"] = True
            finally:
                watch.close()

        return StreamingResponse(
            body(), headers={"cache-control": "no-cache"}, media_type="text/event-stream"
        )


def responses_routes(state: SimState) -> list[Route]:
    """The Responses API route of the simulator."""
    return [Route("/v1/responses", Responses(state).handle, methods=["POST"])]
