"""tollgate/services/reframe.py: the pipeline's chat frames re-encoded as another protocol's named events,
with settlement left to the pipeline however the stream ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollgate.services.context import StreamReply
from tollgate.services.reframe import Event, reframe


class Recorder:
    """An encoder that names what it was given."""

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        return [("chunk", {"n": chunk["n"]})]

    def fail(self, error: dict[str, Any]) -> list[Event]:
        return [("failed", {"message": error["message"]})]

    def finish(self) -> list[Event]:
        return [("done", {})]


def frame(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def reply_of(items: list[bytes], abandoned: list[bool]) -> StreamReply:
    async def frames() -> AsyncIterator[bytes]:
        for item in items:
            yield item

    async def abandon() -> None:
        abandoned.append(True)

    return StreamReply(frames(), {"X-Request-ID": "req_1"}, abandon)


async def collect(reply: StreamReply) -> bytes:
    return b"".join([item async for item in reply.frames])


async def test_chunks_and_done_become_named_events_one_write_per_read() -> None:
    abandoned: list[bool] = []
    items = [frame({"n": 1}) + frame({"n": 2}), frame({"n": 3}), b"data: [DONE]\n\n"]
    out = reframe(reply_of(items, abandoned), Recorder())
    assert out.headers == {"X-Request-ID": "req_1"}
    writes = [w async for w in out.frames]
    assert writes == [
        b'event: chunk\ndata: {"n":1}\n\nevent: chunk\ndata: {"n":2}\n\n',
        b'event: chunk\ndata: {"n":3}\n\n',
        b"event: done\ndata: {}\n\n",
    ]
    assert abandoned == [True]  # harmless after a normal end: the relay settled already


async def test_error_frame_calls_fail_and_frames_split_across_reads_are_joined() -> None:
    error = frame(
        {"error": {"message": "cut short", "type": "api_error", "param": None, "code": "UPSTREAM_ERROR"}}
    )
    items = [frame({"n": 1})[:9], frame({"n": 1})[9:] + error[:5], error[5:], b"data: [DONE]\n\n"]
    body = await collect(reframe(reply_of(items, []), Recorder()))
    assert body == (
        b'event: chunk\ndata: {"n":1}\n\nevent: failed\ndata: {"message":"cut short"}\n\nevent: done\ndata: {}\n\n'
    )


async def test_closing_the_reencoded_stream_early_settles_through_abandon() -> None:
    abandoned: list[bool] = []
    out = reframe(reply_of([frame({"n": 1}), frame({"n": 2})], abandoned), Recorder())
    frames = out.frames
    assert await anext(frames) == b'event: chunk\ndata: {"n":1}\n\n'
    await frames.aclose()  # type: ignore[attr-defined]
    assert abandoned == [True]
