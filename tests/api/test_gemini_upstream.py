"""A ``kind: gemini`` upstream end to end: official openai SDK → Tollgate → simulator speaking Gemini."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.support.gateway import PRICES, Gateway, gateway_config
from tests.support.servers import ServerThread
from tollgate.app import create_app
from tollgate.settings import load_settings
from tollgate.simulator import SimServer
from tollgate.simulator.generate import WORDS

USER: list[Any] = [{"role": "user", "content": "Say something nice about gateways"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# public model id → upstream model (simulator options ride in the model name, as the URL carries it)
MODELS = {
    "gemini-flash": "gemini-sim@require_key=gem-key",
    "gemini-usage": "gemini-sim@prompt_tokens=100,cached_tokens=60,thoughts_tokens=7,completion_tokens=5",
    "gemini-tools": "gemini-sim@tool_call=get_weather",
    "gemini-limited": "gemini-sim@error=429,retry_after=7",
    "gemini-down": "gemini-sim@error=503",
    "gemini-cut": "gemini-sim@cut_after=2",
}


def expected_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return (
        (prompt - cached) * Decimal(PRICES["prompt"])
        + cached * Decimal(PRICES["input_cache_read"])
        + completion * Decimal(PRICES["completion"])
    )


class GeminiGateway(Gateway):
    """The standard test gateway plus a ``kind: gemini`` provider pointing at the simulator."""

    def __init__(self, tmp: Path, sim: SimServer) -> None:
        self.db_url = f"sqlite+aiosqlite:///{tmp / 'tollgate.db'}"
        config = gateway_config(sim.base_url, self.db_url)
        config["providers"].append(
            {"name": "gemini", "kind": "gemini", "base_url": sim.url, "api_key": "gem-key"}
        )
        config["models"] += [
            {"id": public, "pricing": PRICES, "deployments": [{"provider": "gemini", "model": upstream}]}
            for public, upstream in MODELS.items()
        ]
        config["models"].append(
            {
                "id": "gemini-then-sim",
                "pricing": PRICES,
                "deployments": [
                    {"provider": "gemini", "model": MODELS["gemini-down"]},
                    {"provider": "sim", "model": "upstream-b"},
                ],
            }
        )
        self.config_path = tmp / "tollgate.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.settings = load_settings(str(self.config_path), environ={})
        self.server = ServerThread(create_app(self.settings))


@pytest.fixture
def gw(tmp_path: Path, sim: SimServer) -> Iterator[GeminiGateway]:
    with GeminiGateway(tmp_path, sim) as gateway:
        yield gateway


def test_json_completion_comes_back_in_openai_shape_and_is_billed_exactly(
    gw: GeminiGateway, sim: SimServer
) -> None:
    key = gw.create_key(balance="1")
    raw = gw.client(key).chat.completions.with_raw_response.create(model="gemini-flash", messages=USER)
    resp = raw.parse()
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.choices[0].message.content == "".join(word + " " for word in WORDS)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 20
    assert raw.headers["x-tollgate-provider"] == "gemini"
    assert raw.headers["x-tollgate-upstream-model"] == MODELS["gemini-flash"]
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.model, row.provider, row.stream, row.estimated) == (
        200,
        "gemini-flash",
        "gemini",
        False,
        False,
    )
    assert (row.prompt_tokens, row.completion_tokens) == (resp.usage.prompt_tokens, 20)
    assert row.cost == expected_cost(resp.usage.prompt_tokens, 20)
    assert gw.balance() == Decimal("1") - row.cost
    upstream = sim.requests()[-1]
    assert upstream["path"] == "/v1beta/models/gemini-sim@require_key=gem-key:generateContent"
    assert upstream["headers"]["x-goog-api-key"] == "gem-key"
    assert upstream["body"]["contents"] == [{"role": "user", "parts": [{"text": USER[0]["content"]}]}]


def test_streaming_relays_chunks_and_gemini_usage(gw: GeminiGateway, sim: SimServer) -> None:
    key = gw.create_key()
    stream = gw.client(key).chat.completions.create(model="gemini-usage", messages=USER, stream=True)
    got = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert text == "lorem ipsum dolor sit amet "
    assert [c.choices[0].finish_reason for c in got if c.choices][-1] == "stop"
    usage = got[-1].usage
    assert usage is not None and got[-1].choices[0].finish_reason == "stop"  # usage on the finish chunk
    assert (usage.prompt_tokens, usage.completion_tokens) == (100, 12)  # 5 candidates + 7 thoughts
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 60
    assert (
        usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 7
    )
    assert sum(1 for c in got if c.usage is not None) == 1
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.stream, row.estimated) == (200, True, False)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens, row.reasoning_tokens) == (
        100,
        12,
        60,
        7,
    )
    assert row.cost == expected_cost(100, 12, cached=60)
    assert sim.requests()[-1]["query"] == "alt=sse"


def test_json_usage_prices_cached_and_thought_tokens(gw: GeminiGateway) -> None:
    key = gw.create_key()
    resp = gw.client(key).chat.completions.create(model="gemini-usage", messages=USER)
    assert resp.usage is not None and resp.usage.completion_tokens == 12
    (row,) = gw.usage_rows(expect=1)
    assert (row.cached_tokens, row.reasoning_tokens) == (60, 7)
    assert row.cost == expected_cost(100, 12, cached=60)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_as_openai_tool_calls(gw: GeminiGateway, stream: bool) -> None:
    client = gw.client(gw.create_key())
    if stream:
        create = client.chat.completions.create
        chunks = list(create(model="gemini-tools", messages=USER, tools=[WEATHER], stream=True))
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        (call,) = calls
        name, arguments = call.function and call.function.name, call.function and call.function.arguments
    else:
        resp = client.chat.completions.create(model="gemini-tools", messages=USER, tools=[WEATHER])
        assert resp.choices[0].finish_reason == "tool_calls"
        (tool_call,) = resp.choices[0].message.tool_calls or []
        assert tool_call.type == "function"
        name, arguments = tool_call.function.name, tool_call.function.arguments
    assert (name, arguments) == ("get_weather", '{"city":"lorem"}')
    (row,) = gw.usage_rows(expect=1)
    assert row.status == 200 and row.completion_tokens == 8 and not row.estimated


def test_tool_call_ids_are_unique_across_turns_and_stable_within_a_stream(gw: GeminiGateway) -> None:
    client = gw.client(gw.create_key())
    ids = []
    for _ in range(2):
        resp = client.chat.completions.create(model="gemini-tools", messages=USER, tools=[WEATHER])
        ids += [tc.id for tc in resp.choices[0].message.tool_calls or []]
    chunks = list(
        client.chat.completions.create(model="gemini-tools", messages=USER, tools=[WEATHER], stream=True)
    )
    streamed = [tc.id for c in chunks for tc in c.choices[0].delta.tool_calls or ()]
    assert len(streamed) == 1 and streamed[0]
    ids += streamed
    assert len(set(ids)) == 3 and "call_0" not in ids


@pytest.mark.parametrize("stream", [False, True])
def test_resource_exhausted_is_a_429_with_retry_after(gw: GeminiGateway, stream: bool) -> None:
    client = gw.client(gw.create_key())
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gemini-limited", messages=USER, stream=stream)
    assert info.value.response.headers["retry-after"] == "7"
    assert "exceeded your current quota" in info.value.message
    (row,) = gw.usage_rows(expect=1)
    assert row.status == 429 and row.cost == 0


def test_unavailable_gemini_is_a_503(gw: GeminiGateway) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        gw.client(gw.create_key()).chat.completions.create(model="gemini-down", messages=USER)
    assert info.value.status_code == 503
    assert info.value.code == "UPSTREAM_UNAVAILABLE"


def test_unavailable_gemini_falls_back_to_the_next_deployment(gw: GeminiGateway) -> None:
    raw = gw.client(gw.create_key()).chat.completions.with_raw_response.create(
        model="gemini-then-sim", messages=USER
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-tollgate-provider"] == "sim" and raw.headers["x-tollgate-attempts"] == "2"
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.provider, row.attempts) == (200, "sim", 2)


def test_a_cut_gemini_stream_ends_with_an_error_event_and_an_estimated_row(gw: GeminiGateway) -> None:
    stream = gw.client(gw.create_key()).chat.completions.create(
        model="gemini-cut", messages=USER, stream=True
    )
    text = []
    with pytest.raises(openai.APIError, match="mid-response"):
        for chunk in stream:
            text.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(text) == "lorem ipsum "
    (row,) = gw.usage_rows(expect=1)
    assert row.status == 502 and row.stream and row.estimated
    assert row.completion_tokens > 0 and row.cost > 0
