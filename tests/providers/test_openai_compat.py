"""tollgate/providers/openai_compat.py (pure parts) and the OpenAI usage reader in providers/usage.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
)
from tollgate.providers.openai_compat import OpenAIStream, map_error, prepare_body
from tollgate.providers.sse import SSESplitter
from tollgate.providers.usage import Usage

# prepare_body -------------------------------------------------------------------------------------------


def test_prepare_body_swaps_in_the_upstream_model_and_keeps_unknown_fields() -> None:
    body: dict[str, Any] = {
        "model": "public-id",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "logit_bias": {"50256": -100},
        "vendor_extension": {"nested": [1, 2, 3]},
    }
    sent = orjson.loads(prepare_body(body, "upstream-name", stream=False))
    assert sent == {**body, "model": "upstream-name"}
    assert "stream_options" not in sent


def test_prepare_body_for_a_stream_asks_for_usage() -> None:
    sent = orjson.loads(prepare_body({"model": "m", "stream": True}, "u", stream=True))
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["stream"] is True


def test_prepare_body_keeps_the_clients_other_stream_options() -> None:
    body = {"model": "m", "stream": True, "stream_options": {"include_obfuscation": False, "x": 1}}
    sent = orjson.loads(prepare_body(body, "u", stream=True))
    assert sent["stream_options"] == {"include_obfuscation": False, "x": 1, "include_usage": True}


def test_prepare_body_overrides_a_client_that_turned_usage_off() -> None:
    body = {"model": "m", "stream_options": {"include_usage": False}}
    assert orjson.loads(prepare_body(body, "u", stream=True))["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("junk", [None, "yes", [1], 3])
def test_prepare_body_replaces_malformed_stream_options(junk: Any) -> None:
    body = {"model": "m", "stream_options": junk}
    assert orjson.loads(prepare_body(body, "u", stream=True))["stream_options"] == {"include_usage": True}


def test_prepare_body_does_not_modify_the_clients_body() -> None:
    options = {"x": 1}
    body = {"model": "public", "stream_options": options}
    prepare_body(body, "upstream", stream=True)
    assert body == {"model": "public", "stream_options": {"x": 1}}
    assert options == {"x": 1}


def test_prepare_body_leaves_stream_options_alone_without_streaming() -> None:
    body = {"model": "m", "stream_options": {"x": 1}}
    assert orjson.loads(prepare_body(body, "u", stream=False))["stream_options"] == {"x": 1}


# map_error ----------------------------------------------------------------------------------------------

OPENAI_ERROR = orjson.dumps({"error": {"message": "Rate limit reached", "type": "requests"}})


def test_429_is_a_rate_limit_with_retry_after() -> None:
    err = map_error("prov", 429, OPENAI_ERROR, "17")
    assert isinstance(err, UpstreamRateLimitError)
    assert err.status == 429 and err.retryable
    assert err.headers == {"Retry-After": "17"}
    assert err.message == "prov: upstream answered 429: Rate limit reached"


def test_429_without_retry_after_has_no_header() -> None:
    assert map_error("prov", 429, b"").headers == {}


def test_503_is_unavailable_and_keeps_retry_after() -> None:
    err = map_error("prov", 503, b"overloaded", "5")
    assert isinstance(err, UpstreamUnavailableError)
    assert err.status == 503 and err.retryable
    assert err.headers == {"Retry-After": "5"}
    assert "overloaded" in err.message


@pytest.mark.parametrize("status", [401, 403])
def test_credential_errors_blame_the_provider_key_not_the_client(status: int) -> None:
    err = map_error("prov", status, orjson.dumps({"error": {"message": "Incorrect API key sk-..."}}))
    assert isinstance(err, UpstreamBadResponseError)
    assert err.status == 502, "the client's own key was fine; never forward a 401"
    assert "provider key" in err.message and str(status) in err.message
    assert "sk-" not in err.message


@pytest.mark.parametrize("status", [400, 413, 422])
def test_other_client_errors_are_rejections_that_are_not_retried(status: int) -> None:
    err = map_error("prov", status, orjson.dumps({"error": {"message": "max_tokens is too large"}}))
    assert isinstance(err, UpstreamRejectedError)
    assert err.status == 400 and not err.retryable
    assert err.message == f"prov: upstream answered {status}: max_tokens is too large"


@pytest.mark.parametrize("status", [404, 408, 409, 500, 502, 504, 520])
def test_server_side_and_transient_errors_are_retryable_bad_responses(status: int) -> None:
    err = map_error("prov", status, b"oops", "3")
    assert type(err) is UpstreamBadResponseError
    assert err.status == 502 and err.retryable


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (orjson.dumps({"error": {"message": "nested message"}}), "nested message"),
        (orjson.dumps({"error": "plain string error"}), "plain string error"),
        (orjson.dumps({"message": "top-level message"}), "top-level message"),
        (orjson.dumps({"detail": "fastapi style"}), "{'detail': 'fastapi style'}"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"   ", "(empty body)"),
        (b"", "(empty body)"),
    ],
)
def test_error_message_is_taken_from_the_upstream_body(body: bytes, shown: str) -> None:
    err: UpstreamError = map_error("prov", 500, body)
    assert err.message == f"prov: upstream answered 500: {shown}"


def test_long_non_json_bodies_are_truncated() -> None:
    err = map_error("prov", 500, b"x" * 5000)
    assert len(err.message) < 300


# Usage.from_openai --------------------------------------------------------------------------------------


def test_usage_from_openai_reads_every_detail() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 30, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 20},
        }
    )
    assert usage == Usage(prompt_tokens=100, completion_tokens=50, cached_tokens=30, reasoning_tokens=20)


def test_usage_from_openai_reads_deepseek_cache_hits() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 120,
            "completion_tokens": 8,
            "total_tokens": 128,
            "prompt_cache_hit_tokens": 64,
            "prompt_cache_miss_tokens": 56,
        }
    )
    assert usage is not None and usage.cached_tokens == 64 and usage.prompt_tokens == 120


def test_usage_from_openai_prefers_prompt_tokens_details() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 4},
            "prompt_cache_hit_tokens": 9,
        }
    )
    assert usage is not None and usage.cached_tokens == 4


def test_usage_from_openai_with_null_details() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        }
    )
    assert usage == Usage(prompt_tokens=10, completion_tokens=2)


def test_usage_from_openai_without_completion_tokens() -> None:
    assert Usage.from_openai({"prompt_tokens": 7}) == Usage(prompt_tokens=7)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "usage",
        {},
        {"completion_tokens": 1},
        {"prompt_tokens": "10"},
        {"prompt_tokens": 1.5},
        {"prompt_tokens": 1, "completion_tokens": "2"},
    ],
)
def test_usage_from_openai_is_none_when_missing_or_malformed(raw: Any) -> None:
    assert Usage.from_openai(raw) is None


def test_usage_to_openai_round_trips() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=50, cached_tokens=30, reasoning_tokens=20)
    wire = usage.to_openai()
    assert wire["total_tokens"] == 150
    assert Usage.from_openai(wire) == usage


# OpenAIStream (the translation of one upstream read; no I/O) ----------------------------------------------


def _chunk(delta: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "c1", "created": 7, "model": "up", **extra}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    return orjson.dumps(body)


def _read(stream: OpenAIStream, raw: bytes) -> bytes:
    out, failure = stream._read(SSESplitter().feed(raw))
    if failure is not None:
        raise failure
    return out


def test_stream_frames_are_relayed_byte_for_byte_and_the_text_kept() -> None:
    events = [
        b"data: " + _chunk({"role": "assistant", "content": ""}),
        b"data: " + _chunk({"reasoning_content": "Think. "}),
        b"data: " + _chunk({"content": "Tolls "}),
        b"data: " + _chunk({"content": "pay."}),
        b"data: " + _chunk(None, choices=[], usage={"prompt_tokens": 5, "completion_tokens": 3}),
    ]
    stream = OpenAIStream("up", None)  # type: ignore[arg-type]
    out = _read(stream, b"\n\n".join(events) + b"\n\ndata: [DONE]\n\n")
    assert out == b"".join(e + b"\n\n" for e in events)  # [DONE] is the gateway's to send
    assert stream.finished and stream.chunks == 5
    assert stream.meta == {"id": "c1", "created": 7, "model": "up"}
    assert stream.usage == Usage(prompt_tokens=5, completion_tokens=3)
    assert stream.text() == "Think. Tolls pay."


def test_stream_events_framed_otherwise_are_reframed_as_single_data_lines() -> None:
    stream = OpenAIStream("up", None)  # type: ignore[arg-type]
    raw = b"event: message\r\ndata: " + _chunk({"content": "a"}) + b"\r\n\r\n: keep-alive\r\n\r\n"
    assert _read(stream, raw) == b"data: " + _chunk({"content": "a"}) + b"\n\n"
    assert stream.text() == "a" and not stream.finished


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (b"data: {not json", "invalid JSON in its stream"),
        (b"data: [1, 2]", "non-object stream chunk"),
        (b'data: {"error": {"message": "overloaded"}}', "upstream stream error: overloaded"),
    ],
)
def test_stream_chunks_that_are_not_chat_chunks_fail_the_stream(event: bytes, message: str) -> None:
    stream = OpenAIStream("up", None)  # type: ignore[arg-type]
    good = b"data: " + _chunk({"content": "x"}) + b"\n\n"
    out, failure = stream._read(SSESplitter().feed(good + event + b"\n\n"))
    assert out == good  # what came before the bad chunk is still relayed
    assert isinstance(failure, UpstreamBadResponseError) and message in failure.message
