"""Gemini GenerateContentResponse → OpenAI chat.completion, and usage accounting."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.gemini import build_request, finish_reason, to_openai_response, usage_from_gemini
from tollgate.providers.gemini.response import call_id
from tollgate.providers.usage import Usage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gemini"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def translate(data: dict[str, Any]) -> dict[str, Any]:
    return to_openai_response(data, model="gemini-2.5-flash", created=1700000000, response_id="chatcmpl-test")


@pytest.mark.parametrize("name", ["response_text", "response_function_call", "response_thinking"])
def test_fixture_response_translates_to_the_exact_chat_completion(name: str) -> None:
    assert translate(load(f"{name}.gemini.json")) == load(f"{name}.openai.json")


def test_text_parts_are_joined_into_one_content_string() -> None:
    message = translate(load("response_text.gemini.json"))["choices"][0]["message"]
    assert message["content"] == "AI learns patterns from data to make predictions."
    assert "tool_calls" not in message and "reasoning_content" not in message


def test_function_calls_become_tool_calls_with_json_arguments_and_finish_reason_tool_calls() -> None:
    choice = translate(load("response_function_call.gemini.json"))["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert [c["id"] for c in calls] == [call_id("chatcmpl-test", 0), call_id("chatcmpl-test", 1)]
    assert json.loads(calls[1]["function"]["arguments"]) == {"location": "Paris", "unit": "celsius"}
    assert choice["finish_reason"] == "tool_calls"


def test_thought_signature_of_a_function_call_is_kept_in_extra_content() -> None:
    calls = translate(load("response_function_call.gemini.json"))["choices"][0]["message"]["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "CiQB0e2Kb3dRh+BYdbZvmulSN2Pwwd8Q="}}
    assert "extra_content" not in calls[1]


def test_function_call_without_args_gets_empty_json_object_arguments() -> None:
    data = {
        "candidates": [
            {"content": {"parts": [{"functionCall": {"name": "get_time"}}]}, "finishReason": "STOP"}
        ]
    }
    call = translate(data)["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_time", "arguments": "{}"}


def test_assistant_message_echoed_back_returns_calls_and_signature_to_gemini() -> None:
    message = translate(load("response_function_call.gemini.json"))["choices"][0]["message"]
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 20}'}
        for call in message["tool_calls"]
    ]
    body = build_request({"messages": [{"role": "user", "content": "Weather?"}, message, *results]})
    model_turn, results_turn = body["contents"][1], body["contents"][2]
    assert (
        model_turn["parts"] == load("response_function_call.gemini.json")["candidates"][0]["content"]["parts"]
    )
    assert [p["functionResponse"]["name"] for p in results_turn["parts"]] == ["get_current_weather"] * 2


def test_thought_parts_become_reasoning_content_not_content() -> None:
    message = translate(load("response_thinking.gemini.json"))["choices"][0]["message"]
    assert message["content"] == "There are 8 paws in your house."
    assert message["reasoning_content"].startswith("**Counting paws**")


def test_each_candidate_becomes_a_choice_with_its_own_index_and_finish_reason() -> None:
    choices = translate(load("response_candidates.gemini.json"))["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "Once upon a time", "stop"),
        (1, "In a galaxy far", "length"),
    ]


def test_tool_call_ids_stay_unique_across_candidates() -> None:
    part = {"functionCall": {"name": "f", "args": {}}}
    data = {"candidates": [{"content": {"parts": [part]}}, {"index": 1, "content": {"parts": [part]}}]}
    ids = [c["message"]["tool_calls"][0]["id"] for c in translate(data)["choices"]]
    assert ids == [call_id("chatcmpl-test", 0), call_id("chatcmpl-test", 1)]


def test_tool_call_ids_differ_between_responses_and_never_repeat_call_0() -> None:
    part = {"functionCall": {"name": "f", "args": {}}}
    data = {"candidates": [{"content": {"parts": [part]}}]}
    ids = [
        to_openai_response(data, model="m", created=1, response_id=rid)["choices"][0]["message"][
            "tool_calls"
        ][0]["id"]
        for rid in ("chatcmpl-a", "chatcmpl-b")
    ]
    assert ids[0] != ids[1] and "call_0" not in ids
    assert all(re.fullmatch(r"call_[0-9a-f]{16}_0", i) for i in ids)


def test_blocked_prompt_becomes_one_content_filter_choice_with_null_content() -> None:
    result = translate(load("response_blocked.gemini.json"))
    assert result["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": "The prompt was blocked by Gemini (SAFETY).",
            },
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert result["usage"]["prompt_tokens"] == 12 and result["usage"]["completion_tokens"] == 0


def test_response_with_neither_candidates_nor_block_reason_is_a_bad_upstream_response() -> None:
    with pytest.raises(UpstreamBadResponseError, match="^gemini: "):
        translate({"usageMetadata": {"promptTokenCount": 3}})


def test_candidate_stopped_by_safety_without_content_has_null_content() -> None:
    choice = translate({"candidates": [{"finishReason": "SAFETY", "index": 0}]})["choices"][0]
    assert choice["message"]["content"] is None and choice["finish_reason"] == "content_filter"


@pytest.mark.parametrize(
    ("reason", "has_tool_calls", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        (None, True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("LANGUAGE", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("FINISH_REASON_UNSPECIFIED", False, "stop"),
    ],
)
def test_finish_reason_mapping(reason: str | None, has_tool_calls: bool, expected: str) -> None:
    assert finish_reason(reason, has_tool_calls=has_tool_calls) == expected


def test_usage_prompt_includes_cache_and_completion_includes_thoughts() -> None:
    usage = usage_from_gemini(load("response_thinking.gemini.json")["usageMetadata"])
    assert usage == Usage(prompt_tokens=2152, completion_tokens=137, cached_tokens=2048, reasoning_tokens=128)
    assert usage.total_tokens == 2289  # Gemini's totalTokenCount


def test_usage_counts_tool_use_prompt_tokens_as_prompt() -> None:
    meta = {
        "promptTokenCount": 10,
        "toolUsePromptTokenCount": 5,
        "candidatesTokenCount": 2,
        "totalTokenCount": 17,
    }
    usage = usage_from_gemini(meta)
    assert (usage.prompt_tokens, usage.total_tokens) == (15, 17)


def test_usage_with_missing_counts_is_zero() -> None:
    assert usage_from_gemini({}) == Usage()
    assert usage_from_gemini({"promptTokenCount": 4}) == Usage(prompt_tokens=4)
