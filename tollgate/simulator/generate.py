"""Deterministic content for simulated responses: completion words, token counts, embeddings."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any, Final

import orjson

from tollgate.simulator.behaviour import Behaviour

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "WORDS",
    "completion",
    "completion_pieces",
    "count_prompt_tokens",
    "embedding",
    "embedding_tokens",
    "encode_base64",
    "schema_instance",
]

WORDS: Final = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim",
)  # fmt: skip
DEFAULT_COMPLETION_TOKENS: Final = 20
DEFAULT_EMBEDDING_DIMENSIONS: Final = 8
NON_TEXT_PART_TOKENS: Final = 85


def _stops(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def completion_pieces(behaviour: Behaviour, max_tokens: int | None, stop: Any) -> tuple[list[str], str]:
    """Return the completion as one string per token (``"word "``) and the finish reason."""
    pieces, finish, _ = completion(behaviour, max_tokens, stop)
    return pieces, finish


def completion(behaviour: Behaviour, max_tokens: int | None, stop: Any) -> tuple[list[str], str, str | None]:
    """``completion_pieces`` plus the stop sequence that cut the text (None when none did)."""
    words: tuple[str, ...] | list[str] = WORDS if behaviour.reply is None else behaviour.reply.split()
    if behaviour.completion_tokens is not None:
        n = behaviour.completion_tokens
    else:
        n = DEFAULT_COMPLETION_TOKENS if behaviour.reply is None else len(words)
    if not words:
        n = 0
    finish = "stop"
    if max_tokens is not None and n > max_tokens:
        n, finish = max_tokens, "length"
    count = len(words)
    pieces = [words[i % count] + " " for i in range(n)]
    stops = _stops(stop)
    if stops and pieces:
        text = "".join(pieces)
        cuts = sorted((i, s) for s in stops if (i := text.find(s)) >= 0)
        if cuts:
            pieces = _cut(pieces, cuts[0][0])
            return pieces, "stop", cuts[0][1]
    return pieces, finish, None


def _cut(pieces: list[str], index: int) -> list[str]:
    out: list[str] = []
    pos = 0
    for piece in pieces:
        if pos + len(piece) <= index:
            out.append(piece)
            pos += len(piece)
            continue
        if index > pos:
            out.append(piece[: index - pos])
        break
    return out


def count_prompt_tokens(messages: list[Any]) -> int:
    """3 + for each message: 4 + its words (text parts) or 85 per non-text part."""
    total = 3
    for message in messages:
        total += 4
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
                total += len(text.split()) if isinstance(text, str) else NON_TEXT_PART_TOKENS
    return total


def embedding_tokens(item: Any) -> int:
    """Token count of one embeddings input item (words of a string, or a token-id list's length)."""
    if isinstance(item, str):
        return max(1, len(item.split()))
    return len(item) if isinstance(item, list) else 1


def embedding(item: Any, dimensions: int) -> tuple[list[float], bytes]:
    """A unit-length vector derived from a hash of ``item``: (float32-exact floats, little-endian bytes)."""
    data = item.encode() if isinstance(item, str) else orjson.dumps(item)
    raw = struct.unpack(f"<{dimensions}I", hashlib.shake_256(data).digest(4 * dimensions))
    values = [r / 2147483648.0 - 1.0 for r in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed)), packed


def encode_base64(packed: bytes) -> str:
    """Base64 of little-endian float32 data, as OpenAI's ``encoding_format: "base64"``."""
    return base64.b64encode(packed).decode("ascii")


def schema_instance(schema: Any, *, nested: bool = True) -> dict[str, Any]:
    """A deterministic object satisfying the simple cases of a JSON schema's top-level properties: a tool
    call's arguments or input, a structured-output answer. An ``object`` property is filled the same way
    (``nested``) or left empty (``nested=False``, as the Anthropic wire answers)."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    out: dict[str, Any] = {}
    for i, (key, spec) in enumerate(props.items() if isinstance(props, dict) else ()):
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
            out[key] = spec["enum"][0]
        elif kind == "string":
            out[key] = WORDS[i % len(WORDS)]
        elif kind == "integer":
            out[key] = i + 1
        elif kind == "number":
            out[key] = i + 0.5
        elif kind == "boolean":
            out[key] = True
        elif kind == "array":
            out[key] = []
        elif kind == "object":
            out[key] = schema_instance(spec) if nested else {}
        else:
            out[key] = None
    return out
