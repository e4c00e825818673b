"""The chat-completions pipeline: authenticate → validate → admit → route → attempt → relay → settle.

``POST /v1/responses`` runs through it too: translated onto chat completions, except on targets whose
upstream serves the Responses API itself (``NativeRequest``), which get the request as the client sent it;
so does legacy ``POST /v1/completions`` (``NativeRequest(api="completions")``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from tollgate.accounts.balances import Reservation
from tollgate.errors import (
    TollgateError,
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)
from tollgate.protocol.chat import ChatRequest, parse_chat_request
from tollgate.protocol.responses_output import responses_usage
from tollgate.providers.base import ChatResult, ChatStream
from tollgate.providers.openai_responses import output_text
from tollgate.routing.auto.chooser import selection_headers
from tollgate.routing.capabilities import fit_chat
from tollgate.routing.catalog import Target
from tollgate.services.admission import prompt_estimate
from tollgate.services.cache import Lookup, ResponseCache
from tollgate.services.context import JsonReply, RequestContext, StreamReply
from tollgate.services.pipeline import Pipeline, final_failure
from tollgate.services.request_log import RequestLogger
from tollgate.services.stream_relay import StreamRelay, estimate_usage
from tollgate.services.stream_usage import deliver_usage, usage_mode

log = logging.getLogger("tollgate.completions")

NATIVE_HEADER = "X-Tollgate-Upstream-API"  # "responses"/"completions": the upstream's own answer to that API


@dataclass(slots=True)
class NativeRequest:
    """A Responses API request as the client sent it, for the targets whose upstream serves ``/responses``
    (``Provider.serves(api)``); the others get the translated chat request. ``refusal`` is set when only
    native targets can serve it (stored state): the 400 when none is in the plan."""

    body: dict[str, Any] = field(default_factory=dict)
    refusal: ValidationError | None = None
    api: str = "responses"  # or "completions": legacy ``/completions`` (``Provider.serves``)

    def narrow(self, targets: list[Target]) -> list[Target]:
        if self.refusal is None:
            return targets
        native = [t for t in targets if t.provider.serves(self.api)]
        if not native:
            raise self.refusal
        return native

    def strip(self, fields: set[str]) -> None:
        """Remove the gateway's own fields (routing preferences, ``cache``) consumed from the chat request."""
        for name in fields:
            self.body.pop(name, None)


# Deepest nesting a request body may have: orjson writes at most 255 levels, and the gateway wraps a body in a
# few levels of its own (translations, request logs) before writing it again.
MAX_JSON_DEPTH = 128


def parse_json(raw: bytes) -> Any:
    """The decoded body; 400 when it is not JSON or is nested deeper than ``MAX_JSON_DEPTH``."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"The request body is not valid JSON: {exc}.") from None
    # Counting brackets is a byte scan; only a body with that many of them is walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth(data) > MAX_JSON_DEPTH:
        raise ValidationError(f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.")
    return data


def json_depth(value: Any, stop: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``value``'s arrays and objects nest (the walk stops once past ``stop``)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def cost_text(cost: Decimal) -> str:
    """A cost as a plain decimal number (no exponent, no trailing zeros): ``"0.000042"``, ``"0"``."""
    text = format(cost, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def with_cost(body: bytes, data: dict[str, Any], cost: Decimal) -> bytes:
    """``body`` with ``usage.cost`` (a JSON number, as OpenRouter returns it): the price of the request at
    the model's prices (before any free monthly allowance). Spliced in at the top-level ``usage`` key, so
    the rest of the upstream's bytes stay as they were."""
    if not isinstance(data.get("usage"), dict):
        return body
    number = cost_text(cost).encode()
    at = body.rfind(b'"usage":')
    if at >= 0:
        brace = at + 8 + (body[at + 8 : at + 9] == b" ")
        if body[brace : brace + 1] == b"{":
            rest = body[brace + 1 :].lstrip()
            sep = b"" if rest.startswith(b"}") else b","
            return body[: brace + 1] + b'"cost":' + number + sep + rest
    data["usage"]["cost"] = orjson.Fragment(number)
    return orjson.dumps(data)


