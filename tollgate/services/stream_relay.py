"""The relay of one committed chat stream: frames from the upstream to the client, the journal's open record
and progress marks as they go, and the settle (usage row, health, reservation) exactly once however it ends.
``CompletionService._stream`` picks the deployment and hands the committed stream to ``StreamRelay``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from tollgate.accounts.balances import Reservation
from tollgate.accounts.journal import MARK_INTERVAL
from tollgate.errors import TollgateError, UpstreamBadResponseError, UpstreamError, UpstreamTimeoutError
from tollgate.protocol.chat import ChatRequest
from tollgate.providers.base import ChatStream
from tollgate.providers.sse import DONE, encode_data, rename_model
from tollgate.providers.usage import Usage
from tollgate.routing.catalog import Target
from tollgate.services.billing import CLIENT_CLOSED
from tollgate.services.context import RequestContext
from tollgate.settings import ModelConfig
from tollgate.tokens import count_messages, count_text

if TYPE_CHECKING:
    from tollgate.services.completions import CompletionService


def estimate_usage(req: ChatRequest, completion_text: str, model: ModelConfig | None = None) -> Usage:
    """Local counts, marked estimated; ``model`` (the one that served) says how its template frames the prompt."""
    template, system = (model.chat_template, model.default_system_prompt) if model else ("openai", None)
    return Usage(
        prompt_tokens=count_messages(req.body["messages"], template, system),
        completion_tokens=count_text(completion_text),
        estimated=True,
    )


def error_frame(err: TollgateError) -> bytes:
    return encode_data(
        orjson.dumps(
            {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
        )
    )


class StreamRelay:
    """Relays one committed stream and settles it exactly once, however it ends: done, upstream failure,
    client gone mid-stream, or client gone before the first frame was sent."""

    def __init__(
        self,
        service: CompletionService,
        ctx: RequestContext,
        req: ChatRequest,
        target: Target,
        reservation: Reservation | None,
        stream: ChatStream,
        frames: AsyncIterator[bytes],
        first: bytes | None,
        attempts: int,
    ) -> None:
        self.service = service
        self.ctx = ctx
        self.req = req
        self.target = target
        self.reservation = reservation
        self.stream = stream
        self._frames = frames
        self._first = first
        self.attempts = attempts
        self.ttft: float | None = None
        self.attempt_started = ctx.started  # when the attempt that serves began (health latency)
        self.rename: str | None = None  # the model the chunks name, when not the upstream's
        self.settled = False
        self.last = False  # the frame out now is the last

    async def frames(self) -> AsyncIterator[bytes]:
        """The frames to send. Once the upstream has ended its stream, what it sent last is held back an
        instant and sent with what closes the stream (usage chunk, ``[DONE]``) as one final frame: one write
        instead of three. ``last`` is True while that final frame is out."""
        status = CLIENT_CLOSED
        error: UpstreamError | None = None
        stream, name = self.stream, self.target.provider.name
        limit = self.service.upstream_timeout
        deadline = self.ctx.started + limit
        held = b""  # frames read after the upstream's end marker
        mark = 0.0  # when the journal's next progress mark is due (0: the stream is not journaled yet)
        try:
            rename = self.rename
            frame = self._first
            if frame is not None:
                self.ttft = self.ctx.elapsed_ms()
            try:
                while frame is not None:
                    if rename is not None:
                        frame = rename_model(frame, rename)
                    if stream.finished:
                        held += frame
                    else:
                        if not mark:
                            mark = self._journal_open()
                        yield frame
                        now = time.perf_counter()
                        if now > mark:
                            mark = now + MARK_INTERVAL
                            self.service.billing.stream_progress(self.ctx, stream.chunks)
                        if now > deadline:
                            raise UpstreamTimeoutError(f"{name}: the stream exceeded the {limit:g} s limit")
                    frame = await anext(self._frames, None)
                if not stream.finished:
                    raise UpstreamBadResponseError(f"{name}: the upstream stream was cut short")
            except UpstreamError as err:
                error, status = err, err.status
                self._settle(status, error)  # the row is journaled before the stream's last frames
                if held:
                    yield held
                self.last = True
                yield stream.failure_event(err) if stream.native else error_frame(err) + DONE
                return
            if not stream.native:  # a native stream ends with the upstream's own last event
                if stream.usage is None:
                    held += encode_data(orjson.dumps(self._usage_chunk()))
                held += DONE
            self.last = True
            status = 200
            self._settle(status, None)  # the row is journaled before the final frame goes out
            yield held
        finally:
            self._settle(status, error)

    def is_last(self) -> bool:
        return self.last

    def _journal_open(self) -> float:
        """Journal the stream as its first frame goes out; returns when its first progress mark is due."""
        usage = self.stream.usage
        # Only a crash replay reads it: a byte count (a token per 4 bytes), not the tokenizer on every stream.
        prompt = (
            usage.prompt_tokens if usage is not None else len(orjson.dumps(self.req.body["messages"])) // 4
        )
        self.service.billing.stream_opened(self.ctx, self.target, prompt, self.attempts, self.ttft)
        return time.perf_counter() + MARK_INTERVAL

    async def abandon(self) -> None:
        self._settle(CLIENT_CLOSED, None)

    def _settle(self, status: int, error: UpstreamError | None) -> None:
        if self.settled:
            return
        self.settled = True
        self.stream.close()
        usage = self.stream.usage or estimate_usage(self.req, self.stream.text(), self.target.model)
        health, key = self.service.router.health, self.target.key
        if status == 200:
            took = self.ctx.elapsed_ms() - (self.ttft or 0)
            waited = (self.attempt_started - self.ctx.started) * 1000
            health.succeeded(key, (self.ttft or 0.0) - waited, usage.completion_tokens, took / 1000)
        elif error is not None and error.retryable:
            health.failed(key)
        else:
            health.released(key)
        self.service.billing.finish(
            self.ctx,
            self.reservation,
            status=status,
            model=self.target.model.id,
            target=self.target,
            usage=usage,
            error=error,
            error_code="CLIENT_DISCONNECTED" if status == CLIENT_CLOSED else None,
            stream=True,
            attempts=self.attempts,
            ttft_ms=self.ttft,
        )

    def _usage_chunk(self) -> dict[str, Any]:
        """The final usage chunk, counted locally, for upstreams that ignore ``include_usage``."""
        stream = self.stream
        usage = estimate_usage(self.req, stream.text(), self.target.model)
        stream.usage = usage
        return {
            "id": stream.meta.get("id", "chatcmpl-" + self.ctx.request_id),
            "object": "chat.completion.chunk",
            "created": stream.meta.get("created", int(time.time())),
            "model": stream.meta.get("model", self.target.deployment.model),
            "choices": [],
            "usage": usage.to_openai(),
        }
