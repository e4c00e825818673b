"""Batch job routes: ``/v1/batch`` and ``/v1/batch/{job_id}[/input|/start|/results|/cancel]``.

Thin: authenticate and act through ``BatchService`` (``tollgate/jobs/service.py``), render JSON in the
classification error shape. The input upload and the results download stream: neither holds a file in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tollgate.api.http import json_response, read_request_body, request_context
from tollgate.jobs.service import BatchService
from tollgate.services.context import RequestContext


def _service(request: Request) -> BatchService:
    service: BatchService = request.app.state.batch
    return service


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _reply(ctx: RequestContext, body: object, status: int = 200) -> Response:
    return json_response(orjson.dumps(body), {"X-Request-ID": ctx.request_id}, status)


async def create_batch(request: Request) -> Response:
    ctx = request_context(request, "batch.create")
    raw = await read_request_body(request, request.app.state.settings.server.body_limit)
    return _reply(ctx, await _service(request).create(ctx, raw, _base_url(request)), 201)


async def list_batches(request: Request) -> Response:
    ctx = request_context(request, "batch.list")
    params = request.query_params
    return _reply(ctx, await _service(request).list_jobs(ctx, params.get("limit"), params.get("after")))


async def get_batch(request: Request) -> Response:
    ctx = request_context(request, "batch.get")
    return _reply(ctx, await _service(request).get(ctx, request.path_params["job_id"]))


async def upload_input(request: Request) -> Response:
    ctx = request_context(request, "batch.input")
    declared = request.headers.get("content-length")

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    size = int(declared) if declared and declared.isdigit() else None
    job = await _service(request).upload(ctx, request.path_params["job_id"], body(), size)
    return _reply(ctx, job)


async def start_batch(request: Request) -> Response:
    ctx = request_context(request, "batch.start")
    return _reply(ctx, await _service(request).start(ctx, request.path_params["job_id"]), 202)


async def get_results(request: Request) -> Response:
    ctx = request_context(request, "batch.results")
    service = _service(request)
    return _reply(ctx, await service.results(ctx, request.path_params["job_id"], _base_url(request)))


async def download_results(request: Request) -> Response:
    ctx = request_context(request, "batch.results")
    blocks = await _service(request).content(ctx, request.path_params["job_id"])
    return StreamingResponse(
        blocks, media_type="application/x-ndjson", headers={"X-Request-ID": ctx.request_id}
    )


async def cancel_batch(request: Request) -> Response:
    ctx = request_context(request, "batch.cancel")
    return _reply(ctx, await _service(request).cancel(ctx, request.path_params["job_id"]))


async def delete_batch(request: Request) -> Response:
    ctx = request_context(request, "batch.delete")
    return _reply(ctx, await _service(request).delete(ctx, request.path_params["job_id"]))
