"""Anthropic's Messages API on the simulator: ``POST /v1/messages``, JSON and SSE, in the documented wire
format (message object, ``message_start`` / ``content_block_start`` / ``ping`` / ``content_block_delta`` /
``content_block_stop`` / ``message_delta`` / ``message_stop`` events, ``{"type": "error", ...}`` bodies),
and ``POST /v1/messages/count_tokens`` (``{"input_tokens": N}``, N the ``prompt_tokens`` a
``/v1/messages`` call with the same body reports; ``max_tokens`` and ``stream`` are refused there).

The behaviour options of the OpenAI endpoints apply (``@k=v`` model suffix or the body's ``"sim"``
object): latency_ms, chunk_delay_ms, completion_tokens, prompt_tokens, cached_tokens (sent as
``cache_read_input_tokens``), reply, error (+ retry_after, fail_first, scenario), invalid_json, cut_after,
hang, hang_after, require_key (checked against ``x-api-key``). Anthropic always reports usage, so
no_usage and ignore_include_usage have no effect. Options only this endpoint knows:

* ``tool_call=NAME``: answer with a ``tool_use`` block calling the request's tool NAME (its input is built
  from the tool's ``input_schema``); a ``tool_choice`` of ``{"type": "tool"}`` forces that tool anyway.
* ``cache_creation_tokens=N``: prompt tokens reported as ``cache_creation_input_tokens``.
* ``stream_error=TYPE`` (+ ``stream_error_after=N`` text deltas, default 1): a stream that sends an
  ``event: error`` of that Anthropic error type (e.g. ``overloaded_error``) and then ends.

``prompt_tokens`` (given or counted) is the whole prompt as OpenAI counts it: ``input_tokens`` is what is
left after the cache reads and writes, so ``input + cache_read + cache_creation == prompt_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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

__all__ = ["ERROR_TYPES", "AnthropicOptions", "anthropic_routes", "error_body"]

_JSON: Final = "application/json"
ERROR_TYPES: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "Simulated invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_STREAM_ERRORS: Final = {etype: message for etype, message in ERROR_TYPES.values()}
_LOCAL: Final = frozenset(("tool_call", "cache_creation_tokens", "stream_error", "stream_error_after"))
_TOOL_JSON_PIECE: Final = 12  # characters of tool input per input_json_delta


@dataclass(frozen=True, slots=True)
class AnthropicOptions:
    """Options only ``/v1/messages`` understands (see the module docstring)."""

    tool_call: str | None = None
    cache_creation_tokens: int = 0
    stream_error: str | None = None
    stream_error_after: int = 1


def _local_options(values: dict[str, Any]) -> AnthropicOptions:
    def count(key: str, default: int) -> int:
        value = values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise OptionError(f"simulator option {key!r} must be an integer >= 0")
        return value

    tool, stream_error = values.get("tool_call"), values.get("stream_error")
    if tool is not None and (not isinstance(tool, str) or not tool):
        raise OptionError("simulator option 'tool_call' must be a tool name")
    if stream_error is not None and stream_error not in _STREAM_ERRORS:
        raise OptionError(
            f"simulator option 'stream_error' must be one of {', '.join(sorted(_STREAM_ERRORS))}"
        )
    return AnthropicOptions(
        tool, count("cache_creation_tokens", 0), stream_error, count("stream_error_after", 1)
    )


def resolve(
    defaults: Mapping[str, Any], model: Any, sim: Any
) -> tuple[str | None, Behaviour, AnthropicOptions]:
    """Like ``Resolver.resolve``, also splitting off the options only this endpoint knows."""
    name, suffix = parse_model(model) if isinstance(model, str) else (None, {})
    if sim is not None and not isinstance(sim, Mapping):
        raise OptionError("'sim' must be an object")
    body_opts = dict(sim or {})
    local: dict[str, Any] = {}
    for layer in (suffix, body_opts):
        for key in [k for k in layer if k in _LOCAL]:
            local[key] = layer.pop(key)
    return name, build_behaviour(defaults, suffix, body_opts), _local_options(local)


def error_body(status: int, request_id: str, message: str | None = None, etype: str | None = None) -> bytes:
    """Anthropic's error object: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    known_type, known_message = ERROR_TYPES.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Simulated error {status}.")
    )
    error = {"type": etype or known_type, "message": message or known_message}
    return orjson.dumps({"type": "error", "error": error, "request_id": request_id})


def _prompt_tokens(body: dict[str, Any], b: Behaviour) -> int:
    """The whole prompt's tokens: the ``prompt_tokens`` option, else the simulator's count of the messages
    and the system prompt (``generate.count_prompt_tokens``; tool definitions are not counted)."""
    if b.prompt_tokens is not None:
        return b.prompt_tokens
    system = body.get("system")
    return generate.count_prompt_tokens(body["messages"] + ([{"content": system}] if system else []))


def _event(name: str, **fields: Any) -> bytes:
    """One SSE event as Anthropic sends it: ``event: NAME`` and ``data: {"type": NAME, ...}``."""
    data = orjson.dumps({"type": name, **fields})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


