"""The embeddings pipeline: authenticate → validate → route → admit → attempt → settle.

The same stages as chat (``Pipeline``): the request is routed like a chat request (fallback models and
provider preferences included), reserves its input tokens' cost, tries the deployments in order, and is
billed per input token (the upstream's count, or a local count marked estimated when it sends none).
Exactly one usage row per request, with endpoint ``embeddings``.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from tollgate.accounts.balances import Reservation
from tollgate.errors import TollgateError, UpstreamError
from tollgate.protocol.chat import ChatRequest
from tollgate.protocol.embeddings import EmbeddingsRequest, parse_embeddings_request
from tollgate.providers.usage import Usage
from tollgate.routing.capabilities import fit_embeddings
from tollgate.routing.catalog import Target
from tollgate.services.completions import parse_json
from tollgate.services.context import JsonReply, RequestContext
from tollgate.services.pipeline import Pipeline, final_failure


class EmbeddingsService(Pipeline):
    async def embeddings(self, ctx: RequestContext, raw: bytes) -> JsonReply:
        """``POST /v1/embeddings``: the upstream's answer goes back unchanged, with ``usage`` always filled."""
        reservation: Reservation | None = None
        model: str | None = None
        try:
            await self._authenticate(ctx)
            req = parse_embeddings_request(parse_json(raw))
            model = req.model
            # The router only reads the model and the routing preferences of the body.
            targets = fit_embeddings(self._plan(ctx, ChatRequest(req.body, req.model, False, None)))
            reservation = await self.billing.admit(ctx, targets, len(raw) // 3 + 16, 0)
            reply = await self._attempt(ctx, req, targets, reservation)
            self._admitted(ctx, reply)
            return reply
        except TollgateError as err:
            self._failed(ctx, reservation, model, err)
            raise
        except asyncio.CancelledError:
            self._cancelled(ctx, reservation, model)
            raise
        except Exception as exc:
            raise self._unexpected(ctx, reservation, model, exc) from None

    async def _attempt(
        self,
        ctx: RequestContext,
        req: EmbeddingsRequest,
        targets: list[Target],
        reservation: Reservation | None,
    ) -> JsonReply:
        attempts = self._attempts(ctx, targets)
        health = self.router.health
        async for target in attempts.targets():
            began = time.perf_counter()
            try:
                result = await target.provider.embeddings(
                    req.body, target.deployment.model, self._remaining(ctx)
                )
            except UpstreamError as err:
                attempts.failed(target, self._past_deadline(ctx, err, target))
                continue
            except BaseException:
                health.released(target.key)
                raise
            health.succeeded(target.key, (time.perf_counter() - began) * 1000)
            body, usage = result.body, result.usage
            if usage is None:
                usage = Usage(prompt_tokens=req.count_tokens(), estimated=True)
                result.data["usage"] = {
                    "prompt_tokens": usage.prompt_tokens,
                    "total_tokens": usage.prompt_tokens,
                }
                body = orjson.dumps(result.data)
            self.billing.finish(
                ctx,
                reservation,
                status=200,
                model=target.model.id,
                target=target,
                usage=usage,
                attempts=attempts.count,
            )
            return JsonReply(body, self._headers(ctx, target, attempts.count))
        raise final_failure(attempts.errors)
