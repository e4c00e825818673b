"""Re-encode the pipeline's OpenAI chat stream in another protocol's SSE events (Anthropic Messages,
Responses), one upstream read in, one client write out.

The pipeline's frames are ``data: {chunk}`` events, then the usage chunk and ``data: [DONE]``, or, when the
upstream failed mid-stream, ``data: {"error": {...}}`` and ``data: [DONE]``. An ``EventEncoder`` folds them
into named events. Settlement stays with the pipeline: the re-encoded reply keeps its ``abandon``, and a
re-encoded stream that is closed early (client gone) settles through it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from tollgate.providers.sse import SSESplitter, parse_event
from tollgate.services.context import StreamReply

Event = tuple[str, dict[str, Any]]


class EventEncoder(Protocol):
    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events for one OpenAI ``chat.completion.chunk``."""

    def fail(self, error: dict[str, Any]) -> list[Event]:
        """Events that end a stream that failed (``error`` is OpenAI's error object)."""

    def finish(self) -> list[Event]:
        """Events that end a stream that completed (after the usage chunk); none after ``fail``."""


def sse(events: list[Event]) -> bytes:
    """``event: <name>\\ndata: <json>\\n\\n`` for each event."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n" for name, data in events
    )


def reframe(reply: StreamReply, encoder: EventEncoder) -> StreamReply:
    async def frames() -> AsyncIterator[bytes]:
        splitter = SSESplitter()
        try:
            async for item in reply.frames:
                events: list[Event] = []
                for raw in splitter.feed(item):
                    data = parse_event(raw)[1]
                    if data == b"[DONE]":
                        events += encoder.finish()
                        continue
                    chunk = orjson.loads(data)
                    error = chunk.get("error")
                    events += encoder.fail(error) if isinstance(error, dict) else encoder.feed(chunk)
                if events:
                    yield sse(events)
        finally:
            await reply.abandon()  # settles only if the pipeline's relay has not (a no-op after a normal end)

    return StreamReply(frames(), reply.headers, reply.abandon)
