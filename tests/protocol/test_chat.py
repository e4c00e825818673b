"""tollgate/protocol/chat.py: which chat completion bodies are accepted, and what a rejection names."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.errors import ValidationError
from tollgate.protocol.chat import parse_chat_request

USER = {"role": "user", "content": "Hello"}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [USER], **fields}


def rejected(payload: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_chat_request(payload)
    assert info.value.status == 400
    return info.value


# accepted -----------------------------------------------------------------------------------------------


def test_minimal_body() -> None:
    request = parse_chat_request(body())
    assert request.model == "sim-small"
    assert request.stream is False
    assert request.max_tokens is None


def test_the_body_is_kept_as_is_with_unknown_fields() -> None:
    payload = body(seed=7, logprobs=True, provider_specific={"a": [1]})
    request = parse_chat_request(payload)
    assert request.body is payload


def test_full_conversation_with_tool_calls_and_content_parts() -> None:
    payload = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            {"role": "assistant", "tool_calls": [{"id": "call_2", "type": "function", "function": {}}]},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "ok"}]},
            {"role": "assistant", "function_call": {"name": "legacy", "arguments": "{}"}},
            {"role": "function", "name": "legacy", "content": "done"},
            {"role": "assistant", "content": ""},
        ],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        tool_choice="auto",
    )
    assert parse_chat_request(payload).body is payload


@pytest.mark.parametrize("stream", [True, False, None])
def test_stream_flag(stream: bool | None) -> None:
    assert parse_chat_request(body(stream=stream)).stream is bool(stream)


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse_chat_request(body(max_tokens=100)).max_tokens == 100
    assert parse_chat_request(body(max_completion_tokens=50)).max_tokens == 50
    assert parse_chat_request(body(max_tokens=100, max_completion_tokens=50)).max_tokens == 50


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 0.7},
        {"top_p": 1},
        {"top_p": 0.0},
        {"temperature": None, "top_p": None, "max_tokens": None, "stop": None},
        {"stop": "END"},
        {"stop": ["a", "b", "c", "d"]},
        {"stop": []},
    ],
)
def test_accepted_sampling_options(fields: dict[str, Any]) -> None:
    parse_chat_request(body(**fields))


# rejected -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "text", 3, [{"model": "m"}]])
def test_body_must_be_an_object(payload: Any) -> None:
    err = rejected(payload)
    assert err.param is None
    assert "JSON object" in err.message


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"model": None}, "model", "'model' is required"),
        ({"model": ""}, "model", "'model' is required"),
        ({"model": 42}, "model", "must be a string"),
        ({"model": ["a"]}, "model", "must be a string"),
        ({"messages": None}, "messages", "'messages' is required"),
        ({"messages": "hello"}, "messages", "must be an array"),
        ({"messages": {"role": "user"}}, "messages", "must be an array"),
        ({"messages": []}, "messages", "at least one message"),
        ({"messages": ["hello"]}, "messages[0]", "must be an object"),
        ({"messages": [USER, None]}, "messages[1]", "must be an object"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "must be one of"),
        ({"messages": [USER, {"role": "robot", "content": "x"}]}, "messages[1].role", "got 'robot'"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "is required for this user message"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "is required"),
        ({"messages": [{"role": "assistant"}]}, "messages[0].content", "'messages[0].content' is required"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": []}]},
            "messages[0].content",
            "is required",
        ),
        ({"messages": [{"role": "tool", "tool_call_id": "c"}]}, "messages[0].content", "is required"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string or an array"),
        ({"messages": [{"role": "user", "content": {"type": "text"}}]}, "messages[0].content", "string or"),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content", "content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]},
            "messages[0].content",
            "content[1]' must be an object with a 'type'",
        ),
        ({"temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"temperature": -0.1}, "temperature", "between 0 and 2"),
        ({"temperature": "0.5"}, "temperature", "must be a number"),
        ({"temperature": True}, "temperature", "must be a number"),
        ({"top_p": 1.01}, "top_p", "between 0 and 1"),
        ({"top_p": [0.5]}, "top_p", "must be a number"),
        ({"max_tokens": 0}, "max_tokens", "positive integer"),
        ({"max_tokens": -5}, "max_tokens", "positive integer"),
        ({"max_tokens": 10.0}, "max_tokens", "positive integer"),
        ({"max_tokens": "100"}, "max_tokens", "positive integer"),
        ({"max_tokens": True}, "max_tokens", "positive integer"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "positive integer"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"stop": ["a", 1]}, "stop", "string or an array of strings"),
        ({"stop": 7}, "stop", "string or an array of strings"),
        ({"stream": "true"}, "stream", "true or false"),
        ({"stream": 1}, "stream", "true or false"),
    ],
)
def test_invalid_body_names_the_field(fields: dict[str, Any], param: str, fragment: str) -> None:
    err = rejected(body(**fields))
    assert err.param == param
    assert fragment in err.message
    assert err.code == "VALIDATION_ERROR"


def test_the_first_problem_is_reported() -> None:
    err = rejected({"model": "", "messages": [], "temperature": 9})
    assert err.param == "model"
