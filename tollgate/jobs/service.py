"""The batch API's operations (``api/batch.py`` is the thin HTTP layer over these).

A job is created with a classification configuration (validated exactly as ``/v1/tag/batch`` validates it,
saved classifiers resolved and pinned at creation), its NDJSON input is uploaded (through Tollgate, or
straight to the object store with a presigned POST), and ``start`` queues it for the workers. Every
operation is private to the key's account: another account's job is a 404.

``start`` refuses (409) when the account already has its limit of jobs processing (``batch.active_jobs``,
or the key's tier's ``batch_jobs``), and (402) when the estimated cost — one token per 4 bytes of input, at
the batch price — exceeds the balance plus the grace buffer. The estimate is a check only: each chunk is
admitted and billed on its own as it is classified (``worker.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from tollgate.classify.request import Spec, invalid, mode_and_backend, parse_request
from tollgate.errors import (
    ClientError,
    InsufficientBalanceError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from tollgate.jobs.objects import ObjectStore
from tollgate.jobs.store import STARTABLE, JobRecord, JobStore, new_job_id
from tollgate.jobs.worker import results_key
from tollgate.services.classification import ClassificationService
from tollgate.services.completions import parse_json
from tollgate.services.context import RequestContext
from tollgate.settings import BatchConfig

FIELDS = frozenset(
    {"labels", "classifier", "descriptions", "examples", "text_type", "mode", "threshold", "backend"}
)
BYTES_PER_TOKEN = 4  # the estimate before the input is read: generous for English text in JSON lines
MAX_PAGE = 100


class ConflictError(ClientError):
    """The job's state (or the account's other jobs) does not allow the operation now: 409."""

    status = 409
    code = "CONFLICT"


def job_json(job: JobRecord) -> dict[str, Any]:
    spec = job.spec
    return {
        "job_id": job.id,
        "object": "batch",
        "status": job.status,
        "mode": spec["mode"],
        "labels": spec["labels"],
        "input_bytes": job.input_bytes,
        "requests_total": job.requests_total,
        "requests_completed": job.requests_completed,
        "requests_failed": job.requests_failed,
        "estimated_tokens": job.estimated_tokens,
        "actual_tokens": job.actual_tokens,
        "cost": f"{job.cost.normalize():f}",
        "created_at": int(job.created_at),
        "started_at": None if job.started_at is None else int(job.started_at),
        "completed_at": None if job.completed_at is None else int(job.completed_at),
        "error": job.error,
    }


class BatchService:
    def __init__(
        self,
        classification: ClassificationService,
        jobs: JobStore,
        objects: ObjectStore,
        config: BatchConfig,
    ) -> None:
        self.classification = classification
        self.billing = classification.billing
        self.jobs = jobs
        self.objects = objects
        self.config = config
        self.price: Decimal = classification.config.prices.batch

    async def _account(self, ctx: RequestContext) -> str:
        await self.classification._authenticate(ctx)
        assert ctx.principal is not None
        return ctx.principal.account_id

    async def _job(self, ctx: RequestContext, job_id: str) -> JobRecord:
        account = await self._account(ctx)
        job = await self.jobs.get(job_id, account) if len(job_id) <= 64 else None
        if job is None:
            raise NotFoundError(f"No batch job '{job_id[:64]}'", param="job_id")
        return job

    # create and upload ------------------------------------------------------------------------------------
    async def create(self, ctx: RequestContext, raw: bytes, base_url: str) -> dict[str, Any]:
        account = await self._account(ctx)
        assert ctx.principal is not None
        spec = await self._spec(account, parse_json(raw))
        job_id = new_job_id()
        await self.jobs.create(job_id, account, ctx.principal.key_id, spec.to_json(), time.time())
        job = await self.jobs.get(job_id)
        assert job is not None
        limit = self.config.max_input_bytes
        form = await self.objects.upload_form(job.input_key, limit, self.config.url_ttl)
        upload = {
            "upload_url": f"{base_url}/v1/batch/{job_id}/input",
            "upload_method": "PUT",
            "upload_fields": {},
        }
        if form is not None:
            upload = {"upload_url": form[0], "upload_method": "POST", "upload_fields": form[1]}
        return {
            **job_json(job),
            **upload,
            "input_key": job.input_key,
            "max_input_bytes": limit,
            "upload_expires_at": int(time.time()) + self.config.url_ttl,
        }

    async def _spec(self, account_id: str, data: Any) -> Spec:
        """The job's classification, validated as ``/v1/classify/batch`` and ``/v1/tag/batch`` validate."""
        if not isinstance(data, dict):
            raise invalid("The request body must be a JSON object", "body")
        for name in data:
            if name not in FIELDS:
                raise invalid(f"Unknown field '{name}'; accepted: {', '.join(sorted(FIELDS))}", name)
        mode, backend = mode_and_backend(data)
        fields = {k: v for k, v in data.items() if k not in ("mode", "backend")}
        if mode == "single" and fields.get("threshold") is not None:
            raise invalid("'threshold' applies to mode 'multi' only", "threshold")
        req = parse_request({**fields, "texts": ["-"]}, multi=mode == "multi", batch=True)
        spec = await self.classification._spec(account_id, req, mode == "multi")
        if (backend or spec.backend or "local") != "local":
            raise invalid("Batch jobs classify on the local backend; 'backend' must be 'local'", "backend")
        return Spec(spec.labels, spec.descriptions, spec.examples, spec.text_type, spec.mode, spec.threshold)

    async def upload(
        self, ctx: RequestContext, job_id: str, body: AsyncIterator[bytes], declared: int | None
    ) -> dict[str, Any]:
        """Store the request body as the job's input, streamed in constant memory."""
        job = await self._job(ctx, job_id)
        if job.status not in STARTABLE or job.chunks_total is not None:
            raise ConflictError(
                f"The job is {job.status}; its input can be uploaded only before it is started",
                param="job_id",
            )
        limit = self.config.max_input_bytes
        if declared is not None and declared > limit:
            raise PayloadTooLargeError(f"The input is {declared} bytes; the limit is {limit} bytes.")
        size = await self.objects.write(job.input_key, body, limit)
        if size == 0:
            raise ValidationError('The input is empty; send NDJSON, one {"text": ...} object per line')
        if not await self.jobs.set_input(job.id, size):
            raise ConflictError("The job was started or cancelled during the upload", param="job_id")
        found = await self.jobs.get(job.id)
        assert found is not None
        return job_json(found)

    # start ------------------------------------------------------------------------------------------------
    def active_limit(self, ctx: RequestContext) -> int:
        principal = ctx.principal
        assert principal is not None
        tier = self.billing.tiers.get(principal.tier or self.billing.default_tier or "")
        if tier is not None and tier.batch_jobs is not None:
            return tier.batch_jobs
        return self.config.active_jobs

    async def start(self, ctx: RequestContext, job_id: str) -> dict[str, Any]:
        job = await self._job(ctx, job_id)
        if job.status not in STARTABLE:
            raise ConflictError(
                f"The job is {job.status}; only pending or failed jobs can be started", param="job_id"
            )
        size = await self.objects.size(job.input_key)
        if not size:
            raise ValidationError(
                f"No input uploaded: upload the NDJSON to the job's upload_url first ({job.input_key})",
                param="input",
            )
        if job.input_bytes != size and job.chunks_total is None:
            await self.jobs.set_input(job.id, size)  # uploaded straight to the object store
        estimated = math.ceil(size / BYTES_PER_TOKEN)
        if job.chunks_total:
            estimated = math.ceil(estimated * (job.chunks_total - job.chunks_done) / job.chunks_total)
        limit = self.active_limit(ctx)
        if await self.jobs.active_count(job.account_id) >= limit:
            raise self._busy(limit)
        await self._check_balance(job.account_id, estimated)
        if not await self.jobs.start(job, limit, estimated, time.time()):
            now = await self.jobs.get(job.id)
            if now is not None and now.status not in STARTABLE:
                raise ConflictError(f"The job is {now.status}; it cannot be started", param="job_id")
            raise self._busy(limit)
        started = await self.jobs.get(job.id)
        assert started is not None
        return job_json(started)

    def _busy(self, limit: int) -> ConflictError:
        jobs = "job" if limit == 1 else "jobs"
        return ConflictError(
            f"This account already has {limit} batch {jobs} processing, its limit; wait for one to finish "
            "or cancel it, then start this one",
            code="BATCH_CONCURRENCY_LIMIT",
            details={"limit": limit},
        )

    async def _check_balance(self, account_id: str, tokens: int) -> None:
        """402 when the job's estimated cost exceeds the balance plus the grace buffer. Nothing is held."""
        ledger = self.billing.ledger
        cost = self.price * tokens
        try:
            reservation = await ledger.reserve(account_id, cost)
        except InsufficientBalanceError:
            available = ledger.available(account_id)
            have = "" if available is None else f"; the account has {available.normalize():f} available"
            raise InsufficientBalanceError(
                f"Insufficient balance: the job is estimated at {tokens} tokens, costing up to "
                f"{cost.normalize():f}{have}. Add credit, then start the job again.",
                details={"estimated_tokens": tokens, "estimated_cost": f"{cost.normalize():f}"},
            ) from None
        ledger.settle(reservation, Decimal(0))

    # read -------------------------------------------------------------------------------------------------
    async def get(self, ctx: RequestContext, job_id: str) -> dict[str, Any]:
        return job_json(await self._job(ctx, job_id))

    async def list_jobs(self, ctx: RequestContext, limit: str | None, after: str | None) -> dict[str, Any]:
        account = await self._account(ctx)
        try:
            n = int(limit) if limit is not None else 20
        except ValueError:
            n = 0
        if not 1 <= n <= MAX_PAGE:
            raise ValidationError(f"'limit' must be an integer from 1 to {MAX_PAGE}", param="limit")
        cursor = None
        if after is not None:
            cursor = await self.jobs.get(after[:64], account)
            if cursor is None:
                raise ValidationError(
                    f"'after' names no batch job of this account: {after[:64]}", param="after"
                )
        rows = await self.jobs.page(account, n + 1, cursor)
        page = rows[:n]
        return {
            "object": "list",
            "data": [job_json(j) for j in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(rows) > n,
        }

    async def results(self, ctx: RequestContext, job_id: str, base_url: str) -> dict[str, Any]:
        job = await self._job(ctx, job_id)
        if job.status != "completed":
            raise ConflictError(
                f"The job is {job.status}; its results can be downloaded once it is completed", param="job_id"
            )
        ttl = self.config.url_ttl
        url = await self.objects.download_url(results_key(job.id), ttl)
        return {
            "job_id": job.id,
            "status": job.status,
            "download_url": url or f"{base_url}/v1/batch/{job.id}/results/content",
            "expires_at": int(time.time()) + ttl if url else None,
            "format": "ndjson",
            "requests_total": job.requests_total,
            "requests_completed": job.requests_completed,
            "requests_failed": job.requests_failed,
        }

    async def content(self, ctx: RequestContext, job_id: str) -> AsyncIterator[bytes]:
        job = await self._job(ctx, job_id)
        if job.status != "completed":
            raise ConflictError(f"The job is {job.status}; it has no results yet", param="job_id")
        return self.objects.read(results_key(job.id))

    # cancel and delete ------------------------------------------------------------------------------------
    async def cancel(self, ctx: RequestContext, job_id: str) -> dict[str, Any]:
        job = await self._job(ctx, job_id)
        if not await self.jobs.cancel(job.id, time.time()):
            raise ConflictError(f"The job is {job.status}; it cannot be cancelled", param="job_id")
        found = await self.jobs.get(job.id)
        assert found is not None
        return job_json(found)

    async def delete(self, ctx: RequestContext, job_id: str) -> dict[str, Any]:
        job = await self._job(ctx, job_id)
        if job.status == "processing" or not await self.jobs.delete(job.id):
            raise ConflictError(
                "The job is processing; cancel it first (POST /v1/batch/{job_id}/cancel), then delete it",
                param="job_id",
            )
        await self.objects.delete_prefix(f"jobs/{job.id}")
        return {"job_id": job.id, "object": "batch", "deleted": True}
