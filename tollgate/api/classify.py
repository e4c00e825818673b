"""Classification routes: ``/v1/classify``, ``/v1/tag``, their ``/batch`` forms, and saved classifiers.

Thin: read the body, call ``ClassificationService``, render JSON. Errors use the classification shape
``{error, code, message, details, docs_url}`` (``api/errors.py``), validation errors with status 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import json_response, read_request_body, request_context
from tollgate.services.classification import ClassificationService


def _endpoint(endpoint: str, *, multi: bool, batch: bool) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        state = request.app.state
        service: ClassificationService = state.classification
        ctx = request_context(request, endpoint)
        raw = await read_request_body(request, state.settings.server.body_limit)
        reply = await service.classify(ctx, raw, multi=multi, batch=batch)
        return json_response(reply.body, reply.headers, reply.status)

    handler.__name__ = endpoint.replace(".", "_")
    return handler


classify = _endpoint("classify", multi=False, batch=False)
tag = _endpoint("tag", multi=True, batch=False)
classify_batch = _endpoint("classify.batch", multi=False, batch=True)
tag_batch = _endpoint("tag.batch", multi=True, batch=True)


async def create_classifier(request: Request) -> Response:
    state = request.app.state
    service: ClassificationService = state.classification
    ctx = request_context(request, "classifiers")
    raw = await read_request_body(request, state.settings.server.body_limit)
    body = await service.save_classifier(ctx, raw)
    return json_response(orjson.dumps(body), {"X-Request-ID": ctx.request_id}, 201)


async def list_classifiers(request: Request) -> Response:
    service: ClassificationService = request.app.state.classification
    ctx = request_context(request, "classifiers")
    body = await service.list_classifiers(ctx)
    return json_response(orjson.dumps(body), {"X-Request-ID": ctx.request_id})


async def get_classifier(request: Request) -> Response:
    service: ClassificationService = request.app.state.classification
    ctx = request_context(request, "classifiers")
    body = await service.get_classifier(ctx, request.path_params["name"])
    return json_response(orjson.dumps(body), {"X-Request-ID": ctx.request_id})
