"""Pure unit tests: simulator option parsing/merging and deterministic content."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from tollgate.simulator.__main__ import parse_args
from tollgate.simulator.behaviour import (
    Behaviour,
    OptionError,
    Resolver,
    build_behaviour,
    parse_model,
    parse_suffix,
    parse_value,
)
from tollgate.simulator.generate import (
    WORDS,
    completion_pieces,
    count_prompt_tokens,
    embedding,
    embedding_tokens,
    encode_base64,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500", 500),
        ("-3", -3),
        ("2.5", 2.5),
        ("true", True),
        ("False", False),
        ("null", None),
        ("abc", "abc"),
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_model_and_suffix() -> None:
    assert parse_model("sim-small") == ("sim-small", {})
    assert parse_model("sim-small@error=500,latency_ms=50") == ("sim-small", {"error": 500, "latency_ms": 50})
    assert parse_model("m@hang, reply=hi there ,") == ("m", {"hang": True, "reply": "hi there"})
    assert parse_suffix("") == {}
    assert parse_suffix("x=1.5") == {"x": 1.5}


def test_build_behaviour_defaults_and_merge_order() -> None:
    assert build_behaviour() == Behaviour()
    b = build_behaviour({"error": 500, "latency_ms": 5}, {"error": 429}, {"retry_after": "2", "hang": "yes"})
    assert (b.error, b.latency_ms, b.retry_after, b.hang) == (429, 5.0, 2.0, True)
    assert build_behaviour({"scenario": 7}).scenario == "7"
    assert build_behaviour({"completion_tokens": 3.0}).completion_tokens == 3
    assert build_behaviour({"reply": None}).reply is None


@pytest.mark.parametrize(
    "options",
    [
        {"nope": 1},
        {"error": 200},
        {"error": "x"},
        {"completion_tokens": -1},
        {"completion_tokens": True},
        {"completion_tokens": 1.5},
        {"latency_ms": "slow"},
        {"latency_ms": float("inf")},
        {"hang": "maybe"},
        {"scenario": ["a"]},
        {"fail_first": None},
    ],
)
def test_build_behaviour_rejects(options: dict[str, object]) -> None:
    with pytest.raises(OptionError):
        build_behaviour(options)


def test_resolver_layers_and_cache() -> None:
    resolver = Resolver({"completion_tokens": 5, "latency_ms": 1})
    name, b = resolver.resolve("sim-small")
    assert name == "sim-small" and b is resolver.defaults and b.completion_tokens == 5
    name, b = resolver.resolve("sim-small@completion_tokens=7,error=503")
    assert name == "sim-small" and (b.completion_tokens, b.error, b.latency_ms) == (7, 503, 1.0)
    assert resolver.resolve("sim-small@completion_tokens=7,error=503")[1] is b  # cached
    _, b2 = resolver.resolve("sim-small@completion_tokens=7", {"completion_tokens": 9, "no_usage": True})
    assert (b2.completion_tokens, b2.no_usage) == (9, True)
    assert resolver.resolve(None) == (None, resolver.defaults)
    with pytest.raises(OptionError):
        resolver.resolve("m", ["not", "a", "dict"])
    with pytest.raises(OptionError):
        resolver.resolve("m@bogus=1")
    with pytest.raises(OptionError):
        Resolver({"bogus": 1})


def test_completion_pieces_default_and_reply() -> None:
    pieces, finish = completion_pieces(Behaviour(), None, None)
    assert len(pieces) == 20 and finish == "stop"
    assert pieces == [w + " " for w in WORDS][:20]
    assert completion_pieces(Behaviour(completion_tokens=21), None, None)[0][-1] == WORDS[0] + " "
    pieces, _ = completion_pieces(Behaviour(reply="Hello  big world"), None, None)
    assert pieces == ["Hello ", "big ", "world "]
    pieces, _ = completion_pieces(Behaviour(reply="a b", completion_tokens=5), None, None)
    assert "".join(pieces) == "a b a b a "
    assert completion_pieces(Behaviour(reply=""), None, None) == ([], "stop")
    assert completion_pieces(Behaviour(completion_tokens=0), None, None) == ([], "stop")


def test_completion_pieces_max_tokens_and_stop() -> None:
    assert completion_pieces(Behaviour(completion_tokens=5), 3, None) == (
        ["lorem ", "ipsum ", "dolor "],
        "length",
    )
    assert completion_pieces(Behaviour(completion_tokens=3), 3, None)[1] == "stop"
    pieces, finish = completion_pieces(Behaviour(), None, "dolor")
    assert (pieces, finish) == (["lorem ", "ipsum "], "stop")
    pieces, finish = completion_pieces(Behaviour(), None, ["zzz", "sum do", "amet"])
    assert (pieces, finish) == (["lorem ", "ip"], "stop")
    # the stop sequence lies beyond the max_tokens cut: length wins
    assert completion_pieces(Behaviour(), 2, "dolor") == (["lorem ", "ipsum "], "length")
    assert completion_pieces(Behaviour(completion_tokens=2), None, "") == (["lorem ", "ipsum "], "stop")


def test_count_prompt_tokens() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    assert count_prompt_tokens(messages) == 3 + (4 + 2) + (4 + 3 + 85) + 4
    assert count_prompt_tokens([{"role": "user", "content": "hi"}]) == 8


def test_embeddings_are_deterministic_unit_vectors() -> None:
    a, packed = embedding("hello", 8)
    assert embedding("hello", 8) == (a, packed)
    assert embedding("other", 8)[0] != a
    assert len(a) == 8 and math.isclose(math.sqrt(sum(v * v for v in a)), 1.0, rel_tol=1e-5)
    assert list(struct.unpack("<8f", base64.b64decode(encode_base64(packed)))) == a
    assert len(embedding([1, 2, 3], 16)[0]) == 16
    assert (embedding_tokens("a b c"), embedding_tokens([1, 2]), embedding_tokens("")) == (3, 2, 1)


def test_cli_parse_args() -> None:
    host, port, defaults = parse_args(
        ["--port", "1234", "--latency-ms", "5", "--completion-tokens", "3", "-o", "error=503", "-o", "hang"]
    )
    assert (host, port) == ("127.0.0.1", 1234)
    assert defaults == {"latency_ms": 5.0, "completion_tokens": 3, "error": 503, "hang": True}
    with pytest.raises(SystemExit):
        parse_args(["-o", "bogus=1"])
