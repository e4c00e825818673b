"""OpenAI chat request -> Anthropic Messages request."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tollgate.errors import ValidationError
from tollgate.providers.anthropic import JSON_OBJECT_TOOL, build_request, json_tool_name

MODEL = "claude-sonnet-4-5-20250929"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
REPORT_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [{"role": "user", "content": "What is 27 * 453?"}], **extra}


def test_system_developer_and_multiturn_images_translate_to_the_documented_request(load_json: Any) -> None:
    built = build_request(load_json("openai_request_conversation.json"), MODEL)
    assert built == load_json("anthropic_request_conversation.json")


def test_parallel_tool_calls_and_grouped_tool_results_translate_to_tool_use_and_tool_result(
    load_json: Any,
) -> None:
    built = build_request(load_json("openai_request_tools.json"), MODEL)
    assert built == load_json("anthropic_request_tools.json")


def test_tool_results_are_placed_before_text_in_a_merged_user_turn() -> None:
    body = _body(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "user", "content": "also, be brief"},
            {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
        ],
        tools=[WEATHER_TOOL],
    )
    turns = build_request(body, MODEL)["messages"]
    assert turns[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        ],
    }
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1"},
        {"type": "text", "text": "also, be brief"},
    ]


def test_invalid_tool_call_arguments_are_rejected_naming_the_message_index() -> None:
    body = _body(
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{not json"},
                    },
                ],
            },
        ]
    )
    with pytest.raises(ValidationError, match=r"messages\[1\]\.tool_calls\[0\]\.function\.arguments"):
        build_request(body, MODEL)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_maps_to_anthropic_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    built = build_request(_body(tools=[WEATHER_TOOL], tool_choice=choice), MODEL)
    assert built["tool_choice"] == expected
    assert built["tools"][0] == {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
    }


def test_parallel_tool_calls_false_disables_parallel_tool_use_on_the_chosen_mode() -> None:
    built = build_request(
        _body(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False), MODEL
    )
    assert built["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_without_tools_is_dropped() -> None:
    built = build_request(_body(tool_choice="auto", parallel_tool_calls=False), MODEL)
    assert "tool_choice" not in built and "tools" not in built


def test_json_schema_response_format_is_emulated_with_a_forced_tool_named_after_the_schema() -> None:
    body = _body(
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "weather_report",
                "description": "A weather report",
                "schema": REPORT_SCHEMA,
                "strict": True,
            },
        }
    )
    built = build_request(body, MODEL)
    assert json_tool_name(body) == "weather_report"
    assert built["tools"] == [
        {"name": "weather_report", "description": "A weather report", "input_schema": REPORT_SCHEMA}
    ]
    assert built["tool_choice"] == {"type": "tool", "name": "weather_report"}


def test_json_object_response_format_forces_the_generic_json_tool() -> None:
    body = _body(response_format={"type": "json_object"})
    built = build_request(body, MODEL)
    assert json_tool_name(body) == JSON_OBJECT_TOOL
    assert built["tools"][0]["name"] == JSON_OBJECT_TOOL
    assert built["tools"][0]["input_schema"] == {"type": "object"}
    assert built["tool_choice"] == {"type": "tool", "name": JSON_OBJECT_TOOL}


def test_json_schema_alongside_client_tools_lets_the_model_pick_any_tool() -> None:
    body = _body(
        tools=[WEATHER_TOOL],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather_report", "schema": REPORT_SCHEMA},
        },
    )
    built = build_request(body, MODEL)
    assert [t["name"] for t in built["tools"]] == ["get_weather", "weather_report"]
    assert built["tool_choice"] == {"type": "any"}


def test_json_schema_with_tool_choice_none_keeps_only_the_answer_tool() -> None:
    body = _body(
        tools=[WEATHER_TOOL],
        tool_choice="none",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather_report", "schema": REPORT_SCHEMA},
        },
    )
    built = build_request(body, MODEL)
    assert [t["name"] for t in built["tools"]] == ["weather_report"]
    assert built["tool_choice"] == {"type": "tool", "name": "weather_report"}


def test_text_response_format_needs_no_tool() -> None:
    body = _body(response_format={"type": "text"})
    assert json_tool_name(body) is None
    assert "tools" not in build_request(body, MODEL)


def test_json_schema_named_like_a_client_tool_is_rejected() -> None:
    body = _body(
        tools=[WEATHER_TOOL],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "get_weather", "schema": REPORT_SCHEMA},
        },
    )
    with pytest.raises(ValidationError, match="collides"):
        build_request(body, MODEL)


@pytest.mark.parametrize(
    ("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), (["", "x"], ["x"])]
)
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str]) -> None:
    assert build_request(_body(stop=stop), MODEL)["stop_sequences"] == expected


def test_max_tokens_defaults_and_prefers_max_completion_tokens() -> None:
    assert build_request(_body(), MODEL)["max_tokens"] == 4096
    assert build_request(_body(), MODEL, default_max_tokens=777)["max_tokens"] == 777
    assert build_request(_body(max_tokens=300), MODEL)["max_tokens"] == 300
    assert build_request(_body(max_tokens=300, max_completion_tokens=200), MODEL)["max_tokens"] == 200


def test_temperature_is_clamped_and_wins_over_top_p_while_top_k_passes_through() -> None:
    built = build_request(_body(temperature=2.0, top_p=0.5, top_k=40), MODEL)
    assert (built["temperature"], built["top_k"]) == (1.0, 40)
    assert "top_p" not in built
    assert build_request(_body(top_p=0.5), MODEL)["top_p"] == 0.5


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_enables_thinking_with_a_budget_below_max_tokens(effort: str, budget: int) -> None:
    built = build_request(_body(reasoning_effort=effort, temperature=0.2, top_k=5, top_p=0.99), MODEL)
    assert built["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert built["max_tokens"] == budget + 4096
    assert "temperature" not in built and "top_k" not in built
    assert built["top_p"] == 0.99


def test_reasoning_effort_fits_the_budget_under_the_clients_max_tokens() -> None:
    built = build_request(_body(reasoning_effort="high", max_completion_tokens=8000), MODEL)
    assert built["max_tokens"] == 8000
    assert built["thinking"] == {"type": "enabled", "budget_tokens": 7999}
    built = build_request(_body(reasoning_effort="low", max_tokens=1000, temperature=0.3), MODEL)
    assert "thinking" not in built and built["temperature"] == 0.3


def test_reasoning_effort_none_or_forced_tools_or_an_open_tool_loop_disable_thinking() -> None:
    assert "thinking" not in build_request(_body(reasoning_effort="none"), MODEL)
    forced = _body(reasoning_effort="high", tools=[WEATHER_TOOL], tool_choice="required")
    assert "thinking" not in build_request(forced, MODEL)
    in_loop = _body(
        reasoning_effort="high",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "15 degrees"},
        ],
    )
    assert "thinking" not in build_request(in_loop, MODEL)
    new_turn = copy.deepcopy(in_loop)
    new_turn["messages"].append({"role": "user", "content": "and tomorrow?"})
    assert "thinking" not in build_request(new_turn, MODEL)  # still the turn that answers the tool call
    new_turn["messages"][-1:] = [
        {"role": "assistant", "content": "It is 15 degrees."},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert build_request(new_turn, MODEL)["thinking"]["budget_tokens"] == 16384


def test_unknown_reasoning_effort_is_rejected() -> None:
    with pytest.raises(ValidationError, match="reasoning_effort"):
        build_request(_body(reasoning_effort="extreme"), MODEL)


def test_n_greater_than_one_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"^n>1 is not supported by Anthropic models$"):
        build_request(_body(n=2), MODEL)


def test_system_parts_with_cache_control_keep_their_breakpoints() -> None:
    body = _body(
        messages=[
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "You analyse novels."},
                    {"type": "text", "text": "<book>", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {"role": "user", "content": "Themes?"},
        ]
    )
    assert build_request(body, MODEL)["system"] == [
        {"type": "text", "text": "You analyse novels."},
        {"type": "text", "text": "<book>", "cache_control": {"type": "ephemeral"}},
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/bmp;base64,Qk0=", "image type 'image/bmp' is not supported"),
        ("data:image/png,rawbytes", "must be base64 encoded"),
        ("data:image/png;base64,@@@", "not valid base64"),
        ("ftp://example.com/a.png", "http"),
    ],
)
def test_unsupported_images_are_rejected_with_their_position(url: str, message: str) -> None:
    body = _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    with pytest.raises(ValidationError, match=r"messages\[0\]\.content\[0\]") as err:
        build_request(body, MODEL)
    assert message in err.value.message


def test_audio_parts_and_unknown_roles_are_rejected() -> None:
    audio = _body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])
    with pytest.raises(ValidationError, match="input_audio"):
        build_request(audio, MODEL)
    with pytest.raises(ValidationError, match="'function'"):
        build_request(_body(messages=[{"role": "function", "name": "f", "content": "x"}]), MODEL)


def test_an_assistant_prefill_disables_thinking() -> None:
    body = _body(
        reasoning_effort="medium",
        messages=[
            {"role": "user", "content": "What's the Greek name for Sun? (A) Sol (B) Helios (C) Sun"},
            {"role": "assistant", "content": "The best answer is ("},
        ],
    )
    built = build_request(body, MODEL)
    assert "thinking" not in built and built["max_tokens"] == 4096


def test_web_search_options_become_the_server_web_search_tool() -> None:
    options = {
        "search_context_size": "low",
        "user_location": {"type": "approximate", "approximate": {"city": "Paris", "country": "FR"}},
    }
    built = build_request(_body(web_search_options=options), MODEL)
    assert built["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "max_uses": 1,
            "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
        }
    ]
    assert build_request(_body(web_search_options={}), MODEL)["tools"][0]["max_uses"] == 3
    with pytest.raises(ValidationError):
        build_request(_body(web_search_options={"search_context_size": "huge"}), MODEL)
