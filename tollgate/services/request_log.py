"""Request logging: a request's bodies are kept only where its key allows it (``log_inputs`` /
``log_outputs``, both off by default), until the key's retention window ends (``retention_days``, else
``server.log_retention_days``; 0 keeps nothing). The input is the request body as received; the output
is the OpenAI-shaped reply body, or for a stream the text it produced. Everything goes through the
buffered usage writer, never straight to the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from tollgate.accounts.usage import UsageWriter
from tollgate.services.context import JsonReply, RequestContext, StreamReply
from tollgate.storage.base import RequestLog

DAY = 86_400


def stream_text(frames: list[bytes]) -> str:
    """The assistant text carried by OpenAI chat-completion chunks."""
    parts: list[str] = []
    for line in b"".join(frames).split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        try:
            chunk = orjson.loads(line[6:])
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
    return "".join(parts)


class RequestLogger:
    def __init__(self, writer: UsageWriter, retention_days: int) -> None:
        self.writer = writer
        self.retention_days = retention_days

    def _submit(self, ctx: RequestContext, raw: bytes, output: str | None) -> None:
        p = ctx.principal
        if p is None or not (p.log_inputs or p.log_outputs):
            return
        days = p.retention_days if p.retention_days is not None else self.retention_days
        if days <= 0:
            return
        self.writer.submit_log(
            RequestLog(
                request_id=ctx.request_id,
                account_id=p.account_id,
                key_id=p.key_id,
                created_at=ctx.created_at,
                expires_at=ctx.created_at + days * DAY,
                input=raw.decode("utf-8", "replace") if p.log_inputs else None,
                output=output if p.log_outputs else None,
            )
        )

    def failed(self, ctx: RequestContext, raw: bytes) -> None:
        self._submit(ctx, raw, None)

    def reply(
        self, ctx: RequestContext, raw: bytes, reply: JsonReply | StreamReply
    ) -> JsonReply | StreamReply:
        p = ctx.principal
        if p is None or not (p.log_inputs or p.log_outputs):
            return reply
        if isinstance(reply, JsonReply):
            self._submit(ctx, raw, reply.body.decode("utf-8", "replace"))
            return reply
        return StreamReply(self._collect(ctx, raw, reply.frames), reply.headers, reply.abandon, reply.last)

    async def _collect(
        self, ctx: RequestContext, raw: bytes, frames: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        seen: list[bytes] = []
        try:
            async for frame in frames:
                seen.append(frame)
                yield frame
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
            self._submit(ctx, raw, stream_text(seen))
