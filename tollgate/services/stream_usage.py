"""How a chat stream's usage reaches the client, by what it asked in ``stream_options.include_usage``.

The gateway always asks the upstream for usage (billing needs it), and the pipeline's stream always ends with
OpenAI's usage-only chunk (``"choices": []``), counted locally if the upstream sent none. What the client
gets:

``include_usage: true``
    Exactly what OpenAI documents: the usage-only chunk with ``"choices": []`` before ``[DONE]``.
``include_usage: false``
    No usage-only chunk (the one the gateway asked for is stripped).
not said (the default)
    The usage rides on the last chunk that carries a ``finish_reason`` (held back until the usage arrives),
    and no chunk has empty ``choices``: ``for c in stream: c.choices[0].delta.content`` keeps working and
    the SDKs' stream helpers read the usage from the last chunk they see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum
from typing import Any

import orjson

from tollgate.providers.sse import DONE, encode_data, parse_event
from tollgate.services.context import StreamReply


class UsageMode(Enum):
    INCLUDE = "include"  # client said true: OpenAI's usage-only chunk
    OMIT = "omit"  # client said false: none
    MERGE = "merge"  # client did not say: on the final finish_reason chunk


def usage_mode(body: dict[str, Any]) -> UsageMode:
    """The client's choice (``stream_options`` is validated by ``parse_chat_request``)."""
    options = body.get("stream_options")
    asked = options.get("include_usage") if isinstance(options, dict) else None
    if asked is True:
        return UsageMode.INCLUDE
    return UsageMode.OMIT if asked is False else UsageMode.MERGE


def _empty_choices(frame: bytes) -> bool:
    return b'"choices":[]' in frame or b'"choices": []' in frame


def _finish(frame: bytes) -> bool:
    return b'"finish_reason":"' in frame or b'"finish_reason": "' in frame


def _usage_only(event: bytes) -> dict[str, Any] | None:
    """The ``usage`` of a usage-only chunk (empty ``choices``), else None."""
    try:
        chunk = orjson.loads(parse_event(event)[1])
    except orjson.JSONDecodeError:
        return None
    usage = chunk.get("usage") if isinstance(chunk, dict) and chunk.get("choices") == [] else None
    return usage if isinstance(usage, dict) else None


def _with_usage(event: bytes, usage: dict[str, Any]) -> bytes:
    chunk = orjson.loads(parse_event(event)[1])
    chunk["usage"] = usage
    return encode_data(orjson.dumps(chunk))


class UsageShaper:
    """Rewrites the pipeline's frames (whole ``data:`` events, one or more per item) for ``OMIT``/``MERGE``."""

    __slots__ = ("_merge", "held")

    def __init__(self, mode: UsageMode) -> None:
        self._merge = mode is UsageMode.MERGE
        self.held = b""  # MERGE: the latest finish_reason chunk, until the usage or the next chunk comes

    def feed(self, item: bytes) -> bytes:
        if not (_empty_choices(item) or (self._merge and _finish(item))):
            if self.held:
                item, self.held = self.held + item, b""
            return item
        out: list[bytes] = []
        for event in item.split(b"\n\n"):
            if not event:
                continue
            event += b"\n\n"
            usage = _usage_only(event) if _empty_choices(event) else None
            if usage is not None:
                if self.held:  # MERGE (OMIT holds nothing): the usage joins the finish chunk
                    out.append(_with_usage(self.held, usage))
                    self.held = b""
                continue  # OMIT, or no finish chunk to carry it: not sent (the row has it)
            if self.held:
                out.append(self.held)
                self.held = b""
            if self._merge and event != DONE and _finish(event):
                self.held = event
            else:
                out.append(event)
        return b"".join(out)

    def end(self) -> bytes:
        held, self.held = self.held, b""
        return held


def deliver_usage(reply: StreamReply, mode: UsageMode) -> StreamReply:
    """``reply`` as the client asked (see the module docstring); ``INCLUDE`` leaves it as it is."""
    if mode is UsageMode.INCLUDE:
        return reply
    shaper = UsageShaper(mode)
    inner = reply.frames

    # The cheap test each frame gets: MERGE looks for a finish_reason (the usage-only chunk follows one,
    # while it is held), OMIT for empty choices. An upstream writing JSON with spaces gets the full look.
    marker = b'"finish_reason":"' if mode is UsageMode.MERGE else b'"choices":[]'

    async def frames() -> AsyncIterator[bytes]:
        spaced: bool | None = None
        try:
            async for item in inner:
                if spaced is None:
                    spaced = b'": ' in item
                if spaced or shaper.held or marker in item:
                    item = shaper.feed(item)
                    if not item:
                        continue
                yield item
            rest = shaper.end()
            if rest:
                yield rest
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamReply(frames(), reply.headers, reply.abandon, reply.last)
