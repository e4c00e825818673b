"""tollgate/services/stream_usage.py on frames as upstreams write them (compact or with spaces)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tollgate.services.context import StreamReply
from tollgate.services.stream_usage import UsageMode, deliver_usage


def frame(chunk: dict[str, object], spaced: bool) -> bytes:
    text = json.dumps(chunk) if spaced else json.dumps(chunk, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


def stream(spaced: bool) -> list[bytes]:
    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    return [
        frame(choice({"role": "assistant", "content": ""}), spaced),
        frame(choice({"content": "hi "}), spaced),
        frame(choice({}, "stop"), spaced),  # its own read: held until the usage comes
        frame(usage, spaced) + b"data: [DONE]\n\n",
    ]


def shaped(items: list[bytes], mode: UsageMode) -> list[dict[str, object]]:
    async def frames() -> AsyncIterator[bytes]:
        for item in items:
            yield item

    async def noop() -> None:
        return None

    async def collect() -> bytes:
        reply = deliver_usage(StreamReply(frames(), {}, noop), mode)
        return b"".join([item async for item in reply.frames])

    raw = asyncio.run(collect())
    assert raw.endswith(b"data: [DONE]\n\n")
    return [json.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]


@pytest.mark.parametrize("spaced", [False, True])
def test_merge_puts_usage_on_the_finish_chunk(spaced: bool) -> None:
    chunks = shaped(stream(spaced), UsageMode.MERGE)
    assert all(c["choices"] for c in chunks) and len(chunks) == 3
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}


@pytest.mark.parametrize("spaced", [False, True])
def test_omit_strips_the_usage_only_chunk(spaced: bool) -> None:
    chunks = shaped(stream(spaced), UsageMode.OMIT)
    assert len(chunks) == 3 and not any("usage" in c for c in chunks)


def test_include_leaves_the_stream_as_it_is() -> None:
    chunks = shaped(stream(False), UsageMode.INCLUDE)
    assert chunks[-1]["choices"] == [] and len(chunks) == 4
