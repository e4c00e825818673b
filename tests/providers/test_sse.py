"""tollgate/providers/sse.py: splitting a byte stream into events and reading each event."""

from __future__ import annotations

import itertools
import json

import pytest

from tollgate.providers.sse import DONE, SSESplitter, encode_data, parse_event, rename_model

EVENTS = [b'data: {"a":1}', b"event: ping\ndata: x", b'data: {"b":"two\\n"}', b"data: [DONE]"]


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = SSESplitter()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out, splitter.pending


def split_at(data: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_whole_stream_in_one_chunk(newline: bytes) -> None:
    stream = b"".join(e.replace(b"\n", newline) + newline * 2 for e in EVENTS)
    events, pending = feed_all([stream])
    assert events == [e.replace(b"\n", newline) for e in EVENTS]
    assert pending == b""


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_every_single_split_point_gives_the_same_events(newline: bytes) -> None:
    stream = b"".join(e.replace(b"\n", newline) + newline * 2 for e in EVENTS)
    expected = [e.replace(b"\n", newline) for e in EVENTS]
    for cut in range(1, len(stream)):
        assert feed_all(split_at(stream, (cut,))) == (expected, b""), cut


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_every_pair_of_split_points_gives_the_same_events(newline: bytes) -> None:
    stream = b"".join(e.replace(b"\n", newline) + newline * 2 for e in EVENTS[:3])
    expected = [e.replace(b"\n", newline) for e in EVENTS[:3]]
    for cuts in itertools.combinations(range(1, len(stream)), 2):
        assert feed_all(split_at(stream, cuts)) == (expected, b""), cuts


def test_byte_by_byte_crlf_stream() -> None:
    stream = b'data: {"a":1}\r\n\r\nevent: e\r\ndata: 2\r\n\r\n'
    events, pending = feed_all([bytes([b]) for b in stream])
    assert events == [b'data: {"a":1}', b"event: e\r\ndata: 2"]
    assert pending == b""


def test_crlf_boundary_split_between_cr_and_lf() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: 1\r\n\r") == []
    assert splitter.feed(b"\ndata: 2\r") == [b"data: 1"]
    assert splitter.feed(b"\n\r\n") == [b"data: 2"]
    assert splitter.pending == b""


def test_incomplete_event_is_kept_pending() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: 1\n\ndata: par") == [b"data: 1"]
    assert splitter.pending == b"data: par"
    assert splitter.feed(b"tial\n") == []
    assert splitter.pending == b"data: partial\n"
    assert splitter.feed(b"\n") == [b"data: partial"]


def test_extra_blank_lines_produce_no_empty_events() -> None:
    events, _ = feed_all([b"\n\ndata: 1\n\n\n\n\n\ndata: 2\n\n"])
    assert events == [b"data: 1", b"data: 2"]


def test_empty_feed_returns_nothing() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"") == []
    assert splitter.pending == b""


# parse_event --------------------------------------------------------------------------------------------


def test_parse_plain_data_event() -> None:
    assert parse_event(b'data: {"x": 1}') == ("message", b'{"x": 1}')


def test_parse_named_event() -> None:
    assert parse_event(b"event: content_block_delta\ndata: {}") == ("content_block_delta", b"{}")


def test_parse_multi_line_data_joins_with_newlines() -> None:
    assert parse_event(b"data: first\ndata: second\r\ndata:third") == ("message", b"first\nsecond\nthird")


def test_parse_keeps_all_but_one_leading_space() -> None:
    assert parse_event(b"data:  two spaces") == ("message", b" two spaces")
    assert parse_event(b"data:none") == ("message", b"none")


def test_parse_empty_data_lines_contribute_empty_lines() -> None:
    assert parse_event(b"data: a\ndata:\ndata: b") == ("message", b"a\n\nb")


def test_parse_drops_comments_and_other_fields() -> None:
    raw = b": keep-alive\nid: 7\nretry: 1000\ndata: payload\n:another comment"
    assert parse_event(raw) == ("message", b"payload")


def test_parse_comment_only_event_has_no_data() -> None:
    assert parse_event(b": OPENROUTER PROCESSING") == ("message", b"")


def test_parse_data_containing_colons_and_the_word_data() -> None:
    assert parse_event(b'data: {"k": "data: x"}') == ("message", b'{"k": "data: x"}')


def test_encode_data_and_done_are_sse_frames() -> None:
    assert encode_data(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    (event,) = SSESplitter().feed(encode_data(b"[1]"))
    assert parse_event(event) == ("message", b"[1]")


def test_rename_model_sets_each_chunks_model_and_leaves_other_events_alone() -> None:
    frames = (
        b'data: {"id":"c1","model":"upstream-b","choices":[]}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    )
    out = rename_model(frames, "r-backup")
    events = out.split(b"\n\n")
    assert json.loads(events[0][6:]) == {"id": "c1", "model": "r-backup", "choices": []}
    assert events[1:] == [b"data: [DONE]", b'data: {"choices":[{"delta":{"content":"hi"}}]}', b""]
