"""tollgate/api/http.py: how a stream reply becomes ASGI messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tollgate.api.http import SSEResponse
from tollgate.services.context import StreamReply


async def _run(reply: StreamReply) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await SSEResponse(reply)({"type": "http"}, receive, send)  # type: ignore[arg-type]
    return sent


def _reply(frames: list[bytes], last_from: int | None) -> StreamReply:
    state = {"given": 0}

    async def gen() -> AsyncIterator[bytes]:
        for frame in frames:
            state["given"] += 1
            yield frame

    async def abandon() -> None:
        return None

    if last_from is None:
        return StreamReply(gen(), {}, abandon)
    return StreamReply(gen(), {}, abandon, lambda: state["given"] >= last_from)


async def test_the_last_frame_ends_the_response_in_the_same_message() -> None:
    sent = await _run(_reply([b"data: 1\n\n", b"data: 2\n\ndata: [DONE]\n\n"], last_from=2))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [
        (b"data: 1\n\n", True),
        (b"data: 2\n\ndata: [DONE]\n\n", False),
    ]


async def test_a_reply_that_cannot_tell_its_last_frame_ends_with_an_empty_message() -> None:
    sent = await _run(_reply([b"data: 1\n\n", b"data: [DONE]\n\n"], last_from=None))
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [
        (b"data: 1\n\n", True),
        (b"data: [DONE]\n\n", True),
        (b"", False),
    ]


async def test_nothing_is_sent_after_the_message_that_ended_the_response() -> None:
    sent = await _run(_reply([b"data: 1\n\n", b"data: [DONE]\n\n", b"stray"], last_from=2))
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [
        (b"data: 1\n\n", True),
        (b"data: [DONE]\n\n", False),
    ]
