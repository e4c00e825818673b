"""The batch worker: claims work from the database, classifies, checkpoints.

A worker repeats one step: take a job-level task (split a started job's input into chunks; assemble a job's
results once every chunk is done), else one chunk. A chunk is read line by line from the object store,
validated, classified on the local model, billed through ``Billing`` (admitted, then settled into a usage
row of its own, request id ``<job id>-<chunk index>``), and its results written as one object; then one
transaction (``JobStore.checkpoint``) commits the chunk's usage row with the account's debit, the job's
counters and the chunk's done mark. Killed at any point before that commit, the chunk is redone by whoever
claims it after its lease expires: nothing lost, nothing counted or billed twice.

Leases are renewed while work runs (every third of ``lease_seconds``). Every ``tollgate serve`` runs
``batch.workers`` of these as background tasks; ``tollgate worker`` runs them alone (any number of machines,
on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import orjson

from tollgate.accounts.keys import Principal
from tollgate.classify.request import Spec
from tollgate.errors import InsufficientBalanceError, RateLimitError, TollgateError
from tollgate.jobs.lines import Line, iter_lines, parse_line, split
from tollgate.jobs.objects import ObjectStore, concatenate
from tollgate.jobs.store import ChunkClaim, ChunkOutcome, JobRecord, JobStore
from tollgate.local.embedder import MODEL_NAME
from tollgate.providers.usage import Usage
from tollgate.services.billing import Billing
from tollgate.services.context import RequestContext, UsageCollector
from tollgate.settings import BatchConfig, Pricing
from tollgate.storage.base import UsageRow

log = logging.getLogger("tollgate.jobs")

SPLIT_BATCH = 500  # chunk rows inserted per transaction while splitting
MAX_ATTEMPTS = 5  # claims of one chunk before its failure fails the job (a restart tries again)


class Scorer(Protocol):
    """What a worker classifies with: ``classify.local.LocalClassifier`` (the bundled model)."""

    async def count_tokens(self, texts: list[str]) -> list[int]: ...

    async def classify(self, spec: Spec, texts: list[str]) -> list[dict[str, Any]]: ...


def part_key(job_id: str, idx: int) -> str:
    return f"jobs/{job_id}/parts/{idx:08d}.ndjson"


def results_key(job_id: str) -> str:
    return f"jobs/{job_id}/results.ndjson"


def request_id(job_id: str, idx: int) -> str:
    """The usage row of a chunk: the same on every attempt, so a chunk can never leave two."""
    return f"{job_id}-{idx:06d}"


def principal_of(key: Any) -> Principal:
    return Principal(
        key.id,
        key.account_id,
        key.name,
        tier=key.tier,
        rpm=key.rpm,
        tpm=key.tpm,
        concurrency=key.concurrency,
        cache=key.cache,
    )


@contextlib.asynccontextmanager
async def renewing(renew: Callable[[float], Awaitable[bool]], lease: float) -> AsyncIterator[None]:
    """Keep a lease alive while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await renew(time.time() + lease):
                    log.warning("batch lease lost; the work will be committed by its new holder")
                    return
            except Exception:
                log.exception("could not renew a batch lease")

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Worker:
    def __init__(
        self,
        jobs: JobStore,
        objects: ObjectStore,
        billing: Billing,
        classifier: Scorer,
        config: BatchConfig,
        price: Decimal,
    ) -> None:
        self.jobs = jobs
        self.objects = objects
        self.billing = billing
        self.classifier = classifier
        self.config = config
        self.pricing = Pricing(prompt=price)
        self.chunks_done = 0

    async def run(self) -> None:
        """Work until cancelled; sleep ``poll_interval`` when there is nothing to do."""
        while True:
            try:
                busy = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch worker step failed")
                busy = False
            if not busy:
                await asyncio.sleep(self.config.poll_interval)

    async def step(self) -> bool:
        """Do one piece of work; ``False`` when there was none."""
        lease = self.config.lease_seconds
        claimed = await self.jobs.claim_job(time.time(), lease)
        if claimed is not None:
            job, token = claimed

            async def renew(until: float) -> bool:
                return await self.jobs.renew_job(job.id, token, until)

            async with renewing(renew, lease):
                if job.chunks_total is None:
                    await self._split(job, token)
                else:
                    await self._assemble(job, token)
            return True
        claim = await self.jobs.claim_chunk(time.time(), lease)
        if claim is None:
            return False

        async def renew_chunk(until: float) -> bool:
            return await self.jobs.renew_chunk(claim, until)

        async with renewing(renew_chunk, lease):
            await self._chunk(claim)
        return True

    # job-level tasks --------------------------------------------------------------------------------------
    async def _split(self, job: JobRecord, token: str) -> None:
        if not await self.jobs.clear_chunks(job.id, token):
            return
        pending: list[Any] = []
        count = lines = 0
        async for chunk in split(self.objects.read(job.input_key), self.config.chunk_lines):
            pending.append((count, chunk))
            count += 1
            lines += chunk.lines
            if len(pending) >= SPLIT_BATCH:
                if not await self.jobs.add_chunks(job.id, token, pending):
                    return
                pending = []
        if pending and not await self.jobs.add_chunks(job.id, token, pending):
            return
        if count == 0:
            await self.jobs.fail(
                job.id, _error("INVALID_REQUEST", "The input file has no lines"), time.time()
            )
            return
        await self.jobs.split_done(job.id, token, count, lines)
        log.info("batch %s: %d lines in %d chunks", job.id, lines, count)

    async def _assemble(self, job: JobRecord, token: str) -> None:
        assert job.chunks_total is not None
        parts = [part_key(job.id, i) for i in range(job.chunks_total)]
        await concatenate(self.objects, results_key(job.id), parts)
        if await self.jobs.complete(job.id, token, time.time()):
            await self.objects.delete_prefix(f"jobs/{job.id}/parts")
            log.info("batch %s completed", job.id)

    # chunks -----------------------------------------------------------------------------------------------
    async def _chunk(self, claim: ChunkClaim) -> None:
        job = claim.job
        key = await self.jobs.key(job.key_id)
        if key is None or key.revoked_at is not None:
            await self.jobs.release_chunk(claim)
            message = "The API key that started this job has been revoked; start it again with an active key"
            await self.jobs.fail(job.id, _error("INVALID_API_KEY", message), time.time())
            return
        parsed: list[Line | str] = []
        number = claim.first_line
        async for raw in iter_lines(self.objects.read(job.input_key, claim.start, claim.end)):
            parsed.append(parse_line(raw, number))
            number += 1
        try:
            results, row = await self._classify(claim, principal_of(key), parsed)
        except RateLimitError as err:
            wait = float(err.headers.get("Retry-After", self.config.retry_seconds))
            await self.jobs.release_chunk(claim, time.time() + wait)
            return
        except InsufficientBalanceError as err:
            await self.jobs.release_chunk(claim)
            last = claim.first_line + claim.lines - 1
            message = (
                f"The balance does not cover lines {claim.first_line}-{last}; add credit and start the job "
                "again: it resumes from there"
            )
            await self.jobs.fail(job.id, _error(err.code, message), time.time())
            return
        except Exception as err:
            message = err.message if isinstance(err, TollgateError) else "internal error (logged)"
            log.warning(
                "batch %s chunk %d failed: %r",
                job.id,
                claim.idx,
                err,
                exc_info=not isinstance(err, TollgateError),
            )
            if claim.attempts < MAX_ATTEMPTS:
                await self.jobs.release_chunk(claim, time.time() + self.config.retry_seconds)
                return
            await self.jobs.release_chunk(claim)
            last = claim.first_line + claim.lines - 1
            summary = f"Lines {claim.first_line}-{last} failed {claim.attempts} times: {message}"
            await self.jobs.fail(job.id, _error(getattr(err, "code", "INTERNAL_ERROR"), summary), time.time())
            return
        await self.objects.put(
            part_key(job.id, claim.idx), b"".join(orjson.dumps(r) + b"\n" for r in results)
        )
        failed = sum(1 for r in results if "error" in r)
        outcome = ChunkOutcome(len(results) - failed, failed, row.prompt_tokens if row else 0)
        try:
            committed = await self.jobs.checkpoint(claim, outcome, row)
        finally:
            if row is not None and row.account_id and row.cost:
                # The row's debit is in the database now (or, if the checkpoint did not commit, never will
                # be): either way it is no longer the ledger's to hold; its next refresh reads the truth.
                self.billing.ledger.flushed({row.account_id: row.cost})
        if committed:
            self.chunks_done += 1
        else:
            log.info(
                "batch %s chunk %d: not committed (job cancelled or lease taken over)", job.id, claim.idx
            )

    async def _classify(
        self, claim: ChunkClaim, principal: Principal, parsed: list[Line | str]
    ) -> tuple[list[dict[str, Any]], UsageRow | None]:
        """Each line's result, in order, and the chunk's usage row (``None``: no line to classify)."""
        spec = Spec.from_json(claim.job.spec)
        good = [p for p in parsed if isinstance(p, Line)]
        scored: list[dict[str, Any]] = []
        tokens: list[int] = []
        row: UsageRow | None = None
        if good:
            texts = [p.text for p in good]
            tokens = await self.classifier.count_tokens(texts)
            ctx = RequestContext(
                endpoint="batch",
                request_id=request_id(claim.job.id, claim.idx),
                principal=principal,
                rows=UsageCollector(),
            )
            usage = Usage(prompt_tokens=sum(tokens))
            reservation = await self.billing.admit(ctx, [], usage.prompt_tokens, 0, pricing=self.pricing)
            try:
                scored = await self.classifier.classify(spec, texts)
            except BaseException:
                self.billing.finish(ctx, reservation, status=503, error_code="BATCH_CHUNK_FAILED")
                raise
            self.billing.finish(
                ctx,
                reservation,
                status=200,
                model=MODEL_NAME,
                usage=usage,
                pricing=self.pricing,
                provider="local",
            )
            assert ctx.rows is not None
            row = (await ctx.rows.complete())[0]
        results: list[dict[str, Any]] = []
        at = 0
        for i, p in enumerate(parsed):
            number = claim.first_line + i
            if isinstance(p, str):
                results.append({"line": number, "error": {"code": "VALIDATION_ERROR", "message": p}})
                continue
            results.append({"line": number, **p.ids, **scored[at], "tokens": tokens[at]})
            at += 1
        return results, row


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
