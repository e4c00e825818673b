"""Admit and settle: the accounting stages every endpoint shares.

``admit`` checks the key's rate limits and reserves the most a request can cost; ``finish`` corrects the
rate-limit token count, releases the concurrency slot, settles the reservation to the actual cost and hands
exactly one usage row to the writer, for successes and failures alike.

With a monthly free allowance (``accounts/allowance.py``), a request's tokens are counted against it when it
settles: the part within the allowance is free, so the reservation (taken at the full price) settles to the
cost of the rest, and the usage row carries that cost. Counting may need Redis, so ``finish`` then settles in
a task of its own (``drain`` waits for those at shutdown, before the usage writer stops).

Settling charges the actual cost, capped so the account never goes below ``-grace`` whatever an upstream
reports (``accounts/balances.py``); the row's cost is what was charged. On Redis, a cost above what the
request reserved needs Redis's answer first, so that row too is written from a task once it came.

A request made of several model calls (an LLM classification batch: one call per text) gives each call a
context whose ``rows`` collector takes the call's row instead of the writer; each call is still admitted
and settled on its own. ``finish_collected`` then writes the request's one row, merged by ``merged_row``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tollgate.accounts.allowance import FreeAllowance, billable
from tollgate.accounts.balances import BalanceLedger, Reservation
from tollgate.accounts.journal import StreamOpen
from tollgate.accounts.pricing import cost_of, max_cost
from tollgate.accounts.ratelimit import Limits, LocalRateLimiter, RateLimiter, limits_for
from tollgate.accounts.usage import UsageWriter
from tollgate.errors import PermissionDeniedError, TollgateError
from tollgate.providers.usage import Usage
from tollgate.routing.catalog import Target
from tollgate.services.context import RequestContext, UsageCollector
from tollgate.settings import Pricing, TierConfig
from tollgate.storage.base import UsageRow
from tollgate.storage.outage import database_errors

log = logging.getLogger("tollgate.billing")

CLIENT_CLOSED = 499


def request_fields(ctx: RequestContext) -> dict[str, Any]:
    """The usage-row fields that come from the request itself: id, endpoint, timing and who sent it."""
    principal = ctx.principal
    return {
        "request_id": ctx.request_id,
        "endpoint": ctx.endpoint,
        "latency_ms": ctx.elapsed_ms(),
        "created_at": ctx.created_at,
        "account_id": principal.account_id if principal else None,
        "key_id": principal.key_id if principal else None,
    }


def merged_row(ctx: RequestContext, rows: Sequence[UsageRow]) -> UsageRow:
    """The one row of a request whose model calls left ``rows`` (in the order they settled).

    Tokens, cost and attempts are the calls' sums, so the row's cost is what the calls debited. The status
    is 200 when any call succeeded; when every call failed, the first failure's status and error code; with
    no call settled at all (the request was cancelled before any ended), 499. ``model``, ``provider`` and
    ``upstream_model`` are those of the successful calls (of all calls, when none succeeded); when the calls
    differ (fallbacks), the value that served the most calls, the first to settle on a tie.
    """
    ok = [r for r in rows if r.status == 200]
    if ok:
        status, error_code = 200, None
    elif rows:
        status, error_code = rows[0].status, rows[0].error_code
    else:
        status, error_code = CLIENT_CLOSED, "CLIENT_DISCONNECTED"
    served = ok or rows
    return UsageRow(
        **request_fields(ctx),
        status=status,
        model=_most_common([r.model for r in served]),
        provider=_most_common([r.provider for r in served]),
        upstream_model=_most_common([r.upstream_model for r in served]),
        error_code=error_code,
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cached_tokens=sum(r.cached_tokens for r in rows),
        reasoning_tokens=sum(r.reasoning_tokens for r in rows),
        cost=sum((r.cost for r in rows), Decimal(0)),
        estimated=any(r.estimated for r in rows),
        attempts=sum(r.attempts for r in rows),
    )


def models_refused(refused: list[str], allowed: frozenset[str]) -> PermissionDeniedError:
    """The 403 for a key limited to ``allowed``: it names the key's own models (at most 20), never the
    catalogue's."""
    return PermissionDeniedError(
        f"This API key may not use {_some(refused)}; it is limited to {_some(sorted(allowed))}.",
        param="model",
    )