class CompletionService(Pipeline):
    cache: ResponseCache | None = None  # set at start-up (app.py); None: no response cache
    request_log: RequestLogger | None = None  # set at start-up (app.py); None: no request logs

    def _logged(
        self, ctx: RequestContext, raw: bytes, reply: JsonReply | StreamReply
    ) -> JsonReply | StreamReply:
        return self.request_log.reply(ctx, raw, reply) if self.request_log is not None else reply

    def _cache_hit(self, ctx: RequestContext, req: ChatRequest, lookup: Lookup) -> JsonReply | StreamReply:
        """A cached answer: no limits counted, no reservation, nothing billed; the row is marked cached."""
        assert self.cache is not None
        self.billing.finish(ctx, None, status=200, model=req.model, stream=req.stream, cached=True)
        return self.cache.replay(ctx, lookup)

    async def chat(self, ctx: RequestContext, raw: bytes) -> JsonReply | StreamReply:
        """``POST /v1/chat/completions``: the body is already OpenAI's chat shape; a stream's usage reaches
        the client as its ``stream_options`` asked (``stream_usage.py``)."""
        return await self.handle(ctx, raw, parse_json, client_usage=True)

    async def handle(
        self,
        ctx: RequestContext,
        raw: bytes,
        translate: Callable[[bytes], Any],
        native: NativeRequest | None = None,
        *,
        client_usage: bool = False,
    ) -> JsonReply | StreamReply:
        """The whole pipeline for any OpenAI-chat-shaped request. ``translate`` turns the raw body into an
        OpenAI chat-completions body (identity for chat; Anthropic Messages or Responses requests for the
        other ingresses); its ``ValidationError`` is the client's 400. The reply is in OpenAI chat shape
        (JSON body or SSE frames); the ingress converts it back to its own protocol, except a reply with
        the ``NATIVE_HEADER``: a target that serves ``native`` (filled in by ``translate``) answered it."""
        reservation: Reservation | None = None
        model: str | None = None
        try:
            await self._authenticate(ctx)
            req = parse_chat_request(translate(raw))
            sent = set(req.body)
            auto = await self.router.resolve_auto(req)  # model "auto": the automatic router picks one
            model = req.model
            targets = fit_chat(req, self._plan(ctx, req))  # the catalogue's limits: 400 if none fits
            if native is not None:
                targets = native.narrow(targets)
                if not any(t.provider.serves(native.api) for t in targets):
                    native = None  # every target is reached through chat completions
            lookup = await self.cache.lookup(ctx, req) if self.cache is not None else Lookup()
            if native is not None:
                native.strip(sent - set(req.body))
                lookup = Lookup()  # the cache holds chat-shaped answers only
            if lookup.hit is not None:
                hit = self._cache_hit(ctx, req, lookup)
                # The key's rate-limit headers as they stand: a hit counts nothing.
                hit.headers.update(await self.billing.limit_headers(ctx))
                if client_usage and isinstance(hit, StreamReply):
                    hit = deliver_usage(hit, usage_mode(req.body))
                return self._logged(ctx, raw, hit)
            max_output = req.max_tokens or targets[0].model.max_output_length
            reservation = await self.billing.admit(ctx, targets, prompt_estimate(raw, req.body), max_output)
            reply: JsonReply | StreamReply
            if req.stream:
                reply = await self._stream(ctx, req, targets, reservation, native)
            else:
                reply = await self._json(ctx, req, targets, reservation, native)
            if self.cache is not None:
                reply = self.cache.keep(lookup, reply)
            if auto is not None:
                reply.headers.update(selection_headers(auto))
            if client_usage and isinstance(reply, StreamReply):
                reply = deliver_usage(reply, usage_mode(req.body))
            return self._logged(ctx, raw, self._admitted(ctx, reply))
        except TollgateError as err:
            self._failed(ctx, reservation, model, err)
            if self.request_log is not None:
                self.request_log.failed(ctx, raw)
            raise
        except asyncio.CancelledError:
            self._cancelled(ctx, reservation, model)
            raise
        except Exception as exc:
            raise self._unexpected(ctx, reservation, model, exc) from None

    async def _json(
        self,
        ctx: RequestContext,
        req: ChatRequest,
        targets: list[Target],
        reservation: Reservation | None,
        native: NativeRequest | None,
    ) -> JsonReply:
        attempts = self._attempts(ctx, targets)
        health = self.router.health
        async for target in attempts.targets():
            began = time.perf_counter()
            call = native if native is not None and target.provider.serves(native.api) else None
            try:
                upstream, left = target.deployment.model, self._remaining(ctx)
                result: ChatResult
                if call is not None and call.api == "completions":
                    result = await target.provider.completions(call.body, upstream, left)
                elif call is not None:
                    result = await target.provider.responses(call.body, upstream, left)
                else:
                    result = await target.provider.chat(req.body, upstream, left)
            except UpstreamError as err:
                attempts.failed(target, self._past_deadline(ctx, err, target))
                continue
            except BaseException:
                health.released(target.key)
                raise
            took = time.perf_counter() - began
            body = result.body
            usage = result.usage
            if usage is None and call is not None and call.api == "completions":
                texts = [c.get("text") or "" for c in result.data["choices"] if isinstance(c, dict)]
                usage = estimate_usage(req, "".join(texts), target.model)
                result.data["usage"] = usage.to_openai()
                body = orjson.dumps(result.data)
            elif usage is None and call is not None:
                usage = estimate_usage(req, output_text(result.data), target.model)
                result.data["usage"] = responses_usage(usage)
                body = orjson.dumps(result.data)
            elif usage is None:
                message = (result.data.get("choices") or [{}])[0].get("message") or {}
                usage = estimate_usage(req, message.get("content") or "", target.model)
                result.data["usage"] = usage.to_openai()
                body = orjson.dumps(result.data)
            health.succeeded(target.key, took * 1000, usage.completion_tokens, took)
            if target.model.id != req.model:
                # A fallback model served: the body names it, as OpenRouter does.
                result.data["model"] = target.model.id
                body = orjson.dumps(result.data)
            row = self.billing.finish(
                ctx,
                reservation,
                status=200,
                model=target.model.id,
                target=target,
                usage=usage,
                attempts=attempts.count,
            )
            headers = self._headers(ctx, target, attempts.count)
            # JSON replies only: a stream's headers leave before its usage is known (its last chunk has it).
            headers["X-Tokens-Used"] = str(usage.prompt_tokens + usage.completion_tokens)
            headers["X-Tollgate-Cost"] = cost_text(row.cost)
            body = with_cost(body, result.data, row.cost)
            if call is not None:
                headers[NATIVE_HEADER] = call.api
            return JsonReply(body, headers)
        raise final_failure(attempts.errors)

    async def _stream(
        self,
        ctx: RequestContext,
        req: ChatRequest,
        targets: list[Target],
        reservation: Reservation | None,
        native: NativeRequest | None,
    ) -> StreamReply:
        attempts = self._attempts(ctx, targets)
        async for target in attempts.targets():
            stream: ChatStream | None = None
            began = time.perf_counter()
            call = native if native is not None and target.provider.serves(native.api) else None
            try:
                remaining = self._remaining(ctx)
                async with asyncio.timeout(remaining):
                    upstream = target.deployment.model
                    if call is not None and call.api == "completions":
                        stream = await target.provider.completions_stream(call.body, upstream, remaining)
                    elif call is not None:
                        stream = await target.provider.responses_stream(call.body, upstream, remaining)
                    else:
                        stream = await target.provider.chat_stream(req.body, upstream, remaining)
                    frames = aiter(stream)
                    first = await anext(frames, None)
                if first is None and not stream.finished:
                    raise UpstreamBadResponseError(f"{target.provider.name}: the upstream stream ended empty")
            except (UpstreamError, TimeoutError) as exc:
                if stream is not None:
                    stream.close()
                err = self._past_deadline(
                    ctx,
                    exc
                    if isinstance(exc, UpstreamError)
                    else UpstreamTimeoutError(f"{target.provider.name}: no first token in time"),
                    target,
                )
                attempts.failed(target, err)
                continue
            except BaseException:
                if stream is not None:
                    stream.close()
                self.router.health.released(target.key)
                raise
            relay = StreamRelay(self, ctx, req, target, reservation, stream, frames, first, attempts.count)
            relay.attempt_started = began
            if call is None and target.model.id != req.model:
                relay.rename = target.model.id  # a fallback model served: its chunks name it
            headers = self._headers(ctx, target, attempts.count)
            if call is not None:
                headers[NATIVE_HEADER] = call.api
            return StreamReply(relay.frames(), headers, abandon=relay.abandon, last=relay.is_last)
        raise final_failure(attempts.errors)
