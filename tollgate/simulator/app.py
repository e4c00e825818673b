"""The simulator's Starlette app: OpenAI-compatible endpoints plus ``/_sim`` introspection."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tollgate.simulator import chat_extras, generate
from tollgate.simulator.anthropic import anthropic_routes
from tollgate.simulator.behaviour import Behaviour, Resolver
from tollgate.simulator.gemini import gemini_routes
from tollgate.simulator.responses import (
    CutResponse,
    Ending,
    StreamResponse,
    Watch,
    install_log_filter,
    open_openai,
)
from tollgate.simulator.responses_api import responses_routes
from tollgate.simulator.wire import (
    INVALID_EVENT,
    ChunkEncoder,
    completion_body,
    error_body,
    error_for_status,
    usage_object,
)

__all__ = ["MAX_RECORDS", "MODELS", "SimState", "create_app"]

MAX_RECORDS: Final = 1000
MODELS: Final = ("sim-small", "sim-large", "sim-embed")
_MODELS_CREATED: Final = 1_700_000_000
_JSON: Final = "application/json"
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class SimState:
    """Mutable simulator state: option resolver, recorded requests and ``fail_first`` counters."""

    __slots__ = ("counters", "records", "resolver", "stopping", "_ids")

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.resolver = Resolver(defaults)
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.counters: dict[str, int] = {}
        self.stopping = threading.Event()  # set by SimServer.stop(): hanging requests give up
        self._ids = itertools.count(1)

    def injected_status(self, b: Behaviour) -> int | None:
        """The error status ``error`` / ``fail_first`` ask for on this request (``fail_first`` counts per
        ``scenario``); None to answer normally."""
        status = b.error
        if b.fail_first:
            seen = self.counters.get(b.scenario, 0) + 1
            self.counters[b.scenario] = seen
            if seen > b.fail_first:
                return None
            status = status or 500
        return status

    def next_id(self) -> int:
        """A process-unique, increasing number for response ids."""
        return next(self._ids)

    def record(self, request: Request) -> dict[str, Any]:
        """Start the record of one request."""
        rec: dict[str, Any] = {
            "path": request.scope["path"],
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]},
            "body": None,
            "started": time.time(),
            "status": None,
            "completed": False,
            "cancelled": False,
            "chunks_sent": 0,
        }
        self.records.append(rec)
        return rec

    def snapshot(self) -> list[dict[str, Any]]:
        """Copies of the recorded requests, oldest first."""
        return [dict(r) for r in list(self.records)]

    def clear(self) -> int:
        """Forget recorded requests and reset the ``fail_first`` counters; return how many were dropped."""
        count = len(self.records)
        self.records.clear()
        self.counters.clear()
        return count


def _json(
    rec: dict[str, Any] | None, status: int, body: bytes, headers: dict[str, str] | None = None
) -> Response:
    if rec is not None:
        rec["status"] = status
        rec["completed"] = True
    return Response(body, status, headers, _JSON)


def _bad_request(rec: dict[str, Any], message: str, param: str | None = None) -> Response:
    return _json(rec, 400, error_body(message, "invalid_request_error", param))


def _retry_header(seconds: float) -> dict[str, str]:
    return {"retry-after": str(int(seconds)) if float(seconds).is_integer() else str(seconds)}


def _chat_include_usage(body: dict[str, Any], b: Behaviour) -> bool:
    """Whether a chat stream ends with a usage chunk: ``stream_options.include_usage``, unless the behaviour
    ignores it or sends no usage."""
    options = body.get("stream_options")
    asked = isinstance(options, dict) and options.get("include_usage") is True
    return asked and not (b.ignore_include_usage or b.no_usage)


class _Handlers:
    """Endpoint implementations bound to one ``SimState``."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def _injected_error(self, rec: dict[str, Any], b: Behaviour) -> Response | None:
        status = self.state.injected_status(b)
        if status is None:
            return None
        headers = _retry_header(b.retry_after) if b.retry_after is not None else None
        return _json(rec, status, error_for_status(status), headers)

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        opened = await open_openai(request, self.state)
        if isinstance(opened, Response):
            return opened
        rec, body, model, b = opened
        messages = body.get("messages")
        if model is None:
            return _bad_request(rec, "you must provide a model parameter", "model")
        if not isinstance(messages, list) or not messages:
            return _bad_request(rec, "'messages' must be a non-empty array.", "messages")
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
            return _bad_request(rec, "'max_tokens' must be an integer.", "max_tokens")
        early = self._injected_error(rec, b)
        if early is not None:
            return early

        pieces, finish, matched = generate.completion(b, max_tokens, body.get("stop"))
        prompt = b.prompt_tokens if b.prompt_tokens is not None else generate.count_prompt_tokens(messages)
        usage = usage_object(prompt, len(pieces), min(b.cached_tokens, prompt))
        cid = f"chatcmpl-sim-{self.state.next_id()}"
        created = int(time.time())
        extras = chat_extras.extras_for(body, pieces, reply=b.reply is not None)
        if extras is not None:
            per_choice = chat_extras.completion_tokens(extras)
            usage = usage_object(prompt, per_choice * extras.n, min(b.cached_tokens, prompt))
            return self._extras(request, rec, b, body, (cid, created, model), extras, finish, usage)
        if body.get("stream") is True:
            return self._stream(
                request, rec, b, body, (cid, created, model), pieces, (finish, matched), usage
            )
        usage_out = None if b.no_usage else usage
        payload = orjson.dumps(
            completion_body(cid, created, model, "".join(pieces), finish, usage_out, matched)
        )
        return self._json_body(rec, b, payload)

    def _json_body(self, rec: dict[str, Any], b: Behaviour, payload: bytes) -> Response:
        if b.cut_after is not None:
            headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(payload)).encode())]
            return CutResponse(200, headers, rec)
        if b.invalid_json:
            payload = payload[: len(payload) // 2]
        return _json(rec, 200, payload)

    def _stream(self, request: Request, rec: dict[str, Any], b: Behaviour, body: dict[str, Any],
                ident: tuple[str, int, str], pieces: list[str], finish: tuple[str, str | None],
                usage: dict[str, Any]) -> Response:  # fmt: skip
        include_usage = _chat_include_usage(body, b)
        enc = ChunkEncoder(*ident, include_usage)
        events = [enc.role()]
        ending: Ending = "done"
        limit = b.cut_after if b.cut_after is not None else b.hang_after
        if b.invalid_json:
            events.append(INVALID_EVENT)
        elif limit is not None:
            ending = "cut" if b.cut_after is not None else "hang"
            if limit == 0 and ending == "cut":
                events = []
            else:
                events.extend(enc.content(p) for p in pieces[:limit])
        else:
            events.extend(enc.content(p) for p in pieces)
            events.append(enc.finish(*finish))
            if include_usage:
                events.append(enc.usage(usage))
        return StreamResponse(
            events,
            ending,
            b.chunk_delay_ms / 1000,
            rec,
            Watch(request.receive, self.state.stopping),
            _SSE_HEADERS,
        )

    def _extras(self, request: Request, rec: dict[str, Any], b: Behaviour, body: dict[str, Any],
                ident: tuple[str, int, str], extras: chat_extras.Extras, finish: str,
                usage: dict[str, Any]) -> Response:  # fmt: skip
        """Tool calls, structured output, ``n`` and logprobs (``chat_extras``), JSON or stream."""
        cid, created, model = ident
        head = {"id": cid, "object": "chat.completion", "created": created, "model": model}
        if body.get("stream") is not True:
            out = {**head, "choices": chat_extras.choices(extras, cid, finish)}
            if not b.no_usage:
                out["usage"] = usage
            return self._json_body(rec, b, orjson.dumps(out))
        head["object"] = "chat.completion.chunk"
        include_usage = _chat_include_usage(body, b)
        tail = {"usage": None} if include_usage else {}
        events = [
            b"data: " + orjson.dumps({**head, "choices": c, **tail}) + b"\n\n"
            for c in chat_extras.chunks(extras, cid, finish)
        ]
        if include_usage:
            events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
        watch = Watch(request.receive, self.state.stopping)
        return StreamResponse(events, "done", b.chunk_delay_ms / 1000, rec, watch, _SSE_HEADERS)

    async def completions(self, request: Request) -> Response:
        """Legacy ``POST /v1/completions``: ``prompt`` (string, strings or token ids) × ``n`` choices,
        ``max_tokens`` (default 16), ``stop``, ``echo``, ``logprobs`` (made-up values), ``stream``."""
        opened = await open_openai(request, self.state)
        if isinstance(opened, Response):
            return opened
        rec, body, model, b = opened
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else prompt
        n = body.get("n") or 1
        if model is None:
            return _bad_request(rec, "you must provide a model parameter", "model")
        if not isinstance(prompts, list) or not prompts:
            return _bad_request(rec, "'prompt' must be a string or an array.", "prompt")
        early = self._injected_error(rec, b)
        if early is not None:
            return early
        max_tokens = body.get("max_tokens")
        pieces, finish, _ = generate.completion(b, 16 if max_tokens is None else max_tokens, body.get("stop"))
        logprobs = body.get("logprobs")
        choices: list[dict[str, Any]] = []
        for i in range(len(prompts) * n):
            source = prompts[i // n]
            text = (source if isinstance(source, str) else "") if body.get("echo") is True else ""
            lp = None
            if isinstance(logprobs, int) and not isinstance(logprobs, bool):
                lp = {"tokens": pieces, "token_logprobs": [-0.5] * len(pieces),
                      "top_logprobs": [{p: -0.5} for p in pieces] if logprobs else None,
                      "text_offset": list(itertools.accumulate([len(text), *map(len, pieces[:-1])]))}  # fmt: skip
            choices.append(
                {"text": text + "".join(pieces), "index": i, "logprobs": lp, "finish_reason": finish}
            )
        prompt_tokens = b.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(len(p.split()) if isinstance(p, str) else len(p) for p in prompts)
        usage = usage_object(prompt_tokens, len(pieces) * len(choices), 0)
        ident = {"id": f"cmpl-sim-{self.state.next_id()}", "object": "text_completion",
                 "created": int(time.time()), "model": model}  # fmt: skip
        if body.get("stream") is not True:
            return self._json_body(rec, b, orjson.dumps({**ident, "choices": choices, "usage": usage}))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True and not b.no_usage
        events = []
        for c in choices:
            echoed = str(c["text"])[: len(c["text"]) - len("".join(pieces))]
            for piece in [echoed, *pieces]:
                if piece:
                    chunk = {"text": piece, "index": c["index"], "logprobs": None, "finish_reason": None}
                    events.append(b"data: " + orjson.dumps({**ident, "choices": [chunk]}) + b"\n\n")
            last = {"text": "", "index": c["index"], "logprobs": None, "finish_reason": finish}
            events.append(b"data: " + orjson.dumps({**ident, "choices": [last]}) + b"\n\n")
        if include_usage:
            events.append(b"data: " + orjson.dumps({**ident, "choices": [], "usage": usage}) + b"\n\n")
        watch = Watch(request.receive, self.state.stopping)
        return StreamResponse(events, "done", b.chunk_delay_ms / 1000, rec, watch, _SSE_HEADERS)

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``."""
        opened = await open_openai(request, self.state)
        if isinstance(opened, Response):
            return opened
        rec, body, model, b = opened
        raw = body.get("input")
        items: list[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        if items and all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            items = [items]  # a single array of token ids
        dims = body.get("dimensions", generate.DEFAULT_EMBEDDING_DIMENSIONS)
        fmt = body.get("encoding_format") or "float"
        if model is None:
            return _bad_request(rec, "you must provide a model parameter", "model")
        if not items or not all(isinstance(i, str | list) for i in items):
            return _bad_request(rec, "'input' must be a non-empty string or array.", "input")
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 8192:
            return _bad_request(rec, "'dimensions' must be an integer between 1 and 8192.", "dimensions")
        if fmt not in ("float", "base64"):
            return _bad_request(rec, "'encoding_format' must be 'float' or 'base64'.", "encoding_format")
        early = self._injected_error(rec, b)
        if early is not None:
            return early
        data = []
        for index, item in enumerate(items):
            values, packed = generate.embedding(item, dims)
            vector: Any = generate.encode_base64(packed) if fmt == "base64" else values
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = (
            b.prompt_tokens if b.prompt_tokens is not None else sum(map(generate.embedding_tokens, items))
        )
        payload = orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
        return self._json_body(rec, b, payload)

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        key = self.state.resolver.defaults.require_key
        if key is not None and request.headers.get("authorization") != f"Bearer {key}":
            return _json(None, 401, error_body("Incorrect API key provided.", code="invalid_api_key"))
        data = [
            {"id": m, "object": "model", "created": _MODELS_CREATED, "owned_by": "simulator"} for m in MODELS
        ]
        return _json(None, 200, orjson.dumps({"object": "list", "data": data}))

    async def list_requests(self, request: Request) -> Response:  # noqa: ARG002
        """``GET /_sim/requests``."""
        return _json(None, 200, orjson.dumps(self.state.snapshot()))

    async def clear_requests(self, request: Request) -> Response:  # noqa: ARG002
        """``DELETE /_sim/requests``: also resets ``fail_first`` counters."""
        return _json(None, 200, orjson.dumps({"deleted": self.state.clear()}))


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"Invalid URL ({request.method} {request.scope['path']})"
    return _json(None, status, error_body(message))


def create_app(defaults: dict[str, Any] | None = None) -> Starlette:
    """Build the simulator app; ``defaults`` are server-wide behaviour options (see ``Behaviour``)."""
    install_log_filter()
    state = SimState(defaults)
    h = _Handlers(state)
    routes = [
        Route("/v1/chat/completions", h.chat, methods=["POST"]),
        Route("/v1/embeddings", h.embeddings, methods=["POST"]),
        Route("/v1/completions", h.completions, methods=["POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
        Route("/_sim/requests", h.list_requests, methods=["GET"]),
        Route("/_sim/requests", h.clear_requests, methods=["DELETE"]),
        *anthropic_routes(state),
        *gemini_routes(state),
        *responses_routes(state),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error})
    app.state.sim = state
    return app