def _some(names: list[str], shown: int = 20) -> str:
    """``a, b, c`` — at most ``shown`` names, then ``and N more`` (a key may allow hundreds of models)."""
    if not names:
        return "no models"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _most_common(values: list[str | None]) -> str | None:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


class Billing:
    def __init__(
        self,
        ledger: BalanceLedger,
        writer: UsageWriter,
        limiter: RateLimiter | None = None,
        tiers: Mapping[str, TierConfig] | None = None,
        default_tier: str | None = None,
        allowance: FreeAllowance | None = None,
    ) -> None:
        self.ledger = ledger
        self.writer = writer
        self.limiter: RateLimiter = limiter or LocalRateLimiter()
        self.tiers: Mapping[str, TierConfig] = tiers or {}
        self.default_tier = default_tier
        self.allowance = allowance
        self._tasks: set[asyncio.Task[Any]] = set()

    def limits(self, ctx: RequestContext) -> Limits:
        """The authenticated key's rate limits (its tier, or the default, with its own overrides)."""
        assert ctx.principal is not None
        return limits_for(ctx.principal, self.tiers, self.default_tier)

    async def limit_headers(self, ctx: RequestContext) -> dict[str, str]:
        """The key's ``X-RateLimit-*`` headers as they stand, counting nothing (a cache hit's)."""
        assert ctx.principal is not None
        return await self.limiter.peek(ctx.principal.key_id, self.limits(ctx))

    async def free_tokens_remaining(self, account_id: str, when: float) -> int | None:
        """``None`` when no free allowance is configured."""
        if self.allowance is None:
            return None
        return await self.allowance.remaining(account_id, when)

    async def admit(
        self,
        ctx: RequestContext,
        targets: list[Target],
        prompt_tokens: int,
        max_output: int,
        *,
        pricing: Pricing | None = None,
    ) -> Reservation | None:
        """``pricing`` prices work done without a catalogue target (local models); else the targets do."""
        assert ctx.principal is not None
        allowed = ctx.principal.allowed_models
        if allowed is not None:
            refused = sorted({t.model.id for t in targets} - allowed)
            if refused:
                raise models_refused(refused, allowed)
        if not self.writer.has_room:  # back-pressure: the usage writer is behind the database
            await self.writer.wait_for_room()
        limits = limits_for(ctx.principal, self.tiers, self.default_tier)
        ctx.grant = await self.limiter.acquire(ctx.principal.key_id, limits, prompt_tokens + max_output)
        prices = [pricing] if pricing is not None else [t.pricing for t in targets]
        amount = max(max_cost(prompt_tokens, max_output, p) for p in prices)
        with database_errors():  # an account's balance not yet in memory is loaded from the database
            return await self.ledger.reserve(ctx.principal.account_id, amount)

    def stream_opened(
        self, ctx: RequestContext, target: Target, prompt_tokens: int, attempts: int, ttft_ms: float | None
    ) -> None:
        """A stream's first frame is going out: journal what to bill should the process die mid-stream."""
        fields = request_fields(ctx)
        del fields["latency_ms"]
        self.writer.stream_opened(
            StreamOpen(
                **fields,
                model=target.model.id,
                provider=target.provider.name,
                upstream_model=target.deployment.model,
                prompt_tokens=prompt_tokens,
                pricing={k: str(v) for k, v in target.pricing.model_dump(exclude_none=True).items()},
                attempts=attempts,
                ttft_ms=ttft_ms,
            )
        )

    def stream_progress(self, ctx: RequestContext, chunks: int) -> None:
        self.writer.stream_progress(ctx.request_id, chunks)

    def finish(
        self,
        ctx: RequestContext,
        reservation: Reservation | None,
        *,
        status: int,
        model: str | None = None,
        target: Target | None = None,
        usage: Usage | None = None,
        error: TollgateError | None = None,
        error_code: str | None = None,
        stream: bool = False,
        attempts: int = 0,
        ttft_ms: float | None = None,
        pricing: Pricing | None = None,
        provider: str | None = None,
        cached: bool = False,
    ) -> UsageRow:
        ctx.settled = True
        if pricing is None and target is not None:
            pricing = target.pricing
        cost = cost_of(usage, pricing) if usage is not None and pricing is not None else Decimal(0)
        u = usage or Usage()
        tokens = u.prompt_tokens + u.completion_tokens
        free_counted = self.allowance is not None and ctx.principal is not None and tokens > 0
        charged: Decimal | None = cost
        if reservation is not None and not free_counted:
            charged = self.ledger.settle(reservation, cost)
        if ctx.grant is not None:
            self.limiter.settle(ctx.grant, u.prompt_tokens + u.completion_tokens)
        row = UsageRow(
            **request_fields(ctx),
            status=status,
            model=model,
            provider=target.provider.name if target else provider,
            upstream_model=target.deployment.model if target else None,
            stream=stream,
            error_code=error_code or (error.code if error else None),
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            cached_tokens=u.cached_tokens,
            reasoning_tokens=u.reasoning_tokens,
            cost=cost if charged is None else charged,
            estimated=u.estimated,
            cached=cached,
            attempts=attempts,
            ttft_ms=ttft_ms,
        )
        if free_counted or charged is None:
            if ctx.rows is None:  # durable before the reply, at the cost before the allowance or the cap
                self.writer.provisional(row)
            task = asyncio.get_running_loop().create_task(
                self._settle_free(row, u, pricing, reservation, ctx.rows)
                if free_counted
                else self._settle_excess(row, reservation, ctx.rows)
            )
            self._tasks.add(task)
            task.add_done_callback(self._done)
            if ctx.rows is not None:
                ctx.rows.pending.add(task)
                task.add_done_callback(ctx.rows.pending.discard)
            return row
        self._emit(row, ctx.rows)
        return row

    async def finish_collected(self, ctx: RequestContext, rows: UsageCollector) -> UsageRow:
        """Write the one row of a request whose model calls settled into ``rows`` (see ``merged_row``)."""
        row = merged_row(ctx, await rows.complete())
        self.writer.submit_nowait(row)
        return row

    def _emit(self, row: UsageRow, rows: UsageCollector | None) -> None:
        if rows is not None:
            rows.rows.append(row)
        else:
            self.writer.submit_nowait(row)

    async def _settle_free(
        self,
        row: UsageRow,
        usage: Usage,
        pricing: Pricing | None,
        reservation: Reservation | None,
        rows: UsageCollector | None,
    ) -> None:
        """Count the row's tokens against the month's allowance, then settle and write it at the rest's cost."""
        assert self.allowance is not None and row.account_id is not None
        try:
            free = await self.allowance.take(
                row.account_id, row.created_at, usage.prompt_tokens + usage.completion_tokens
            )
            if free and pricing is not None:
                row = dataclasses.replace(row, cost=cost_of(billable(usage, free), pricing))
        finally:
            if reservation is not None:
                charged = self.ledger.settle(reservation, row.cost)
                if charged is None:
                    charged = await self.ledger.settle_excess(reservation, row.cost)
                row = dataclasses.replace(row, cost=charged)
            self._emit(row, rows)

    async def _settle_excess(
        self, row: UsageRow, reservation: Reservation | None, rows: UsageCollector | None
    ) -> None:
        """A cost above the reservation on a shared ledger: the row carries what the account covered."""
        assert reservation is not None
        try:
            row = dataclasses.replace(row, cost=await self.ledger.settle_excess(reservation, row.cost))
        finally:
            self._emit(row, rows)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("deferred settle failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for settles still counting against the free allowance (at shutdown, before the writer)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
