"""The outermost ASGI callable: the hot chat route goes straight to its handler, everything else to the
Starlette app (routing, exception handlers, lifespan)."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tollgate.api.chat import chat_completions
from tollgate.api.errors import render_error
from tollgate.api.http import send_json
from tollgate.errors import MethodNotAllowedError, TollgateError
from tollgate.settings import CorsConfig
from tollgate.storage.outage import outage

log = logging.getLogger("tollgate.api")

CHAT_PATHS = frozenset({"/v1/chat/completions", "/api/v1/chat/completions"})


class GatewayApp:
    """With ``cors`` enabled, Starlette's ``CORSMiddleware`` sits in front of both paths: it answers
    preflight ``OPTIONS`` requests itself (no key needed) and adds the CORS headers to every answer to an
    allowed origin. Without it, nothing is in front (the default)."""

    def __init__(self, app: Starlette, cors: CorsConfig | None = None) -> None:
        self.app = app
        self.state = app.state
        self._entry: ASGIApp = self._dispatch
        if cors is not None and cors.enabled:
            self._entry = CORSMiddleware(
                self._dispatch,
                allow_origins=cors.allow_origins,
                allow_origin_regex=cors.allow_origin_regex,
                allow_methods=cors.allow_methods,
                allow_headers=cors.allow_headers,
                expose_headers=cors.expose_headers,
                allow_credentials=cors.allow_credentials,
                max_age=cors.max_age,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in CHAT_PATHS:
            if scope["method"] != "POST":
                err: TollgateError = MethodNotAllowedError(
                    f"{scope['method']} is not allowed on {scope['path']}; use POST."
                )
                body, headers = render_error(err, scope["path"])
                await send_json(send, err.status, body, {**headers, "Allow": "POST"})
                return
            state = self.app.state
            try:
                await chat_completions(
                    state.completions, state.settings.server.body_limit, scope, receive, send
                )
            except Exception as exc:
                down = outage(exc)
                if down is None:
                    log.exception("unhandled error on POST %s", scope["path"])
                err = down or TollgateError(
                    "Internal error in the gateway; it has been logged. Retry the request."
                )
                body, headers = render_error(err, scope["path"])
                await send_json(send, err.status, body, headers)
            return
        await self.app(scope, receive, send)
