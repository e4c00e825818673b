"""Anthropic message -> OpenAI chat.completion, and usage translation."""

from __future__ import annotations

from typing import Any

import anthropic.types
import openai.types.chat
import orjson
import pytest

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.anthropic import finish_reason, to_openai_response, usage_from_anthropic
from tollgate.providers.usage import Usage

MESSAGE_FIXTURES = [
    "message_text.json",
    "message_tool_use.json",
    "message_thinking.json",
    "message_json_tool.json",
    "message_cache_usage.json",
]


def _translate(data: dict[str, Any], json_tool: str | None = None) -> dict[str, Any]:
    out = to_openai_response(data, model="claude-sonnet", created=1700000000, json_tool=json_tool)
    openai.types.chat.ChatCompletion.model_validate(out)  # the OpenAI SDK accepts the shape
    return out


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
def test_fixtures_are_valid_anthropic_messages(name: str, load_json: Any) -> None:
    anthropic.types.Message.model_validate(load_json(name))


def test_text_message_becomes_a_chat_completion(load_json: Any) -> None:
    assert _translate(load_json("message_text.json")) == {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-sonnet",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 2095,
            "completion_tokens": 503,
            "total_tokens": 2598,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_parallel_tool_use_becomes_tool_calls_with_json_string_arguments(load_json: Any) -> None:
    choice = _translate(load_json("message_tool_use.json"))["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "function", "get_weather"),
        ("toolu_01B19r01rx01mr028946mr0", "function", "get_time"),
    ]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {
        "location": "San Francisco, CA",
        "unit": "celsius",
    }
    assert isinstance(calls[1]["function"]["arguments"], str)


def test_thinking_blocks_become_reasoning_content_and_redacted_thinking_is_hidden(load_json: Any) -> None:
    message = _translate(load_json("message_thinking.json"))["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me analyze this step by step..."
    assert message["content"] == "Based on my analysis..."


def test_json_tool_answer_becomes_message_content_with_finish_reason_stop(load_json: Any) -> None:
    choice = _translate(load_json("message_json_tool.json"), json_tool="weather_report")["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert orjson.loads(choice["message"]["content"]) == {"city": "San Francisco", "temperature_c": 15}


def test_a_tool_other_than_the_json_tool_stays_a_tool_call(load_json: Any) -> None:
    choice = _translate(load_json("message_tool_use.json"), json_tool="weather_report")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert len(choice["message"]["tool_calls"]) == 2


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_maps_to_finish_reason(stop_reason: str | None, expected: str, load_json: Any) -> None:
    data = {**load_json("message_text.json"), "stop_reason": stop_reason}
    assert _translate(data)["choices"][0]["finish_reason"] == expected
    assert finish_reason(stop_reason) == expected


def test_cache_writes_and_reads_are_counted_inside_prompt_tokens(load_json: Any) -> None:
    usage = _translate(load_json("message_cache_usage.json"))["usage"]
    assert usage["prompt_tokens"] == 21 + 188086
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    read = usage_from_anthropic(
        {
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 188086,
            "input_tokens": 21,
            "output_tokens": 393,
        }
    )
    assert read == Usage(
        prompt_tokens=188107, completion_tokens=393, cached_tokens=188086, cache_write_tokens=0
    )
    write = usage_from_anthropic(load_json("message_cache_usage.json")["usage"])
    assert (write.cached_tokens, write.cache_write_tokens, write.total_tokens) == (0, 188086, 188107 + 393)


def test_usage_tolerates_missing_and_null_fields_and_reads_thinking_tokens() -> None:
    assert usage_from_anthropic(None) == Usage()
    usage = usage_from_anthropic(
        {
            "input_tokens": 10,
            "output_tokens": 50,
            "cache_read_input_tokens": None,
            "output_tokens_details": {"thinking_tokens": 30},
        }
    )
    assert usage == Usage(prompt_tokens=10, completion_tokens=50, reasoning_tokens=30)


@pytest.mark.parametrize("data", [{}, {"type": "error", "content": []}, {"content": "text"}, []])
def test_malformed_messages_raise_bad_response(data: Any) -> None:
    with pytest.raises(UpstreamBadResponseError, match="^anthropic: "):
        to_openai_response(data, model="m", created=0)