@dataclass(slots=True)
class _Block:
    """One content block of the reply: ``text`` pieces, or a ``tool_use`` with its input in pieces."""

    kind: str
    pieces: list[str]
    tool: dict[str, Any] | None = None

    def content(self) -> dict[str, Any]:
        if self.tool is not None:
            return self.tool
        return {"type": "text", "text": "".join(self.pieces)}

    def start(self) -> dict[str, Any]:
        if self.tool is not None:
            return {**self.tool, "input": {}}
        return {"type": "text", "text": ""}

    def delta(self, piece: str) -> dict[str, Any]:
        if self.tool is not None:
            return {"type": "input_json_delta", "partial_json": piece}
        return {"type": "text_delta", "text": piece}


class Messages:
    """``POST /v1/messages`` bound to one ``SimState``."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def _reply(self, rec: dict[str, Any], status: int, body: bytes,
               headers: dict[str, str] | None = None) -> Response:  # fmt: skip
        rec["status"] = status
        rec["completed"] = True
        return Response(body, status, {"request-id": rec["request_id"], **(headers or {})}, _JSON)

    def _error(self, rec: dict[str, Any], status: int, message: str | None = None,
               headers: dict[str, str] | None = None) -> Response:  # fmt: skip
        return self._reply(rec, status, error_body(status, rec["request_id"], message), headers)

    async def _open(self, request: Request) -> tuple[dict[str, Any], dict[str, Any] | Response]:
        """The request's record and its JSON object body, or the 400 to send instead of the body."""
        rec = self.state.record(request)
        rec["request_id"] = f"req_sim{self.state.next_id():020d}"
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return rec, self._error(rec, 400, "There was an issue with the request body: invalid JSON")
        rec["body"] = body
        if not isinstance(body, dict):
            return rec, self._error(rec, 400, "The request body must be a JSON object.")
        return rec, body

    async def handle(self, request: Request) -> Response:
        admitted = await self._admit(request, counting=False)
        if isinstance(admitted, Response):
            return admitted
        rec, body, model, b, opts = admitted
        tool = self._tool(body, opts)
        if isinstance(tool, str):
            return self._error(rec, 400, tool)
        return self._answer(request, rec, body, model, b, opts, tool)

    async def count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens``: the options (latency, require_key, error, invalid_json,
        prompt_tokens) apply as on ``/v1/messages``."""
        admitted = await self._admit(request, counting=True)
        if isinstance(admitted, Response):
            return admitted
        rec, body, _, b, _ = admitted
        payload = orjson.dumps({"input_tokens": _prompt_tokens(body, b)})
        return self._reply(rec, 200, payload[: len(payload) // 2] if b.invalid_json else payload)

    async def _admit(
        self, request: Request, *, counting: bool
    ) -> tuple[dict[str, Any], dict[str, Any], str, Behaviour, AnthropicOptions] | Response:
        """What both endpoints do first: read the body and the options, wait (latency, hang), check the key,
        validate, inject an error. The record, body, model, behaviour and options; or the response to send."""
        rec, body = await self._open(request)
        if isinstance(body, Response):
            return body
        try:
            model, b, opts = resolve(self.state.resolver.default_options, body.get("model"), body.get("sim"))
        except OptionError as exc:
            return self._error(rec, 400, str(exc))
        early = await self._before(request, rec, b)
        if early is not None:
            return early
        problem = self._invalid(rec, body, model, counting=counting)
        if problem is not None:
            return self._error(rec, 400, problem)
        early = self._injected_error(rec, b)
        if early is not None:
            return early
        return rec, body, str(model), b, opts

    async def _before(self, request: Request, rec: dict[str, Any], b: Behaviour) -> Response | None:
        """Latency, hang and the API-key check: a response to send instead, or None to go on."""
        if await wait_or_leave(request.receive, self.state.stopping, rec, b):
            return SilentResponse()
        if b.require_key is not None:
            key = rec["headers"].get("x-api-key")
            if key != b.require_key:
                return self._error(rec, 401, "x-api-key header is required" if key is None else None)
        return None

    @staticmethod
    def _invalid(
        rec: dict[str, Any], body: dict[str, Any], model: str | None, *, counting: bool = False
    ) -> str | None:
        """Anthropic's own validation, as far as the simulator needs it (``counting``: of count_tokens)."""
        if "anthropic-version" not in rec["headers"]:
            return "anthropic-version: header is required"
        if model is None:
            return "model: Field required"
        max_tokens = body.get("max_tokens")
        if counting:
            extra = next((key for key in ("max_tokens", "stream") if key in body), None)
            if extra is not None:
                return f"{extra}: Extra inputs are not permitted"
        elif max_tokens is None:
            return "max_tokens: Field required"
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: Input should be a valid integer greater than or equal to 1"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        return None

    def _injected_error(self, rec: dict[str, Any], b: Behaviour) -> Response | None:
        status = self.state.injected_status(b)
        if status is None:
            return None
        retry = b.retry_after
        headers = None
        if retry is not None:
            headers = {"retry-after": str(int(retry)) if float(retry).is_integer() else str(retry)}
        return self._error(rec, status, None, headers)

    @staticmethod
    def _tool(body: dict[str, Any], opts: AnthropicOptions) -> dict[str, Any] | str | None:
        """The tool the reply calls (its definition), None for a text reply, or an error message."""
        tools = body.get("tools")
        by_name = {
            t["name"]: t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)
        } if isinstance(tools, list) else {}  # fmt: skip
        choice = body.get("tool_choice")
        choice_type = choice.get("type") if isinstance(choice, dict) else None
        if choice_type == "none":
            return None
        name = choice.get("name") if choice_type == "tool" and isinstance(choice, dict) else opts.tool_call
        if name is None:
            return None
        if name not in by_name:
            return f"simulator: the request has no tool named {name!r} to call"
        return by_name[name]

    def _answer(self, request: Request, rec: dict[str, Any], body: dict[str, Any], model: str,
                b: Behaviour, opts: AnthropicOptions, tool: dict[str, Any] | None) -> Response:  # fmt: skip
        stops = body.get("stop_sequences")
        max_tokens = body["max_tokens"]
        blocks: list[_Block] = []
        stop_reason, stop_sequence = "end_turn", None
        if tool is None or b.reply is not None:
            pieces, finish = generate.completion_pieces(b, max_tokens, stops)
            if finish == "length":
                stop_reason = "max_tokens"
            elif isinstance(stops, list):
                full = "".join(generate.completion_pieces(b, max_tokens, None)[0])
                text = "".join(pieces)
                if full != text:
                    stop_sequence = next(
                        (s for s in stops if isinstance(s, str) and s and full.startswith(text + s)), None
                    )
                    stop_reason = "stop_sequence"
            blocks.append(_Block("text", pieces))
        if tool is not None:
            args = orjson.dumps(generate.schema_instance(tool.get("input_schema"), nested=False)).decode()
            json_pieces = [args[i : i + _TOOL_JSON_PIECE] for i in range(0, len(args), _TOOL_JSON_PIECE)]
            call = {
                "type": "tool_use",
                "id": f"toolu_sim{self.state.next_id():015d}",
                "name": tool["name"],
                "input": orjson.loads(args),
            }
            blocks.append(_Block("tool_use", json_pieces, call))
            stop_reason, stop_sequence = "tool_use", None

        prompt = _prompt_tokens(body, b)
        cache_read = min(b.cached_tokens, prompt)
        cache_write = min(opts.cache_creation_tokens, prompt - cache_read)
        usage = {
            "input_tokens": prompt - cache_read - cache_write,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "output_tokens": sum(len(block.pieces) for block in blocks),
        }
        message = {
            "id": f"msg_sim{self.state.next_id():020d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block.content() for block in blocks],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        if body.get("stream") is True:
            return self._stream(request, rec, b, opts, message, blocks)
        payload = orjson.dumps(message)
        if b.cut_after is not None:
            length = str(len(payload)).encode()
            return CutResponse(200, [(b"content-type", _JSON.encode()), (b"content-length", length)], rec)
        if b.invalid_json:
            payload = payload[: len(payload) // 2]
        return self._reply(rec, 200, payload)

    def _stream(self, request: Request, rec: dict[str, Any], b: Behaviour, opts: AnthropicOptions,
                message: dict[str, Any], blocks: list[_Block]) -> Response:  # fmt: skip
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 1}}  # fmt: skip
        events = [_event("message_start", message=start)]
        ending: Ending = "done"
        limit = b.cut_after if b.cut_after is not None else b.hang_after
        error_after = opts.stream_error_after if opts.stream_error is not None else None
        if b.invalid_json:
            events.append(b"event: content_block_delta\ndata: {not json\n\n")
            limit = error_after = None
        deltas = 0
        for index, block in enumerate(blocks):
            if b.invalid_json:
                break
            events.append(_event("content_block_start", index=index, content_block=block.start()))
            if index == 0:
                events.append(_event("ping"))
            for piece in block.pieces:
                if deltas == limit or deltas == error_after:
                    break
                events.append(_event("content_block_delta", index=index, delta=block.delta(piece)))
                deltas += 1
            if deltas == limit or deltas == error_after:
                break
            events.append(_event("content_block_stop", index=index))
        if b.invalid_json:
            pass
        elif opts.stream_error is not None:
            err = {"type": opts.stream_error, "message": _STREAM_ERRORS[opts.stream_error]}
            events.append(_event("error", error=err))
        elif limit is not None:
            ending = "cut" if b.cut_after is not None else "hang"
        else:
            delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
            output = {"output_tokens": usage["output_tokens"]}
            events.append(_event("message_delta", delta=delta, usage=output))
            events.append(_event("message_stop"))
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"request-id", rec["request_id"].encode()),
        ]
        watch = Watch(request.receive, self.state.stopping)
        return StreamResponse(events, ending, b.chunk_delay_ms / 1000, rec, watch, headers, end=b"")


def anthropic_routes(state: SimState) -> list[Route]:
    """The Anthropic routes of the simulator."""
    messages = Messages(state)
    return [
        Route("/v1/messages", messages.handle, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
    ]
