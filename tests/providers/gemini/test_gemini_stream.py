"""Gemini streamGenerateContent?alt=sse payloads → OpenAI chat.completion.chunk dicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tollgate.errors import UpstreamRateLimitError, UpstreamUnavailableError
from tollgate.providers.gemini import StreamTranslator
from tollgate.providers.gemini.response import call_id
from tollgate.providers.usage import Usage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gemini"


def sse_payloads(name: str) -> list[dict[str, Any]]:
    """The JSON of every ``data:`` line of a recorded SSE stream."""
    text = (FIXTURES / name).read_bytes().decode()
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def translator() -> StreamTranslator:
    return StreamTranslator(model="gemini-2.5-flash", created=1700000000, chunk_id="chatcmpl-stream")


def run(name: str) -> tuple[StreamTranslator, list[dict[str, Any]]]:
    stream = translator()
    chunks: list[dict[str, Any]] = []
    for payload in sse_payloads(name):
        chunks.extend(stream.feed(payload))
    return stream, chunks


def deltas(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(c["choices"][0]["delta"].get(key, "") for c in chunks if c["choices"])


def test_text_stream_yields_content_deltas_then_a_stop_chunk() -> None:
    stream, chunks = run("stream_text.sse")
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": "Hello!"},
        {"content": " How can I help you"},
        {"content": " today?"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert stream.finished


def test_every_chunk_carries_the_openai_envelope() -> None:
    _, chunks = run("stream_text.sse")
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-stream"
        assert chunk["object"] == "chat.completion.chunk"
        assert (chunk["created"], chunk["model"]) == (1700000000, "gemini-2.5-flash")
        assert chunk["choices"][0]["index"] == 0 and chunk["choices"][0]["logprobs"] is None


def test_stream_keeps_the_latest_cumulative_usage() -> None:
    stream, _ = run("stream_text.sse")
    assert stream.usage == Usage(prompt_tokens=9, completion_tokens=8)


def test_usage_chunk_has_no_choices_and_openai_usage() -> None:
    stream, _ = run("stream_function_call.sse")
    assert stream.usage_chunk() == {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gemini-2.5-flash",
        "choices": [],
        "usage": {
            "prompt_tokens": 70,
            "completion_tokens": 90,
            "total_tokens": 160,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 56},
        },
    }


def test_usage_is_none_until_gemini_reports_it_and_usage_chunk_takes_an_override() -> None:
    stream = translator()
    assert stream.usage is None
    estimate = Usage(prompt_tokens=3, completion_tokens=4, estimated=True)
    assert stream.usage_chunk(estimate)["usage"]["total_tokens"] == 7


def test_thought_parts_stream_as_reasoning_content() -> None:
    stream, chunks = run("stream_thinking.sse")
    assert deltas(chunks, "reasoning_content") == "**Counting paws**\n\nTwo dogs, four paws each."
    assert deltas(chunks, "content") == "There are 8 paws in your house."
    assert stream.usage is not None and stream.usage.reasoning_tokens == 60


def test_function_calls_stream_as_complete_tool_call_deltas_and_finish_with_tool_calls() -> None:
    stream, chunks = run("stream_function_call.sse")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Let me check the weather."}
    assert chunks[1]["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": call_id("chatcmpl-stream", 0),
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": '{"location":"Boston, MA"}'},
                "extra_content": {"google": {"thought_signature": "CiQB0e2Kb3dRh+BYdbZvmulSN2Pwwd8Q="}},
            },
            {
                "index": 1,
                "id": call_id("chatcmpl-stream", 1),
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": '{"location":"Paris"}'},
            },
        ]
    }
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert stream.finished


def test_error_inside_the_stream_raises_the_mapped_upstream_error() -> None:
    stream = translator()
    first, error = sse_payloads("stream_error.sse")
    assert deltas(stream.feed(first), "content") == "The answer begins"
    with pytest.raises(UpstreamUnavailableError, match="^gemini: The model is overloaded"):
        stream.feed(error)
    assert not stream.finished


def test_rate_limit_error_inside_the_stream_raises_a_rate_limit_error() -> None:
    payload = {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}
    with pytest.raises(UpstreamRateLimitError):
        translator().feed(payload)


def test_blocked_prompt_stream_yields_one_content_filter_chunk() -> None:
    stream, chunks = run("stream_blocked.sse")
    assert [c["choices"][0] for c in chunks] == [
        {
            "index": 0,
            "delta": {
                "role": "assistant",
                "refusal": "The prompt was blocked by Gemini (PROHIBITED_CONTENT).",
            },
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert stream.finished
    assert stream.usage == Usage(prompt_tokens=12)


def test_each_candidate_streams_as_its_own_choice_with_its_own_role_and_finish() -> None:
    stream, chunks = run("stream_candidates.sse")
    by_choice: dict[int, list[dict[str, Any]]] = {}
    for chunk in chunks:
        choice = chunk["choices"][0]
        by_choice.setdefault(choice["index"], []).append(choice)
    assert by_choice[0][0]["delta"]["role"] == "assistant" and by_choice[1][0]["delta"]["role"] == "assistant"
    assert "".join(c["delta"].get("content", "") for c in by_choice[0]) == "Once upon a time"
    assert "".join(c["delta"].get("content", "") for c in by_choice[1]) == "In a galaxy"
    assert (by_choice[0][-1]["finish_reason"], by_choice[1][-1]["finish_reason"]) == ("stop", "length")
    assert stream.finished


def test_stream_that_ends_without_a_finish_reason_is_not_finished() -> None:
    stream = translator()
    stream.feed(sse_payloads("stream_text.sse")[0])
    assert not stream.finished


def test_payload_with_only_an_empty_signed_text_part_yields_nothing() -> None:
    payload = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "AY8="}]}}]
    }
    assert translator().feed(payload) == []
