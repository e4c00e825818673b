"""OpenAI's Responses API forwarded natively (``POST {base_url}/responses``), for upstreams that serve it.

The body goes out as the client sent it, with the upstream model name; the answer comes back unchanged, a
response object or the upstream's own streaming events. Only the usage is read, for billing: from the
response object, or from the ``response`` of the stream's terminal event (``response.completed``,
``response.incomplete`` or ``response.failed``).
"""

from __future__ import annotations

from typing import Any

import orjson

from tollgate.errors import UpstreamBadResponseError, UpstreamError
from tollgate.providers.base import ChatResult
from tollgate.providers.http import UpstreamResponse
from tollgate.providers.sse import parse_event
from tollgate.providers.upstream_stream import UpstreamSSEStream
from tollgate.providers.usage import Usage

TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_responses(usage: Any) -> Usage | None:
    """Read a Responses ``usage`` object (``input_tokens`` include the cached ones); ``None`` when missing."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    if prompt is None or completion is None:
        return None
    details, odetails = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    reasoning = _int(odetails.get("reasoning_tokens")) if isinstance(odetails, dict) else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def output_text(response: dict[str, Any]) -> str:
    """The text of a response object's message items (to estimate usage when the upstream sent none)."""
    parts: list[str] = []
    for item in response.get("output") or []:
        for part in (item.get("content") or []) if isinstance(item, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "".join(parts)


def parse_response(provider: str, body: bytes) -> ChatResult:
    """A JSON answer of ``POST /responses``: the response object as it is, and its usage."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponseError(f"{provider}: the upstream answered with invalid JSON") from None
    if not isinstance(data, dict) or data.get("object") != "response":
        raise UpstreamBadResponseError(f"{provider}: the upstream answer is not a response object")
    return ChatResult(body, data, usage_from_responses(data.get("usage")))


class ResponsesStream(UpstreamSSEStream):
    """The upstream's Responses events, relayed unchanged (one item per upstream read). An ``error`` event
    ends the stream with an ``UpstreamError``; the relay then sends ``failure_event`` in its place."""

    native = True

    def __init__(self, provider: str, resp: UpstreamResponse) -> None:
        super().__init__(provider, resp)
        self._seq = -1  # the last sequence_number relayed

    def _event(self, raw: bytes) -> bytes:
        return raw + b"\n\n" if self._handle(raw) else b""

    def _handle(self, raw: bytes) -> bool:
        """Read one event; whether it is relayed."""
        name, data = parse_event(raw)
        if not data or data == b"[DONE]":
            return False
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponseError(
                f"{self._provider}: the upstream sent invalid JSON in its stream"
            ) from None
        if not isinstance(event, dict):
            raise UpstreamBadResponseError(f"{self._provider}: the upstream sent a non-object stream event")
        kind = event.get("type", name)
        seq = _int(event.get("sequence_number"))
        if seq is not None:
            self._seq = seq
        if kind == "error":
            message = event.get("message") or (event.get("error") or {}).get("message") or "unknown error"
            raise UpstreamBadResponseError(f"{self._provider}: upstream stream error: {message}")
        found = event.get("response")
        response: dict[str, Any] = found if isinstance(found, dict) else {}
        if kind == "response.created":
            self.meta = {"id": response.get("id"), "created": response.get("created_at")}
        elif kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            self.text_parts.append(event["delta"])
        elif kind in TERMINAL:
            self.usage = usage_from_responses(response.get("usage"))
            self.finished = True
        self.chunks += 1
        return True

    def failure_event(self, err: UpstreamError) -> bytes:
        """OpenAI's ``error`` streaming event, numbered after the last relayed event."""
        data: dict[str, Any] = {"type": "error", "code": err.code, "message": err.message, "param": None}
        data["sequence_number"] = self._seq + 1
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
