"""Responses API ⇄ chat completions translators, on fixtures (tests/fixtures/responses/), checked against the
official openai SDK's own Responses types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tollgate.errors import ValidationError
from tollgate.protocol.chat import parse_chat_request
from tollgate.protocol.responses import (
    ResponsesStreamEncoder,
    chat_request_from_responses,
    response_from_chat,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "responses"
EVENT = TypeAdapter(ResponseStreamEvent)
RID = "resp_0123abcd"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def chunks(name: str) -> list[dict[str, Any]]:
    """The chat chunks of a recorded stream (``[DONE]`` left out)."""
    frames = (FIXTURES / name).read_text().split("\n\n")
    return [json.loads(f[len("data: ") :]) for f in frames if f.startswith("data: {")]


def encode(request: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    enc = ResponsesStreamEncoder(request=request, response_id=RID, created_at=1700000000)
    events = [e for c in chunks(name) for e in enc.feed(c)]
    return events + enc.finish()


def test_conversation_request_becomes_a_valid_chat_request() -> None:
    chat = chat_request_from_responses(load("request_conversation.json"))
    assert parse_chat_request(chat).max_tokens == 300
    assert chat["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_def",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18C and sunny"},
        {"role": "tool", "tool_call_id": "call_def", "content": "12C, rain"},
        {"role": "user", "content": "Summarise as JSON."},
    ]
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["response_format"]["type"] == "json_schema"
    assert chat["response_format"]["json_schema"]["name"] == "weather"
    assert chat["response_format"]["json_schema"]["strict"] is True
    assert chat["reasoning_effort"] == "low"
    assert (chat["max_tokens"], chat["temperature"], chat["top_p"], chat["user"]) == (
        300,
        0.2,
        0.9,
        "user-42",
    )
    assert "stream" not in chat and "metadata" not in chat and "store" not in chat


def test_string_input_is_one_user_message_and_stream_is_kept() -> None:
    chat = chat_request_from_responses({"model": "m", "input": "hi", "stream": True})
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_unknown_fields_pass_through_and_responses_only_fields_do_not() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "models": ["b"],
        "seed": 3,
        "store": True,
        "include": [],
        "truncation": "auto",
    }
    chat = chat_request_from_responses(body)
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "models": ["b"], "seed": 3}


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"input": "hi"}, "model", "'model' is required"),
        ({"model": "m"}, "input", "'input' is required"),
        ({"model": "m", "input": []}, "input", "non-empty array"),
        (
            {"model": "m", "input": "hi", "previous_response_id": "resp_1"},
            "previous_response_id",
            "whole conversation",
        ),
        ({"model": "m", "input": "hi", "background": True}, "background", "not available"),
        (
            {"model": "m", "input": [{"type": "item_reference", "id": "x"}]},
            "input",
            "'item_reference' is not supported",
        ),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input", "must be one of"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input",
            "image_url",
        ),
        ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "tools", "only function tools"),
        ({"model": "m", "input": "hi", "tool_choice": {"type": "mcp"}}, "tool_choice", "tool_choice"),
        ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens", "positive integer"),
        (
            {"model": "m", "input": "hi", "text": {"format": {"type": "json_schema"}}},
            "text.format",
            "'schema'",
        ),
        ({"model": "m", "input": "hi", "stream": "yes"}, "stream", "true or false"),
    ],
)
def test_invalid_requests_name_the_field_and_the_fix(body: dict[str, Any], param: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        chat_request_from_responses(body)
    assert caught.value.param == param
    assert says in caught.value.message


def test_text_completion_becomes_a_response_with_one_message_and_usage() -> None:
    request = load("request_conversation.json")
    out = response_from_chat(
        load("chat_completion_text.json"), request=request, response_id=RID, created_at=7
    )
    resp = Response.model_validate(out)
    assert resp.id == RID and resp.object == "response" and resp.status == "completed"
    assert resp.model == "gpt-4o-mini" and resp.created_at == 7
    assert resp.output_text == "Paris is sunny at 18C."
    (item,) = out["output"]
    assert item == {
        "id": "msg_0123abcd",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "Paris is sunny at 18C.", "annotations": [], "logprobs": []}
        ],
    }
    assert out["usage"] == {
        "input_tokens": 1117,
        "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0},
        "output_tokens": 46,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1163,
    }
    # request parameters are echoed, as the Responses API does
    assert out["instructions"] == "You are a weather bot."
    assert (out["max_output_tokens"], out["temperature"], out["top_p"]) == (300, 0.2, 0.9)
    assert out["tools"] == request["tools"] and out["tool_choice"] == request["tool_choice"]
    assert out["text"]["format"]["name"] == "weather" and out["metadata"] == {"team": "weather"}
    assert out["parallel_tool_calls"] is False and out["reasoning"]["effort"] == "low"


def test_tool_calls_become_function_call_items() -> None:
    out = response_from_chat(
        load("chat_completion_tools.json"), request={"model": "m"}, response_id=RID, created_at=7
    )
    Response.model_validate(out)
    assert [(i["type"], i["call_id"], i["name"], i["arguments"], i["status"]) for i in out["output"]] == [
        ("function_call", "call_abc123", "get_weather", '{"city":"Paris"}', "completed"),
        ("function_call", "call_def456", "get_weather", '{"city":"Lyon"}', "completed"),
    ]
    assert out["output"][0]["id"] != out["output"][1]["id"]
    assert out["tool_choice"] == "auto" and out["tools"] == []


def test_length_finish_is_an_incomplete_response() -> None:
    completion = load("chat_completion_text.json")
    completion["choices"][0]["finish_reason"] = "length"
    out = response_from_chat(completion, request={"model": "m"}, response_id=RID, created_at=7)
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["status"] == "incomplete"


def test_text_stream_follows_the_documented_event_flow() -> None:
    events = encode({"model": "m", "input": "hi"}, "chat_stream_text.sse")
    for name, data in events:
        assert EVENT.validate_python(data).type == name
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert (
        "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == "Hello there, friend"
    )
    added = events[2][1]
    assert added["item"]["content"] == [] and added["item"]["status"] == "in_progress"
    done = events[-2][1]["item"]
    assert done["status"] == "completed" and done["content"][0]["text"] == "Hello there, friend"
    final = Response.model_validate(events[-1][1]["response"])
    assert final.status == "completed" and final.output_text == "Hello there, friend"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (13, 4)


def test_tool_call_stream_emits_argument_deltas_per_call() -> None:
    events = encode({"model": "m", "input": "hi"}, "chat_stream_tools.sse")
    for name, data in events:
        assert EVENT.validate_python(data).type == name
    names = [n for n, _ in events]
    assert names.count("response.output_item.added") == 2
    assert names.count("response.function_call_arguments.done") == 2
    done = [d for n, d in events if n == "response.function_call_arguments.done"]
    assert [(d["output_index"], d["arguments"], d["name"]) for d in done] == [
        (0, '{"city":"Paris"}', "get_weather"),
        (1, '{"city":"Lyon"}', "get_weather"),
    ]
    final = events[-1][1]["response"]
    assert [(i["call_id"], i["arguments"]) for i in final["output"]] == [
        ("call_abc123", '{"city":"Paris"}'),
        ("call_def456", '{"city":"Lyon"}'),
    ]


def test_failed_stream_ends_with_response_failed_and_nothing_after() -> None:
    enc = ResponsesStreamEncoder(request={"model": "m"}, response_id=RID, created_at=1)
    first = chunks("chat_stream_text.sse")[1]
    events = enc.feed(first)
    failed = enc.fail({"message": "upstream cut the stream", "type": "api_error", "code": "UPSTREAM_ERROR"})
    assert [n for n, _ in failed] == ["response.failed"]
    response = EVENT.validate_python(failed[0][1]).response  # type: ignore[union-attr]
    assert response.status == "failed"
    assert response.error is not None and response.error.message == "upstream cut the stream"
    assert response.output_text == "Hello"
    assert enc.finish() == [] and enc.feed(first) == []
    assert events[0][0] == "response.created"
