"""Anthropic SSE events -> OpenAI chat.completion.chunk dicts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from tollgate.errors import UpstreamBadResponseError, UpstreamRateLimitError, UpstreamUnavailableError
from tollgate.providers.anthropic import StreamTranslator
from tollgate.providers.usage import Usage


def _translator(json_tool: str | None = None) -> StreamTranslator:
    return StreamTranslator(
        model="claude-sonnet", created=1700000000, chunk_id="chatcmpl-1", json_tool=json_tool
    )


def _run(events: list[tuple[str, dict[str, Any]]], translator: StreamTranslator) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for name, data in events:
        chunks += translator.feed(name, data)
    return chunks


def _accumulate(chunks: list[dict[str, Any]]) -> Any:
    """Rebuild the final completion with the OpenAI SDK's own stream accumulator."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        list(state.handle_chunk(ChatCompletionChunk.model_validate(chunk)))
    return state.get_final_completion()


def test_text_stream_starts_with_the_assistant_role_and_streams_content_deltas(load_sse: Any) -> None:
    translator = _translator()
    chunks = _run(load_sse("stream_text.sse"), translator)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": "!"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("chatcmpl-1", "chat.completion.chunk", 1700000000, "claude-sonnet")
    }
    assert translator.done
    assert translator.usage == Usage(prompt_tokens=25, completion_tokens=15)
    final = _accumulate(chunks)
    assert final.choices[0].message.content == "Hello!"


def test_tool_use_stream_emits_a_tool_call_header_then_argument_fragments(load_sse: Any) -> None:
    chunks = _run(load_sse("stream_tool_use.sse"), _translator())
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tool_deltas[0] == [
        {
            "index": 0,
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
    ]
    assert tool_deltas[1] == [{"index": 0, "function": {"arguments": '{"location":'}}]
    assert len(tool_deltas) == 9  # header + 8 non-empty partial_json fragments (the empty one is skipped)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    final = _accumulate(chunks).choices[0]
    assert final.message.content == "Okay, let's check the weather for San Francisco, CA:"
    call = final.message.tool_calls[0]
    assert orjson.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}


def test_parallel_tool_calls_are_numbered_from_zero_in_stream_order(load_sse: Any) -> None:
    translator = _translator()
    final = _accumulate(_run(load_sse("stream_parallel_tools.sse"), translator)).choices[0]
    assert [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in final.message.tool_calls
    ] == [
        ("toolu_01WeatherParis0000000000", "get_weather", {"location": "Paris, France"}),
        ("toolu_01TimeParis000000000000", "get_time", {"timezone": "Europe/Paris"}),
    ]
    assert final.finish_reason == "tool_calls"
    assert translator.usage == Usage(prompt_tokens=472, completion_tokens=120)


def test_thinking_deltas_become_reasoning_content_and_signatures_are_dropped(load_sse: Any) -> None:
    chunks = _run(load_sse("stream_thinking.sse"), _translator())
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks)
    assert reasoning.startswith("Let me solve this step by step:") and reasoning.endswith("= 12,231")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "27 * 453 = 12,231"
    assert not any("signature" in orjson.dumps(c).decode() for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_json_tool_stream_streams_the_answer_as_content_and_finishes_with_stop(load_sse: Any) -> None:
    chunks = _run(load_sse("stream_json_tool.sse"), _translator(json_tool="weather_report"))
    final = _accumulate(chunks).choices[0]
    assert orjson.loads(final.message.content) == {"city": "San Francisco", "temperature_c": 15}
    assert not final.message.tool_calls
    assert final.finish_reason == "stop"


def test_usage_is_folded_so_message_delta_zeros_never_erase_message_start_counts(load_sse: Any) -> None:
    translator = _translator()
    _run(load_sse("stream_cache_usage.sse"), translator)
    assert translator.usage == Usage(
        prompt_tokens=21 + 188086, completion_tokens=393, cached_tokens=0, cache_write_tokens=188086
    )
    assert translator.usage_chunk() == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "claude-sonnet",
        "choices": [],
        "usage": {
            "prompt_tokens": 188107,
            "completion_tokens": 393,
            "total_tokens": 188500,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    ChatCompletionChunk.model_validate(translator.usage_chunk())


def test_cumulative_message_delta_input_counts_replace_earlier_ones() -> None:
    translator = _translator()
    translator.feed(
        "message_start",
        {
            "type": "message_start",
            "message": {"usage": {"input_tokens": 2679, "cache_read_input_tokens": 100, "output_tokens": 3}},
        },
    )
    translator.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 10682,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 510,
                "output_tokens_details": {"thinking_tokens": 200},
            },
        },
    )
    assert translator.usage == Usage(
        prompt_tokens=10682 + 100, completion_tokens=510, cached_tokens=100, reasoning_tokens=200
    )


def test_error_event_mid_stream_raises_the_mapped_upstream_error_after_earlier_chunks(load_sse: Any) -> None:
    translator = _translator()
    events = load_sse("stream_error.sse")
    chunks = _run(events[:-1], translator)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
    ]
    with pytest.raises(UpstreamUnavailableError, match="^anthropic: Overloaded$") as err:
        translator.feed(*events[-1])
    assert err.value.details["upstream_type"] == "overloaded_error"
    assert not translator.done
    assert translator.usage.prompt_tokens == 25


def test_rate_limit_error_event_maps_to_rate_limit() -> None:
    with pytest.raises(UpstreamRateLimitError):
        _translator().feed(
            "error", {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        )


def test_ping_stop_and_unknown_events_yield_nothing() -> None:
    translator = _translator()
    assert translator.feed("ping", {"type": "ping"}) == []
    assert translator.feed("content_block_stop", {"type": "content_block_stop", "index": 0}) == []
    assert translator.feed("some_future_event", {"type": "some_future_event"}) == []
    assert translator.feed("message_stop", {"type": "message_stop"}) == [] and translator.done


def test_server_tool_blocks_and_their_deltas_are_not_shown_as_tool_calls() -> None:
    translator = _translator()
    translator.feed("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 1}}})
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {
            "type": "server_tool_use",
            "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            "name": "web_search",
            "input": {},
        },
    }
    assert translator.feed("content_block_start", start) == []
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": "{"},
    }
    assert translator.feed("content_block_delta", delta) == []


def test_only_the_first_stop_reason_produces_a_finish_chunk() -> None:
    translator = _translator()
    delta = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 5}}
    first = translator.feed("message_delta", delta)
    assert [c["choices"][0]["finish_reason"] for c in first] == [None, "length"]  # role chunk, then finish
    assert translator.feed("message_delta", delta) == []


def test_malformed_block_events_raise_bad_response() -> None:
    with pytest.raises(UpstreamBadResponseError):
        _translator().feed("content_block_delta", {"type": "content_block_delta", "delta": {}})


def test_unnamed_sse_frames_fall_back_to_the_data_type(load_sse: Any) -> None:
    translator = _translator()
    chunks = _run([("", data) for _, data in load_sse("stream_text.sse")], translator)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello!"
    assert translator.done
