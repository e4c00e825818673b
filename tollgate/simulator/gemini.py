"""Google Gemini's wire format for the simulator: ``generateContent`` and ``streamGenerateContent``.

``POST /v1beta/models/{model}:generateContent`` answers a ``GenerateContentResponse`` (``candidates`` with
``content.parts``, ``finishReason``, ``index``; ``usageMetadata``; ``modelVersion``; ``responseId``).
``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` answers server-sent events, one
``data: <GenerateContentResponse>`` per event separated by CRLF blank lines, with no end marker: the stream
ends when the connection closes (the last event carries ``finishReason`` and the final ``usageMetadata``).
Without ``alt=sse`` the stream is one JSON array of the same objects. Errors use Google's envelope
``{"error": {"code", "message", "status"}}`` (a 429 adds a ``google.rpc.RetryInfo`` detail when
``retry_after`` is set; Google sends no ``Retry-After`` header).

The behaviour options of ``behaviour.py`` apply (model suffix ``name@k=v,...`` in the URL, or a ``"sim"``
object in the body, which real Gemini would refuse), plus these Gemini-only ones:

* ``tool_call``: when the request declares tools, reply with ``functionCall`` parts for these function
  names (``|``-separated for parallel calls), arguments sampled from each declaration's schema;
* ``thoughts_tokens``: reported as ``thoughtsTokenCount``; with ``thinkingConfig.includeThoughts`` a
  ``thought: true`` part comes first;
* ``stream_error``: a stream sends its content events (``cut_after`` of them, if set) and then an error
  event with this HTTP status, then closes.

``cached_tokens`` becomes ``cachedContentTokenCount``; ``require_key`` checks ``x-goog-api-key`` (or ``?key=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tollgate.simulator import generate
from tollgate.simulator.behaviour import Behaviour, OptionError, build_behaviour, parse_model
from tollgate.simulator.responses import (
    CutResponse,
    Ending,
    SilentResponse,
    StreamResponse,
    Watch,
    wait_or_leave,
)

if TYPE_CHECKING:
    from tollgate.simulator.app import SimState

__all__ = ["GEMINI_OPTIONS", "error_body", "gemini_routes"]

GEMINI_OPTIONS: Final = frozenset(("tool_call", "thoughts_tokens", "stream_error"))
SIGNATURE: Final = "c2ltdWxhdG9yLXRob3VnaHQtc2lnbmF0dXJl"
TOOL_CALL_TOKENS: Final = 8  # completion tokens per function call (completion_tokens overrides the total)
THOUGHT_TEXT: Final = "**Thinking it over**\n\nThe simulator considers the question."
_JSON: Final = "application/json"
_SSE_HEADERS: Final = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_METHODS: Final = ("generateContent", "streamGenerateContent")
_STATUS: Final[dict[int, tuple[str, str]]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),  # fmt: skip
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


class _Extras:
    """The Gemini-only options of one request."""

    __slots__ = ("stream_error", "thoughts_tokens", "tool_call")

    def __init__(self, options: Mapping[str, Any]) -> None:
        tool_call = options.get("tool_call")
        if tool_call is not None and not isinstance(tool_call, str):
            raise OptionError("simulator option 'tool_call' must be a string of function names")
        self.tool_call = [n for n in (tool_call or "").split("|") if n]
        thoughts = options.get("thoughts_tokens", 0)
        if isinstance(thoughts, bool) or not isinstance(thoughts, int) or thoughts < 0:
            raise OptionError("simulator option 'thoughts_tokens' must be an integer >= 0")
        self.thoughts_tokens = thoughts
        status = options.get("stream_error")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)
                                   or not 400 <= status <= 599):  # fmt: skip
            raise OptionError("simulator option 'stream_error' must be an HTTP status between 400 and 599")
        self.stream_error: int | None = status


def error_object(status: int, message: str | None = None, retry_after: float | None = None) -> dict[str, Any]:
    """The inner object of Google's error envelope for an HTTP status."""
    grpc, default = _STATUS.get(status, ("UNKNOWN" if status >= 500 else "FAILED_PRECONDITION", "Error."))
    error: dict[str, Any] = {"code": status, "message": message or default, "status": grpc}
    if status == 429 and retry_after is not None:
        delay = f"{int(retry_after)}s" if float(retry_after).is_integer() else f"{retry_after}s"
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
    return error


def error_body(status: int, message: str | None = None, retry_after: float | None = None) -> bytes:
    """Google's error envelope: ``{"error": {"code", "message", "status"[, "details"]}}``."""
    return orjson.dumps({"error": error_object(status, message, retry_after)})


_UNREGISTERED: Final = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
    "or other form of API consumer identity to call this API."
)
_BAD_KEY: Final = orjson.dumps(
    {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        }
    }
)


def _answer(rec: dict[str, Any] | None, status: int, body: bytes) -> Response:
    if rec is not None:
        rec["status"] = status
        rec["completed"] = True
    return Response(body, status, media_type=_JSON)


