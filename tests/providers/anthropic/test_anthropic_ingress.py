"""Anthropic-compatible ingress: Messages request -> OpenAI request, OpenAI completion -> Anthropic message."""

from __future__ import annotations

import copy
from typing import Any, cast

import anthropic
import anthropic.types
import httpx2
import orjson
import pytest

from tollgate.errors import (
    RateLimitError,
    UpstreamBadResponseError,
    UpstreamUnavailableError,
    ValidationError,
)
from tollgate.providers.anthropic import (
    build_request,
    error_body,
    messages_response_from_openai,
    openai_request_from_messages,
)
from tollgate.providers.usage import Usage

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }


def test_messages_request_translates_to_the_equivalent_openai_request(load_json: Any) -> None:
    out = openai_request_from_messages(load_json("ingress_messages_request.json"))
    assert out == load_json("ingress_openai_request.json")


def test_the_request_the_official_sdk_sends_is_accepted() -> None:
    captured: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        captured.append(orjson.loads(request.content))
        return httpx2.Response(
            404, json={"type": "error", "error": {"type": "not_found_error", "message": "x"}}
        )

    client = anthropic.Anthropic(
        api_key="sk-test",
        base_url="http://tollgate.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="tollgate-claude",
            max_tokens=512,
            system="Be brief.",
            tools=[cast(Any, WEATHER)],
            tool_choice={"type": "tool", "name": "get_weather"},
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        )
    out = openai_request_from_messages(captured[0])
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert out["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("body", "param", "hint"),
    [
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "model", "model is required"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            "max_tokens is required",
        ),
        (
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            "positive",
        ),
        ({"model": "m", "max_tokens": 10}, "messages", "messages is required"),
        ({"model": "m", "max_tokens": 10, "messages": []}, "messages", "non-empty list"),
    ],
)
def test_missing_required_fields_say_what_to_fix(body: dict[str, Any], param: str, hint: str) -> None:
    with pytest.raises(ValidationError, match=hint) as err:
        openai_request_from_messages(body)
    assert err.value.param == param


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_maps_to_openai(choice: dict[str, Any], expected: Any) -> None:
    out = openai_request_from_messages(_body(tools=[WEATHER], tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (2047, "low"), (2048, "medium"), (4096, "medium"), (10000, "high"), (16000, "high")],
)
def test_thinking_budget_maps_to_reasoning_effort(budget: int, effort: str) -> None:
    out = openai_request_from_messages(_body(thinking={"type": "enabled", "budget_tokens": budget}))
    assert out["reasoning_effort"] == effort
    assert "reasoning_effort" not in openai_request_from_messages(_body(thinking={"type": "disabled"}))


def test_tool_result_images_follow_the_tool_message_as_user_input() -> None:
    out = openai_request_from_messages(
        _body(
            messages=[
                {"role": "user", "content": "Screenshot please"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "is_error": False,
                            "content": [
                                {"type": "text", "text": "done"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://example.com/s.png"},
                                },
                            ],
                        }
                    ],
                },
            ]
        )
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
        ],
    }
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": "done"}]},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.com/s.png"}}],
        },
    ]


def test_server_tools_documents_and_unknown_roles_are_rejected() -> None:
    with pytest.raises(ValidationError, match="web_search_20250305"):
        openai_request_from_messages(_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    with pytest.raises(ValidationError, match=r"messages\[0\]\.content\[0\].*'document'"):
        openai_request_from_messages(_body(messages=[{"role": "user", "content": [document]}]))
    with pytest.raises(ValidationError, match="role"):
        openai_request_from_messages(_body(messages=[{"role": "system", "content": "x"}]))


def test_a_tool_conversation_survives_ingress_then_egress_unchanged() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "What's the weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees",
                },
            ],
        },
    ]
    original = _body(system="Be brief.", messages=messages, tools=[WEATHER], stop_sequences=["END"])
    again = build_request(openai_request_from_messages(copy.deepcopy(original)), "claude-sonnet-4-5")
    assert again["messages"] == messages
    assert (again["system"], again["tools"], again["stop_sequences"]) == ("Be brief.", [WEATHER], ["END"])
    assert again["max_tokens"] == 1024


def test_openai_completion_translates_to_an_anthropic_message(load_json: Any) -> None:
    out = messages_response_from_openai(
        load_json("ingress_openai_completion.json"), model="claude-sonnet-4-5"
    )
    assert out == load_json("ingress_messages_response.json")
    anthropic.types.Message.model_validate(out)


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_maps_to_stop_reason(finish: str | None, stop_reason: str, load_json: Any) -> None:
    resp = load_json("ingress_openai_completion.json")
    resp["choices"][0]["finish_reason"] = finish
    assert messages_response_from_openai(resp, model="m")["stop_reason"] == stop_reason


def test_gateway_usage_overrides_and_cache_writes_leave_input_tokens() -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    }
    usage = Usage(prompt_tokens=188107, completion_tokens=393, cached_tokens=0, cache_write_tokens=188086)
    out = messages_response_from_openai(resp, model="m", usage=usage)
    assert out["usage"] == {
        "input_tokens": 21,
        "cache_creation_input_tokens": 188086,
        "cache_read_input_tokens": 0,
        "output_tokens": 393,
    }
    assert out["id"] == "msg_1"
    assert messages_response_from_openai(resp, model="m")["usage"]["input_tokens"] == 0


def test_invalid_upstream_answers_raise_bad_response() -> None:
    with pytest.raises(UpstreamBadResponseError):
        messages_response_from_openai({"choices": []}, model="m")
    bad_args = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                    ],
                }
            }
        ]
    }
    with pytest.raises(UpstreamBadResponseError, match="invalid JSON"):
        messages_response_from_openai(bad_args, model="m")


def test_error_body_uses_anthropic_error_types() -> None:
    assert error_body(UpstreamUnavailableError("anthropic: Overloaded")) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "anthropic: Overloaded"},
    }
    assert error_body(RateLimitError("slow down"))["error"]["type"] == "rate_limit_error"
    assert error_body(ValidationError("bad"))["error"]["type"] == "invalid_request_error"
    assert error_body(UpstreamBadResponseError("boom"))["error"]["type"] == "api_error"


def test_openai_refusals_become_text_with_stop_reason_refusal() -> None:
    resp = {
        "id": "chatcmpl-9",
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                "finish_reason": "stop",
            }
        ],
    }
    out = messages_response_from_openai(resp, model="m")
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


def test_thinking_only_assistant_turns_and_top_k_are_not_forwarded_to_openai() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "EqQBCgIYAhIM"}
    out = openai_request_from_messages(
        _body(
            top_k=5,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [thinking]},
                {"role": "user", "content": "Still there?"},
            ],
        )
    )
    assert [m["role"] for m in out["messages"]] == ["user", "user"]
    assert "top_k" not in out
