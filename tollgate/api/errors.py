"""The only place that turns errors into HTTP: OpenAI's shape on the OpenAI-compatible surface, Anthropic's
(``{"type": "error", "error": {type, message}}``) on ``/v1/messages``, the
``{error, code, message, details, docs_url}`` shape on classification and management endpoints."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tollgate.errors import (
    MethodNotAllowedError,
    NotFoundError,
    TollgateError,
    ValidationError,
)
from tollgate.providers.anthropic.ingress import error_body as anthropic_error_body
from tollgate.storage.outage import outage

log = logging.getLogger("tollgate.api")

DOCS_URL = "https://github.com/tollgate-gateway/tollgate#errors"
_OPENAI_PATHS = (
    "/v1/chat",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/models",
    "/v1/messages",
)


# Endpoints in the classification/management shape; any other ``/v1/...`` path (an unknown route included)
# answers in OpenAI's shape, which is what an SDK pointed at the gateway reads.
_OWN_SHAPE_PATHS = (
    "/v1/keys", "/v1/balance", "/v1/usage", "/v1/logs", "/v1/classify", "/v1/tag", "/v1/classifiers",
    "/v1/select-model", "/v1/batch/", "/v1/jobs",
)  # fmt: skip


def is_openai_path(path: str) -> bool:
    return path.removeprefix("/api").startswith(_OPENAI_PATHS)


def is_unknown_openai_route(path: str) -> bool:
    bare = path.removeprefix("/api")
    own = bare.startswith(_OWN_SHAPE_PATHS) or bare == "/v1/batch"  # not /v1/batches: OpenAI's Batches API
    return bare.startswith("/v1/") and not own


def is_anthropic_path(path: str) -> bool:
    return path.removeprefix("/api").startswith("/v1/messages")


def openai_body(err: TollgateError) -> bytes:
    return orjson.dumps(
        {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    )


def management_body(err: TollgateError) -> bytes:
    details = dict(err.details)
    if err.param and "field" not in details:
        details["field"] = err.param
    return orjson.dumps(
        {
            "error": err.code.lower().replace("_", "-"),
            "code": err.code,
            "message": err.message,
            "details": details,
            "docs_url": DOCS_URL,
        }
    )


def render_error(
    err: TollgateError, path: str, request_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an error response, in the shape the endpoint at ``path`` speaks."""
    if is_anthropic_path(path):
        body = orjson.dumps(anthropic_error_body(err))
    else:
        body = openai_body(err) if is_openai_path(path) else management_body(err)
    headers = dict(err.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return body, headers


def error_response(err: TollgateError, path: str, request_id: str | None = None) -> Response:
    body, headers = render_error(err, path, request_id)
    return Response(body, status_code=err.status, headers=headers, media_type="application/json")


async def handle_tollgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TollgateError)
    return error_response(exc, request.url.path, getattr(request.state, "request_id", None))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: TollgateError
    if exc.status_code == 404:
        err = NotFoundError(f"No route for {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        err = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}.")
    else:
        err = ValidationError(str(exc.detail))
        err.status = exc.status_code  # type: ignore[misc]
    if (
        exc.status_code == 404
        and is_unknown_openai_route(request.url.path)
        and not is_anthropic_path(request.url.path)
    ):
        return Response(openai_body(err), status_code=404, media_type="application/json")
    return error_response(err, request.url.path)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    if (down := outage(exc)) is not None:  # logged in one line, answered 503 with Retry-After
        return error_response(down, request.url.path)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    err = TollgateError("Internal error in the gateway; it has been logged. Retry the request.")
    return error_response(err, request.url.path)