def _text_tokens(parts: Any) -> int:
    total = 0
    for part in parts if isinstance(parts, list) else ():
        text = part.get("text") if isinstance(part, dict) else None
        total += len(text.split()) if isinstance(text, str) else generate.NON_TEXT_PART_TOKENS
    return total


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """3 + for the system instruction and each content: 4 + its words (text parts) or 85 per other part."""
    total = 3
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        total += 4 + _text_tokens(system.get("parts"))
    for content in body.get("contents") or ():
        total += 4 + _text_tokens(content.get("parts") if isinstance(content, dict) else None)
    return total


def _sample(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    kind = kind.lower() if isinstance(kind, str) else None
    if kind == "object":
        props = schema.get("properties")
        return {k: _sample(v) for k, v in props.items()} if isinstance(props, dict) else {}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return generate.WORDS[0]


def _arguments(schema: Any) -> dict[str, Any]:
    args = _sample(schema)
    return args if isinstance(args, dict) else {}


def _declarations(body: dict[str, Any]) -> dict[str, Any]:
    """Declared functions by name (schema from ``parametersJsonSchema`` or ``parameters``)."""
    out: dict[str, Any] = {}
    for tool in body.get("tools") or ():
        for decl in (tool.get("functionDeclarations") if isinstance(tool, dict) else None) or ():
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                out[decl["name"]] = decl.get("parametersJsonSchema", decl.get("parameters"))
    return out


def _invalid(body: dict[str, Any]) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
    config = body.get("generationConfig")
    limit = config.get("maxOutputTokens") if isinstance(config, dict) else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        return "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32)"
    return None


class _Reply:
    """The pieces of one answer, rendered as whole responses or stream events."""

    def __init__(self, model: str, rid: str, b: Behaviour, x: _Extras, body: dict[str, Any]) -> None:
        config = body.get("generationConfig")
        config = config if isinstance(config, dict) else {}
        limit = config.get("maxOutputTokens")
        declared = _declarations(body)
        self.calls = list(x.tool_call) if declared else []
        self.unknown = [name for name in self.calls if name not in declared]
        self.pieces: list[str] = []
        finish = "stop"
        if not self.calls:
            self.pieces, finish = generate.completion_pieces(b, limit, config.get("stopSequences"))
        self.finish = "MAX_TOKENS" if finish == "length" else "STOP"
        self.args = {name: _arguments(declared.get(name)) for name in self.calls}
        thinking = config.get("thinkingConfig")
        self.show_thoughts = (
            x.thoughts_tokens > 0 and isinstance(thinking, dict) and thinking.get("includeThoughts") is True
        )
        self.prompt = b.prompt_tokens if b.prompt_tokens is not None else count_prompt_tokens(body)
        self.cached = min(b.cached_tokens, self.prompt)
        self.completion = len(self.pieces)
        if self.calls:
            calls = TOOL_CALL_TOKENS * len(self.calls)
            self.completion = b.completion_tokens if b.completion_tokens is not None else calls
        self.thoughts = x.thoughts_tokens
        self.no_usage = b.no_usage
        self.tail = {"modelVersion": model, "responseId": rid}

    def usage(self, final: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"promptTokenCount": self.prompt}
        if self.cached:
            meta["cachedContentTokenCount"] = self.cached
        total = self.prompt
        if final:
            meta["candidatesTokenCount"] = self.completion
            total += self.completion + self.thoughts
        meta["totalTokenCount"] = total
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt}]
        if self.cached:
            meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached}]
        if self.thoughts and (final or self.show_thoughts):
            meta["thoughtsTokenCount"] = self.thoughts
        return meta

    def event(self, parts: list[dict[str, Any]], *, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if final:
            candidate["finishReason"] = self.finish
            candidate["index"] = 0
        out: dict[str, Any] = {"candidates": [candidate]}
        if not self.no_usage:
            out["usageMetadata"] = self.usage(final)
        out.update(self.tail)
        return out

    def call_parts(self) -> list[dict[str, Any]]:
        parts = []
        for i, name in enumerate(self.calls):
            part: dict[str, Any] = {"functionCall": {"name": name, "args": self.args[name]}}
            if i == 0:
                part["thoughtSignature"] = SIGNATURE
            parts.append(part)
        return parts

    def thought_parts(self) -> list[dict[str, Any]]:
        return [{"text": THOUGHT_TEXT, "thought": True}] if self.show_thoughts else []

    def whole(self) -> dict[str, Any]:
        """The ``generateContent`` answer."""
        body = self.call_parts() if self.calls else [{"text": "".join(self.pieces)}]
        return self.event(self.thought_parts() + body, final=True)

    def events(self, limit: int | None) -> list[dict[str, Any]]:
        """Stream payloads: thoughts, then content; ``limit`` keeps that many content events, unfinished."""
        out = [self.event(self.thought_parts(), final=False)] if self.show_thoughts else []
        if self.calls:
            out.append(self.event(self.call_parts(), final=limit is None))
            return out if limit is None or limit > 0 else out[:-1]
        pieces = self.pieces if limit is None else self.pieces[:limit]
        last = len(pieces) - 1
        out.extend(self.event([{"text": p}], final=limit is None and i == last) for i, p in enumerate(pieces))
        if limit is None and not pieces:
            out.append(self.event([{"text": ""}], final=True))
        return out


def _sse(payload: dict[str, Any] | bytes) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return b"data: " + data + b"\r\n\r\n"


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def _options(self, model: str, sim: Any) -> tuple[str, Behaviour, _Extras]:
        name, suffix = parse_model(model)
        if sim is not None and not isinstance(sim, Mapping):
            raise OptionError("'sim' must be an object")
        layers = [suffix, dict(sim or {})]
        extras: dict[str, Any] = {}
        for layer in layers:
            for key in GEMINI_OPTIONS & layer.keys():
                extras[key] = layer.pop(key)
        b = build_behaviour(self.state.resolver.default_options, *layers)
        return name, b, _Extras(extras)

    async def _wait(self, request: Request, rec: dict[str, Any], b: Behaviour) -> bool:
        """Latency and ``hang``; True when the client went away meanwhile."""
        return await wait_or_leave(request.receive, self.state.stopping, rec, b)

    def _key_error(self, rec: dict[str, Any], request: Request, b: Behaviour) -> Response | None:
        if b.require_key is None:
            return None
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key is None:
            return _answer(rec, 403, error_body(403, _UNREGISTERED))
        return None if key == b.require_key else _answer(rec, 400, _BAD_KEY)

    async def generate(self, request: Request) -> Response:
        """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``."""
        rec = self.state.record(request)
        rec["query"] = request.url.query
        model_path, _, method = str(request.path_params["rest"]).rpartition(":")
        if method not in _METHODS or not model_path:
            path = request.scope["path"]
            return _answer(rec, 404, error_body(404, f"Method not found: POST {path}"))
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _answer(rec, 400, error_body(400, "Invalid JSON payload received. Unexpected token."))
        rec["body"] = body
        if not isinstance(body, dict):
            return _answer(rec, 400, error_body(400, "Invalid JSON payload received. Expected an object."))
        try:
            model, b, x = self._options(model_path.removeprefix("models/"), body.get("sim"))
        except OptionError as exc:
            return _answer(rec, 400, error_body(400, str(exc)))
        if await self._wait(request, rec, b):
            return SilentResponse()
        bad_key = self._key_error(rec, request, b)
        if bad_key is not None:
            return bad_key
        invalid = _invalid(body)
        if invalid is not None:
            return _answer(rec, 400, error_body(400, invalid))
        status = self.state.injected_status(b)
        if status is not None:
            return _answer(rec, status, error_body(status, retry_after=b.retry_after))
        reply = _Reply(model, f"sim-{self.state.next_id()}", b, x, body)
        if reply.unknown:
            names = ", ".join(reply.unknown)
            return _answer(
                rec, 400, error_body(400, f"simulator: tool_call names undeclared functions: {names}")
            )
        if method == "generateContent":
            return self._whole(rec, b, orjson.dumps(reply.whole()))
        if request.query_params.get("alt") != "sse":
            events = b",\r\n".join(orjson.dumps(e) for e in reply.events(None))
            return _answer(rec, 200, b"[" + events + b"]")
        return self._stream(request, rec, b, x, reply)

    def _whole(self, rec: dict[str, Any], b: Behaviour, payload: bytes) -> Response:
        if b.cut_after is not None:
            headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(payload)).encode())]
            return CutResponse(200, headers, rec)
        if b.invalid_json:
            payload = payload[: len(payload) // 2]
        return _answer(rec, 200, payload)

    def _stream(self, request: Request, rec: dict[str, Any], b: Behaviour, x: _Extras,
                reply: _Reply) -> Response:  # fmt: skip
        limit = b.cut_after if b.cut_after is not None else b.hang_after
        ending: Ending = "done"
        if x.stream_error is not None:
            sent = b.cut_after if b.cut_after is not None else max(len(reply.pieces), 1)
            events = [_sse(e) for e in reply.events(sent)]
            events.append(_sse({"error": error_object(x.stream_error)}))
        elif b.invalid_json:
            events = [_sse(b"{not json")]
        elif limit is not None:
            ending = "cut" if b.cut_after is not None else "hang"
            events = [_sse(e) for e in reply.events(limit)]
        else:
            events = [_sse(e) for e in reply.events(None)]
        watch = Watch(request.receive, self.state.stopping)
        return StreamResponse(events, ending, b.chunk_delay_ms / 1000, rec, watch, _SSE_HEADERS, end=b"")


def gemini_routes(state: SimState) -> list[Route]:
    """The Gemini endpoints, bound to the simulator's state (``create_app`` adds them)."""
    h = _Handlers(state)
    return [Route("/v1beta/models/{rest:path}", h.generate, methods=["POST"])]
