"""What every endpoint's pipeline shares: who is calling, the usage row of a refused or failed request, the
rate-limit headers, the walk over the routing plan with its deadline, the error when every candidate
failed, and the reply headers. Each endpoint's service subclasses ``Pipeline`` and adds its own attempt and
relay (``completions.py``, ``embeddings.py``)."""

from __future__ import annotations

import logging
import time

from tollgate.accounts.balances import Reservation
from tollgate.accounts.keys import Authenticator
from tollgate.errors import (
    AuthenticationError,
    TollgateError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tollgate.protocol.chat import ChatRequest
from tollgate.routing.attempts import Attempts, RetryPolicy
from tollgate.routing.catalog import Target
from tollgate.routing.router import Router
from tollgate.services.billing import CLIENT_CLOSED, Billing, models_refused
from tollgate.services.context import JsonReply, RequestContext, StreamReply
from tollgate.storage.outage import database_errors, outage

log = logging.getLogger("tollgate.pipeline")


def final_failure(errors: list[UpstreamError]) -> UpstreamError:
    """The error a client sees when every candidate failed; it keeps each attempt's cause."""
    last = errors[-1]
    if len(errors) == 1:
        return last
    causes = "; ".join(e.message for e in errors)
    if all(isinstance(e, UpstreamUnavailableError) for e in errors):
        return UpstreamUnavailableError(f"No provider reachable ({causes})", attempts=errors)
    return type(last)(f"All {len(errors)} attempts failed: {causes}", headers=last.headers, attempts=errors)


class Pipeline:
    def __init__(
        self, router: Router, auth: Authenticator, billing: Billing, upstream_timeout: float
    ) -> None:
        self.router = router
        self.auth = auth
        self.billing = billing
        self.upstream_timeout = upstream_timeout
        self.retry = RetryPolicy(router.config)

    async def _authenticate(self, ctx: RequestContext) -> None:
        with database_errors():  # a key not in the cache is looked up in the database
            ctx.principal = await self.auth.from_headers(ctx.authorization, ctx.x_api_key)

    def _plan(self, ctx: RequestContext, req: ChatRequest) -> list[Target]:
        """The routing plan. A key limited to some models is refused any other model it names (fallbacks
        included) with a 403 that lists its own models, before the router could answer with the catalogue's
        (``Billing.admit`` still checks every target)."""
        allowed = ctx.principal.allowed_models if ctx.principal is not None else None
        if allowed is not None:
            fallbacks = req.body.get("models")
            named = [req.model, *(fallbacks if isinstance(fallbacks, list) else ())]
            refused = sorted({m for m in named if isinstance(m, str) and m not in allowed})
            if refused:
                raise models_refused(refused, allowed)
        return self.router.plan(req)

    def _admitted(self, ctx: RequestContext, reply: JsonReply | StreamReply) -> JsonReply | StreamReply:
        """The reply, with the rate-limit headers of its admission."""
        if ctx.grant is not None:
            reply.headers.update(ctx.grant.headers())
        return reply

    def _failed(
        self, ctx: RequestContext, reservation: Reservation | None, model: str | None, err: TollgateError
    ) -> None:
        """Settle a request that ends with ``err`` (refused or failed): its one usage row, nothing billed.

        A request refused for its key (missing, unknown, wrong, revoked) leaves no row: it belongs to no
        account, and a flood of them must not become a flood of writes; ``Authenticator.invalid_attempts``
        counts them instead."""
        if ctx.principal is None and isinstance(err, AuthenticationError):
            ctx.settled = True
            return
        if ctx.grant is not None:
            err.headers = {**ctx.grant.headers(), **err.headers}
        self.billing.finish(
            ctx, reservation, status=err.status, model=model, error=err, attempts=len(err.attempts) or 0
        )

    def _unexpected(
        self, ctx: RequestContext, reservation: Reservation | None, model: str | None, exc: Exception
    ) -> TollgateError:
        """Settle a request that ``exc`` ended (not a ``TollgateError``) and return what the client sees: a
        database outage's 503, else a 500 for a defect, logged once. Either way the request leaves its one
        usage row and releases its reservation and concurrency slot, unless it had already settled."""
        err: TollgateError | None = outage(exc)  # the database, reached somewhere on the way
        if err is None:
            log.error("request %s failed inside the gateway", ctx.request_id, exc_info=exc)
            err = TollgateError("Internal error in the gateway; it has been logged. Retry the request.")
        if not ctx.settled:
            self._failed(ctx, reservation, model, err)
        return err

    def _cancelled(self, ctx: RequestContext, reservation: Reservation | None, model: str | None) -> None:
        """Settle a request whose task was cancelled (a server shutting down past its grace period, a caller
        that gave up): nothing was delivered, so nothing is billed, but it leaves its row (499) and releases
        its reservation, unless it had already settled."""
        if not ctx.settled:
            self.billing.finish(
                ctx, reservation, status=CLIENT_CLOSED, model=model, error_code="CLIENT_DISCONNECTED"
            )

    def _headers(self, ctx: RequestContext, target: Target, attempts: int) -> dict[str, str]:
        return {
            "X-Request-ID": ctx.request_id,
            "X-Tollgate-Provider": target.provider.name,
            "X-Tollgate-Model": target.model.id,
            "X-Tollgate-Upstream-Model": target.deployment.model,
            "X-Tollgate-Attempts": str(attempts),
        }

    def _past_deadline(self, ctx: RequestContext, err: UpstreamError, target: Target) -> UpstreamError:
        """A timeout caused by the overall limit is reported against that limit."""
        if (
            isinstance(err, UpstreamTimeoutError)
            and time.perf_counter() - ctx.started >= self.upstream_timeout * 0.98
        ):
            return UpstreamTimeoutError(
                f"{target.provider.name}: the upstream did not answer within the {self.upstream_timeout:g} s limit"
            )
        return err

    def _remaining(self, ctx: RequestContext) -> float:
        left = self.upstream_timeout - (time.perf_counter() - ctx.started)
        if left <= 0:
            raise UpstreamTimeoutError(f"The upstream did not answer within {self.upstream_timeout:g} s")
        return left

    def _attempts(self, ctx: RequestContext, targets: list[Target]) -> Attempts:
        limit = self.upstream_timeout
        return Attempts(
            targets, self.retry, self.router.health, lambda: limit - (time.perf_counter() - ctx.started)
        )
