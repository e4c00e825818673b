"""``jobs/lines.py``: chunking and line reading agree with a plain ``split`` of the file, whatever the block
boundaries; bad lines are named by number."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import orjson
import pytest

from tollgate.classify.request import MAX_TEXT_CHARS
from tollgate.jobs.lines import Chunk, Line, iter_lines, parse_line, split

pytestmark = pytest.mark.asyncio


async def blocks(data: bytes, rng: random.Random) -> AsyncIterator[bytes]:
    at = 0
    while at < len(data):
        n = rng.choice([1, 2, 7, 64, 1000, 65536])
        yield data[at : at + n]
        at += n


async def chunks_of(data: bytes, lines: int, max_bytes: int, seed: int) -> list[Chunk]:
    return [c async for c in split(blocks(data, random.Random(seed)), lines, max_bytes)]


@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("seed", range(5))
async def test_chunks_cover_every_line_once_on_line_boundaries(trailing_newline: bool, seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"x" * rng.randint(0, 300) for _ in range(2345)]
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    chunks = await chunks_of(data, 100, 10_000, seed)
    assert chunks[0].start == 0 and chunks[-1].end == len(data)
    assert sum(c.lines for c in chunks) == len(lines)
    first = 1
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end == b.start and data[a.end - 1 : a.end] == b"\n"
    for c in chunks:
        assert c.first_line == first and 1 <= c.lines <= 100
        assert c.end - c.start < 10_000 + 301  # closed at the first newline past the byte bound
        got = [line async for line in iter_lines(blocks(data[c.start : c.end], rng))]
        assert got == lines[first - 1 : first - 1 + c.lines]
        first += c.lines


async def test_an_oversized_line_is_skipped_without_being_held() -> None:
    data = b"short\n" + b"y" * 5000 + b"\nlast"
    got = [line async for line in iter_lines(blocks(data, random.Random(1)), max_line=1000)]
    assert got == [b"short", None, b"last"]
    assert await chunks_of(b"", 10, 100, 0) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "line 7 is blank; each line must be a JSON object with a 'text'"),
        (b"{not json", "line 7 is not valid JSON"),
        (b'["a"]', 'line 7 must be a JSON object like {"text": "..."}'),
        (b'{"txt": "a"}', "line 7: unknown field 'txt'; accepted: custom_id, id, text"),
        (b'{"text": "  "}', "line 7: 'text' must be a non-empty string"),
        (b'{"text": 5}', "line 7: 'text' must be a non-empty string"),
        (b'{"text": "a", "id": [1]}', "line 7: 'id' must be a string or an integer"),
        (b'{"text": "a", "custom_id": "' + b"c" * 300 + b'"}', "line 7: 'custom_id' is over 256 characters"),
        (None, "line 7 is over 1048576 bytes"),
        (
            orjson.dumps({"text": "t" * (MAX_TEXT_CHARS + 1)}),
            f"line 7: 'text' is {MAX_TEXT_CHARS + 1} characters; the limit is {MAX_TEXT_CHARS}",
        ),
    ],
)
async def test_bad_lines_say_what_is_wrong_and_where(raw: bytes | None, message: str) -> None:
    assert parse_line(raw, 7) == message


async def test_good_lines_carry_their_ids() -> None:
    assert parse_line(b'{"text": "hi", "id": 3, "custom_id": "c-1"}', 1) == Line(
        "hi", {"id": 3, "custom_id": "c-1"}
    )
