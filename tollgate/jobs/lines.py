"""The input file, line by line, in constant memory: splitting it into newline-aligned chunks, reading a
chunk's lines back, and validating each line.

A line is one JSON object ``{"text": ..., "id"?: ..., "custom_id"?: ...}``. Every physical line counts (the
file's final newline does not start one): a bad line (not JSON, no text, too long, blank) becomes that line's
error in the results, with its number, and never fails the job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from tollgate.classify.request import MAX_TEXT_CHARS

MAX_LINE_BYTES = 1 << 20  # a text of MAX_TEXT_CHARS characters, JSON-escaped, fits with room to spare
MAX_CHUNK_BYTES = 8 << 20  # a chunk ends at its line count or at the first newline past this many bytes
MAX_ID_CHARS = 256
FIELDS = frozenset({"text", "id", "custom_id"})


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes ``[start, end)`` of the input: ``lines`` whole lines, the first of them number ``first_line``."""

    start: int
    end: int
    first_line: int
    lines: int


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    ids: dict[str, Any]  # ``id`` / ``custom_id`` as given, carried to the result


async def split(
    blocks: AsyncIterator[bytes], chunk_lines: int, max_chunk_bytes: int = MAX_CHUNK_BYTES
) -> AsyncIterator[Chunk]:
    """The chunks of a stream of bytes, in order."""
    offset = 0  # absolute offset of the current block
    start = 0  # where the open chunk starts
    lines = 0  # whole lines in the open chunk
    first = 1
    tail = False  # bytes after the last newline seen
    async for block in blocks:
        pos = 0
        while (nl := block.find(b"\n", pos)) >= 0:
            lines += 1
            pos = nl + 1
            end = offset + pos
            if lines >= chunk_lines or end - start >= max_chunk_bytes:
                yield Chunk(start, end, first, lines)
                first += lines
                start, lines = end, 0
        offset += len(block)
        if block:
            tail = pos < len(block)
    if tail or lines:
        yield Chunk(start, offset, first, lines + (1 if tail else 0))


async def iter_lines(
    blocks: AsyncIterator[bytes], max_line: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes | None]:
    """The lines of a chunk (without their newline); ``None`` for a line over ``max_line`` bytes, which is
    skipped without being held."""
    held: list[bytes] = []
    size = 0
    over = False
    async for block in blocks:
        pos = 0
        while (nl := block.find(b"\n", pos)) >= 0:
            piece = block[pos:nl]
            pos = nl + 1
            if over or size + len(piece) > max_line:
                yield None
            else:
                yield b"".join([*held, piece]) if held else piece
            held, size, over = [], 0, False
        rest = block[pos:]
        if rest and not over:
            size += len(rest)
            if size > max_line:
                held, over = [], True
            else:
                held.append(rest)
    if held or over:
        yield None if over else b"".join(held)


def parse_line(raw: bytes | None, number: int) -> Line | str:
    """The line's text and ids, or what is wrong with it (naming the line)."""
    where = f"line {number}"
    if raw is None:
        return f"{where} is over {MAX_LINE_BYTES} bytes"
    if not raw.strip():
        return f"{where} is blank; each line must be a JSON object with a 'text'"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"{where} is not valid JSON"
    if not isinstance(data, dict):
        return f'{where} must be a JSON object like {{"text": "..."}}'
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        return f"{where}: unknown field '{unknown[0]}'; accepted: custom_id, id, text"
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return f"{where}: 'text' must be a non-empty string"
    if len(text) > MAX_TEXT_CHARS:
        return f"{where}: 'text' is {len(text)} characters; the limit is {MAX_TEXT_CHARS}"
    ids: dict[str, Any] = {}
    for name in ("id", "custom_id"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            return f"{where}: '{name}' must be a string or an integer"
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            return f"{where}: '{name}' is over {MAX_ID_CHARS} characters"
        ids[name] = value
    return Line(text, ids)
