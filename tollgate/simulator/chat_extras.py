"""Chat answers on the simulator's OpenAI wire beyond plain text: tool calls, structured output, ``n`` choices
and ``logprobs`` (pure: bodies and chunk dicts, no I/O).

* ``tool_choice: "required"`` calls the first tool, ``{"type": "function", "function": {"name": N}}`` calls N
  (``"auto"`` / ``"none"`` answer with text). The arguments satisfy the simple cases of the tool's
  ``parameters`` schema (strings, numbers, booleans, enums, arrays, objects), ``finish_reason`` is
  ``tool_calls`` and the call ids are unique per response.
* ``response_format: {"type": "json_schema", ...}`` answers a JSON object built the same way from the schema;
  ``{"type": "json_object"}`` answers ``{"answer": "<the usual words>"}``.
* ``n``: that many identical choices (``index`` 0..n-1); usage counts every choice's tokens.
* ``logprobs: true`` (+ ``top_logprobs``): made-up log probabilities, one entry per token.

An explicit ``reply`` option is answered as it is (no structured answer, no logprobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tollgate.simulator import generate

__all__ = ["Extras", "extras_for"]


@dataclass(slots=True)
class Extras:
    """What the answer is instead of (or besides) the plain words."""

    n: int = 1
    call: dict[str, Any] | None = None  # {"name", "arguments"} of the tool to call
    content: str | None = None  # a structured-output answer replacing the words
    logprobs: int | None = None  # None: no logprobs; else how many top_logprobs
    pieces: list[str] = field(default_factory=list)


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = body.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return None
    if choice == "required":
        fn = tools[0]["function"]
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        fn = next((t["function"] for t in tools if t["function"].get("name") == name), None)
        if fn is None:
            return None
    else:
        return None
    return {
        "name": fn.get("name"),
        "arguments": orjson.dumps(generate.schema_instance(fn.get("parameters"))).decode(),
    }


def _structured(body: dict[str, Any], pieces: list[str]) -> str | None:
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        schema = fmt.get("json_schema") if isinstance(fmt, dict) else None
        return orjson.dumps(
            generate.schema_instance(schema.get("schema") if isinstance(schema, dict) else None)
        ).decode()
    if kind == "json_object":
        return orjson.dumps({"answer": "".join(pieces).strip()}).decode()
    return None


def extras_for(body: dict[str, Any], pieces: list[str], *, reply: bool = False) -> Extras | None:
    """None when the plain-text answer is all the request needs (the fast path). With an explicit ``reply``
    (the ``reply`` option) the words are that reply: no structured answer and no made-up logprobs."""
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    call = _tool_call(body)
    content = None if call is not None or reply else _structured(body, pieces)
    wants = body.get("logprobs") is True and not reply
    top = body.get("top_logprobs")
    logprobs = (top if isinstance(top, int) and not isinstance(top, bool) else 0) if wants else None
    if n == 1 and call is None and content is None and logprobs is None:
        return None
    answer_pieces = [content] if content is not None else pieces
    return Extras(n=n, call=call, content=content, logprobs=logprobs, pieces=answer_pieces)


def _logprobs(pieces: list[str], top: int) -> dict[str, Any]:
    def entry(token: str) -> dict[str, Any]:
        alternatives = [{"token": token, "logprob": -0.25, "bytes": list(token.encode())}][:top]
        return {"token": token, "logprob": -0.25, "bytes": list(token.encode()), "top_logprobs": alternatives}

    return {"content": [entry(p) for p in pieces], "refusal": None}


def completion_tokens(extras: Extras) -> int:
    """Tokens per choice: one per word piece, or the arguments' words for a tool call."""
    if extras.call is not None:
        return max(1, len(extras.call["arguments"].split()))
    return len(extras.pieces)


def choices(extras: Extras, cid: str, finish: str) -> list[dict[str, Any]]:
    """The ``choices`` of a ``chat.completion``."""
    out = []
    for index in range(extras.n):
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
        reason = finish
        if extras.call is not None:
            message["tool_calls"] = [
                {"id": f"call_{cid}_{index}", "type": "function", "function": dict(extras.call)}
            ]
            reason = "tool_calls"
        else:
            message["content"] = "".join(extras.pieces)
        lp = _logprobs(extras.pieces, extras.logprobs) if extras.logprobs is not None else None
        out.append({"index": index, "message": message, "logprobs": lp, "finish_reason": reason})
    return out


def chunks(extras: Extras, cid: str, finish: str) -> list[list[dict[str, Any]]]:
    """The ``choices`` of each ``chat.completion.chunk``, in order (the role, the pieces, the finish)."""
    out: list[list[dict[str, Any]]] = []
    for index in range(extras.n):

        def choice(delta: dict[str, Any], reason: str | None = None, lp: Any = None, i: int = index) -> Any:
            return [{"index": i, "delta": delta, "logprobs": lp, "finish_reason": reason}]

        out.append(choice({"role": "assistant", "content": "" if extras.call is None else None}))
        if extras.call is not None:
            call = {
                "index": 0,
                "id": f"call_{cid}_{index}",
                "type": "function",
                "function": dict(extras.call),
            }
            out.append(choice({"tool_calls": [call]}))
            out.append(choice({}, "tool_calls"))
            continue
        for piece in extras.pieces:
            lp = _logprobs([piece], extras.logprobs) if extras.logprobs is not None else None
            out.append(choice({"content": piece}, None, lp))
        out.append(choice({}, finish))
    return out
