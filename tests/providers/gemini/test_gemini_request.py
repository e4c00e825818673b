"""OpenAI chat-completions request → Gemini GenerateContentRequest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tollgate.errors import ValidationError
from tollgate.providers.gemini import SKIP_THOUGHT_SIGNATURE, build_request, endpoint_path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gemini"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def config_of(**body: Any) -> dict[str, Any]:
    result: dict[str, Any] = build_request({"messages": [user("hi")], **body}).get("generationConfig", {})
    return result


@pytest.mark.parametrize("name", ["request_chat", "request_images", "request_tools", "request_json_schema"])
def test_fixture_request_translates_to_the_exact_gemini_body(name: str) -> None:
    assert build_request(load(f"{name}.openai.json")) == load(f"{name}.gemini.json")


def test_system_and_developer_messages_become_one_system_instruction_wherever_they_stand() -> None:
    body = build_request(
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                user("Hello"),
                {"role": "developer", "content": "Use French."},
            ]
        }
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Use French."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hello"}]}]


def test_request_without_system_messages_has_no_system_instruction() -> None:
    assert "systemInstruction" not in build_request({"messages": [user("Hello")]})


def test_assistant_turns_use_the_model_role_and_consecutive_turns_of_a_role_merge() -> None:
    body = build_request(
        {
            "messages": [
                user("a"),
                user("b"),
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
                user("e"),
            ]
        }
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]


def test_empty_text_is_dropped_and_a_message_left_empty_disappears() -> None:
    body = build_request({"messages": [user("a"), {"role": "assistant", "content": ""}, user("b")]})
    assert body["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]


def test_messages_with_nothing_but_system_content_are_rejected() -> None:
    with pytest.raises(ValidationError, match="messages"):
        build_request({"messages": [{"role": "system", "content": "Be terse."}]})


def test_unknown_role_is_rejected_naming_the_message() -> None:
    with pytest.raises(ValidationError) as err:
        build_request({"messages": [user("a"), {"role": "critic", "content": "b"}]})
    assert err.value.param == "messages[1].role"


def test_data_url_image_becomes_inline_data_and_http_url_becomes_file_data() -> None:
    parts = build_request(load("request_images.openai.json"))["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAAE="}}
    assert parts[2]["fileData"]["mimeType"] == "image/webp"  # from the path, query ignored
    assert parts[3]["fileData"]["mimeType"] == "image/jpeg"  # no extension: the default


def test_image_that_is_neither_data_nor_http_url_is_rejected() -> None:
    content = [{"type": "image_url", "image_url": {"url": "ftp://example.com/cat.png"}}]
    with pytest.raises(ValidationError) as err:
        build_request({"messages": [{"role": "user", "content": content}]})
    assert err.value.param == "messages[0].content[0].image_url.url"


def test_data_url_that_is_not_base64_is_rejected() -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]
    with pytest.raises(ValidationError, match="base64"):
        build_request({"messages": [{"role": "user", "content": content}]})


def test_input_audio_and_pdf_file_become_inline_data() -> None:
    content = [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
        },
    ]
    parts = build_request({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


def test_tool_calls_become_function_calls_and_tool_results_one_user_turn_of_function_responses() -> None:
    contents = build_request(load("request_tools.openai.json"))["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_parts = contents[1]["parts"]
    assert model_parts[0]["functionCall"] == {
        "name": "get_current_weather",
        "args": {"location": "Boston, MA"},
    }
    responses = [p["functionResponse"] for p in contents[2]["parts"] if "functionResponse" in p]
    assert responses == [
        {"name": "get_current_weather", "response": {"temperature": 38, "unit": "F"}},  # JSON object kept
        {"name": "get_current_weather", "response": {"result": "Sunny, 21 degrees"}},  # plain text wrapped
    ]


def test_tool_result_that_is_json_but_not_an_object_is_wrapped_as_result() -> None:
    messages = [
        user("go"),
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "[1, 2]"},
    ]
    part = build_request({"messages": messages})["contents"][2]["parts"][0]
    assert part == {"functionResponse": {"name": "f", "response": {"result": "[1, 2]"}}}


def test_first_function_call_without_echoed_signature_gets_googles_placeholder_signature() -> None:
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    messages = [user("go"), {"role": "assistant", "content": None, "tool_calls": calls}]
    parts = build_request({"messages": messages})["contents"][1]["parts"]
    assert parts == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SKIP_THOUGHT_SIGNATURE},
        {"functionCall": {"name": "g", "args": {}}},
    ]


def test_invalid_tool_call_arguments_are_rejected_naming_the_message_index() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]
    with pytest.raises(ValidationError) as err:
        build_request({"messages": [user("go"), {"role": "assistant", "tool_calls": calls}]})
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"
    assert "messages[1]" in err.value.message


def test_tool_result_for_an_unknown_tool_call_id_is_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        build_request({"messages": [user("go"), {"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    assert err.value.param == "messages[1].tool_call_id"


def test_tool_parameters_keep_json_schema_keywords_but_drop_the_schema_declaration() -> None:
    declarations = build_request(load("request_tools.openai.json"))["tools"][0]["functionDeclarations"]
    parameters = declarations[0]["parametersJsonSchema"]
    assert parameters["additionalProperties"] is False
    assert "$schema" not in parameters
    assert declarations[1] == {"name": "get_time"}


def test_non_function_tools_are_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        build_request({"messages": [user("hi")], "tools": [{"type": "web_search"}]})
    assert err.value.param == "tools[0].type"


TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
def test_tool_choice_maps_to_function_calling_config_mode(choice: Any, expected: dict[str, Any]) -> None:
    body = build_request({"messages": [user("hi")], "tools": TOOLS, "tool_choice": choice})
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_tool_choice_naming_an_undeclared_function_is_rejected() -> None:
    choice = {"type": "function", "function": {"name": "launch"}}
    with pytest.raises(ValidationError, match="launch"):
        build_request({"messages": [user("hi")], "tools": TOOLS, "tool_choice": choice})


def test_required_tool_choice_without_tools_is_rejected_and_auto_is_ignored() -> None:
    with pytest.raises(ValidationError):
        build_request({"messages": [user("hi")], "tool_choice": "required"})
    assert "toolConfig" not in build_request({"messages": [user("hi")], "tool_choice": "auto"})


def test_legacy_functions_and_function_call_are_translated_like_tools() -> None:
    body = build_request(
        {"messages": [user("hi")], "functions": [{"name": "get_time"}], "function_call": {"name": "get_time"}}
    )
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_time"}]}]
    assert body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == ["get_time"]


def test_json_object_response_format_asks_for_json_mime_type() -> None:
    assert config_of(response_format={"type": "json_object"}) == {"responseMimeType": "application/json"}


def test_json_schema_response_format_sends_the_schema_as_response_json_schema() -> None:
    config = build_request(load("request_json_schema.openai.json"))["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["$defs"]["ingredient"]["required"] == ["name", "quantity"]
    assert "$schema" not in config["responseJsonSchema"]


def test_text_response_format_adds_nothing() -> None:
    assert config_of(response_format={"type": "text"}) == {}


def test_stop_string_becomes_a_single_stop_sequence() -> None:
    assert config_of(stop="END") == {"stopSequences": ["END"]}


def test_more_than_five_stop_sequences_are_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        config_of(stop=["a", "b", "c", "d", "e", "f"])
    assert err.value.param == "stop"


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("none", {"thinkingBudget": 0}),
        ("minimal", {"thinkingBudget": 0}),
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ],
)
def test_reasoning_effort_sets_the_thinking_budget(effort: str, thinking: dict[str, Any]) -> None:
    assert config_of(reasoning_effort=effort) == {"thinkingConfig": thinking}


def test_unknown_reasoning_effort_is_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        config_of(reasoning_effort="maximum")
    assert err.value.param == "reasoning_effort"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert config_of(max_tokens=10, max_completion_tokens=20) == {"maxOutputTokens": 20}
    assert config_of(max_tokens=10) == {"maxOutputTokens": 10}


def test_n_above_one_becomes_candidate_count_and_one_is_left_out() -> None:
    assert config_of(n=3) == {"candidateCount": 3}
    assert config_of(n=1) == {}


def test_null_sampling_parameters_are_left_out_and_wrong_types_rejected() -> None:
    assert config_of(temperature=None, top_p=None) == {}
    with pytest.raises(ValidationError) as err:
        config_of(temperature="hot")
    assert err.value.param == "temperature"


@pytest.mark.parametrize(
    ("model", "stream", "path"),
    [
        ("gemini-2.5-flash", False, "/v1beta/models/gemini-2.5-flash:generateContent"),
        ("gemini-2.5-flash", True, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        ("models/gemini-2.5-pro", False, "/v1beta/models/gemini-2.5-pro:generateContent"),
        ("tunedModels/my-tune", False, "/v1beta/tunedModels/my-tune:generateContent"),
    ],
)
def test_endpoint_path_puts_the_model_in_the_url(model: str, stream: bool, path: str) -> None:
    assert endpoint_path(model, stream=stream) == path


def test_web_search_options_turn_on_google_search_grounding() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "news?"}], "web_search_options": {}}
    assert build_request(body)["tools"] == [{"googleSearch": {}}]
