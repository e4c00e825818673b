"""The simulator's OpenAI wire answers tools, structured output, ``n`` and logprobs; driven through the
gateway with the official openai SDK (its ``parse`` and stream helpers included)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.gateway import Gateway

USER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


@pytest.mark.parametrize(
    ("tool_choice", "name"),
    [("required", "get_weather"), ({"type": "function", "function": {"name": "get_time"}}, "get_time")],
)
def test_tool_choice_required_or_named_gets_a_tool_call(
    gateway: Gateway, tool_choice: Any, name: str
) -> None:
    client = gateway.client(gateway.create_key())
    resp = client.chat.completions.create(
        model="sim-small", messages=USER, tools=[WEATHER, TIME], tool_choice=tool_choice
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == name and call.id  # type: ignore[union-attr]
    if name == "get_weather":
        assert json.loads(call.function.arguments) == {"city": "lorem", "unit": "c"}  # type: ignore[union-attr]
    (row,) = gateway.usage_rows(expect=1)
    assert row.completion_tokens == resp.usage.completion_tokens > 0  # type: ignore[union-attr]


def test_tool_choice_auto_answers_with_text(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key())
    resp = client.chat.completions.create(
        model="sim-small", messages=USER, tools=[WEATHER], tool_choice="auto"
    )
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.content


def test_streamed_tool_call_through_the_stream_helper_parses_strict_arguments(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key())
    with client.chat.completions.stream(
        model="sim-small", messages=USER, tools=[WEATHER], tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.parsed_arguments == {"city": "lorem", "unit": "c"}
    assert final.usage is not None and final.usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_parse_gets_json_matching_the_schema(gateway: Gateway, stream: bool) -> None:
    client = gateway.client(gateway.create_key())
    if stream:
        with client.chat.completions.stream(model="sim-small", messages=USER, response_format=Weather) as s:
            parsed = s.get_final_completion().choices[0].message.parsed
    else:
        parsed = (
            client.chat.completions.parse(model="sim-small", messages=USER, response_format=Weather)
            .choices[0]
            .message.parsed
        )
    assert parsed == Weather(city="lorem", degrees=2, sunny=True)


def test_json_object_mode_answers_a_json_object(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key())
    resp = client.chat.completions.create(
        model="sim-small", messages=USER, response_format={"type": "json_object"}
    )
    assert json.loads(resp.choices[0].message.content or "")["answer"].startswith("lorem ipsum")


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_and_logprobs(gateway: Gateway, stream: bool) -> None:
    client = gateway.client(gateway.create_key())
    args: Any = {"model": "sim-small", "messages": USER, "n": 2, "logprobs": True, "top_logprobs": 1}
    if stream:
        texts = ["", ""]
        for chunk in client.chat.completions.create(**args, stream=True):
            for c in chunk.choices:
                texts[c.index] += c.delta.content or ""
                if c.delta.content:
                    assert c.logprobs is not None and c.logprobs.content
    else:
        resp = client.chat.completions.create(**args)
        texts = [c.message.content or "" for c in resp.choices]
        assert resp.choices[0].logprobs is not None and len(resp.choices[0].logprobs.content or []) == 20
        assert resp.usage is not None and resp.usage.completion_tokens == 40
    assert texts[0] == texts[1] and len(texts[0].split()) == 20
    (row,) = gateway.usage_rows(expect=1)
    assert row.completion_tokens == 40
