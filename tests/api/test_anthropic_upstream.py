"""Chat completions served by an Anthropic upstream: official openai SDK → Tollgate → simulator speaking
Anthropic's Messages API. The client never sees Anthropic's wire format, and usage is billed exactly.
Also ``POST /v1/messages/count_tokens`` (official anthropic SDK), forwarded to the Anthropic upstream."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.support.gateway import PRICES, Gateway, gateway_config
from tests.support.servers import ServerThread
from tollgate.app import create_app
from tollgate.settings import load_settings
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "Say something nice about gateways"}]
# prompt 100 = 50 uncached input + 40 cache reads + 10 cache writes (Anthropic's three counters)
CACHED = "claude-upstream@prompt_tokens=100,cached_tokens=40,cache_creation_tokens=10,completion_tokens=7"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def claude_model(model_id: str, *deployments: dict[str, str]) -> dict[str, Any]:
    return {
        "id": model_id,
        "pricing": PRICES,
        "max_output_length": 512,
        "supported_features": ["tools", "json_mode"],
        "deployments": list(deployments),
    }


def claude(upstream_model: str) -> dict[str, str]:
    return {"provider": "claude", "model": upstream_model}


class AnthropicGateway(Gateway):
    """The test gateway plus a ``claude`` provider of kind ``anthropic`` pointing at the simulator."""

    def __init__(self, tmp: Path, sim: SimServer) -> None:
        self.db_url = f"sqlite+aiosqlite:///{tmp / 'tollgate.db'}"
        config = gateway_config(sim.base_url, self.db_url)
        config["providers"].append(
            {
                "name": "claude",
                "kind": "anthropic",
                "base_url": sim.url,
                "api_key": "sk-ant-sim",
                "timeout": 30,
            }
        )
        config["models"] += [
            claude_model("claude-sim", claude(CACHED)),
            claude_model("claude-count", claude("claude-upstream")),
            claude_model("claude-garbled", claude("claude-upstream@invalid_json=true")),
            claude_model("claude-tools", claude("claude-upstream@tool_call=get_weather")),
            claude_model("claude-overloaded", claude("claude-upstream@error=529")),
            claude_model("claude-limited", claude("claude-upstream@error=429,retry_after=3")),
            claude_model("claude-rejects", claude("claude-upstream@error=400")),
            claude_model("claude-bad-key", claude("claude-upstream@require_key=another-key")),
            claude_model(
                "claude-midstream",
                claude("claude-upstream@stream_error=overloaded_error,stream_error_after=3,prompt_tokens=20"),
            ),
            claude_model(
                "claude-then-openai",
                claude("claude-upstream@error=529"),
                {"provider": "sim", "model": "upstream-b"},
            ),
        ]
        self.config_path = tmp / "tollgate.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.settings = load_settings(str(self.config_path), environ={})
        self.server = ServerThread(create_app(self.settings))


@pytest.fixture
def gw(tmp_path: Path, sim: SimServer) -> Iterator[AnthropicGateway]:
    with AnthropicGateway(tmp_path, sim) as gateway:
        yield gateway


def cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return (
        (prompt - cached) * Decimal(PRICES["prompt"])
        + cached * Decimal(PRICES["input_cache_read"])
        + completion * Decimal(PRICES["completion"])
    )


def upstream_requests(sim: SimServer) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["path"] == "/v1/messages"]


def test_json_completion_is_translated_and_billed_exactly(gw: AnthropicGateway, sim: SimServer) -> None:
    key = gw.create_key(balance="1")
    raw = gw.client(key).chat.completions.with_raw_response.create(model="claude-sim", messages=USER)
    resp = raw.parse()

    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "lorem ipsum dolor sit amet consectetur adipiscing "
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (100, 7, 107)
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 40
    assert raw.headers["x-tollgate-provider"] == "claude"
    upstream = upstream_requests(sim)[-1]
    assert upstream["headers"]["x-api-key"] == "sk-ant-sim"
    assert upstream["headers"]["anthropic-version"] == "2023-06-01"
    assert upstream["body"]["model"] == CACHED
    assert upstream["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": USER[0]["content"]}]}
    ]
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.model, row.provider, row.upstream_model) == (200, "claude-sim", "claude", CACHED)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (100, 7, 40)
    assert not row.estimated
    assert row.cost == cost(100, 7, cached=40)
    assert gw.balance() == Decimal("1") - cost(100, 7, cached=40)


def test_stream_is_openai_chunks_ending_with_exact_usage(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    chunks = list(gw.client(key).chat.completions.create(model="claude-sim", messages=USER, stream=True))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "lorem ipsum dolor sit amet consectetur adipiscing "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunks = [c for c in chunks if c.usage is not None]
    # No stream_options: the usage rides on the final finish_reason chunk.
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices[0].finish_reason
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (100, 7)
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (200, 100, 7, 40)
    assert row.stream and not row.estimated
    assert row.cost == cost(100, 7, cached=40)


def test_tool_calls_come_back_in_openai_shape(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    client = gw.client(key)
    resp = client.chat.completions.create(model="claude-tools", messages=USER, tools=[WEATHER_TOOL])
    (call,) = resp.choices[0].message.tool_calls or []
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"lorem"}')

    chunks = list(
        client.chat.completions.create(model="claude-tools", messages=USER, tools=[WEATHER_TOOL], stream=True)
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == '{"location":"lorem"}'


def test_overloaded_upstream_is_a_503_in_openai_shape(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    with pytest.raises(openai.InternalServerError) as info:
        gw.client(key).chat.completions.create(model="claude-overloaded", messages=USER)
    assert info.value.status_code == 503
    body: Any = info.value.body
    assert body["code"] == "UPSTREAM_UNAVAILABLE" and "anthropic: Overloaded" in body["message"]
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.error_code, row.cost) == (503, "UPSTREAM_UNAVAILABLE", Decimal(0))


def test_upstream_rate_limit_is_a_429_with_retry_after(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    with pytest.raises(openai.RateLimitError) as info:
        gw.client(key).chat.completions.create(model="claude-limited", messages=USER, stream=True)
    assert info.value.response.headers["retry-after"] == "3"
    body: Any = info.value.body
    assert body["code"] == "UPSTREAM_RATE_LIMITED"


def test_upstream_rejection_is_passed_on_without_retrying(gw: AnthropicGateway, sim: SimServer) -> None:
    key = gw.create_key(balance="1")
    sim.clear()
    with pytest.raises(openai.APIStatusError) as info:
        gw.client(key).chat.completions.create(model="claude-rejects", messages=USER)
    body: Any = info.value.body
    assert body["code"] == "UPSTREAM_REJECTED"
    assert body["message"] == "anthropic: Simulated invalid request."
    assert len(upstream_requests(sim)) == 1


def test_rejected_provider_key_is_not_blamed_on_the_client(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    with pytest.raises(openai.APIStatusError) as info:
        gw.client(key).chat.completions.create(model="claude-bad-key", messages=USER)
    assert info.value.status_code == 502
    body: Any = info.value.body
    assert "gateway's provider credentials were rejected" in body["message"]


def test_overloaded_anthropic_falls_back_to_the_next_deployment(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    raw = gw.client(key).chat.completions.with_raw_response.create(model="claude-then-openai", messages=USER)
    assert raw.parse().choices[0].message.content
    assert (raw.headers["x-tollgate-provider"], raw.headers["x-tollgate-attempts"]) == ("sim", "2")


def test_mid_stream_error_ends_the_stream_with_an_error_and_bills_what_was_sent(gw: AnthropicGateway) -> None:
    key = gw.create_key(balance="1")
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in gw.client(key).chat.completions.create(
            model="claude-midstream", messages=USER, stream=True
        ):
            if chunk.choices:
                seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "lorem ipsum dolor "
    assert "anthropic: Overloaded" in info.value.message
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.error_code) == (503, "UPSTREAM_UNAVAILABLE")
    assert row.stream and row.estimated and row.completion_tokens > 0


def anthropic_client(gw: AnthropicGateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.server.url, api_key=key, max_retries=0)


def count_requests(sim: SimServer) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["path"] == "/v1/messages/count_tokens"]


def test_count_tokens_is_the_anthropic_upstreams_own_count(gw: AnthropicGateway, sim: SimServer) -> None:
    key = gw.create_key(balance="1")
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {}}}}]
    sim.clear()
    raw = anthropic_client(gw, key).messages.with_raw_response.count_tokens(
        model="claude-count", system="Be brief.", messages=USER, tools=tools, tool_choice={"type": "auto"}
    )
    counted = raw.parse().input_tokens
    assert raw.headers["x-tollgate-token-count"] == "upstream"
    (sent,) = count_requests(sim)
    assert sent["body"] == {
        "model": "claude-upstream",
        "system": "Be brief.",
        "messages": USER,
        "tools": tools,
        "tool_choice": {"type": "auto"},
    }
    assert (sent["headers"]["x-api-key"], sent["headers"]["anthropic-version"]) == (
        "sk-ant-sim",
        "2023-06-01",
    )
    direct = httpx.post(
        sim.url + "/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01"}, json=sent["body"]
    )
    assert direct.status_code == 200 and counted == direct.json()["input_tokens"] > 0
    # An upstream told to report 100 prompt tokens: far from what Tollgate's own estimate would be.
    assert (
        anthropic_client(gw, key).messages.count_tokens(model="claude-sim", messages=USER).input_tokens == 100
    )
    # Fields count_tokens does not take (Anthropic refuses them) are not forwarded.
    r = httpx.post(
        gw.server.url + "/api/v1/messages/count_tokens",
        headers={"x-api-key": key},
        json={"model": "claude-count", "messages": USER, "max_tokens": 5, "stream": True},
    )
    assert r.status_code == 200 and r.json()["input_tokens"] > 0
    assert set(count_requests(sim)[-1]["body"]) == {"model", "messages"}
    gw.client(key).chat.completions.create(model="claude-sim", messages=USER)
    assert [row.endpoint for row in gw.usage_rows(expect=1)] == ["chat.completions"]  # counting left no row


@pytest.mark.parametrize(
    ("model", "status", "error_type", "message"),
    [
        ("claude-overloaded", 503, "overloaded_error", "anthropic: Overloaded"),
        ("claude-limited", 429, "rate_limit_error", "anthropic: Number of request tokens"),
        ("claude-rejects", 400, "invalid_request_error", "anthropic: Simulated invalid request."),
        ("claude-bad-key", 502, "api_error", "gateway's provider credentials were rejected"),
        ("claude-garbled", 502, "api_error", "claude: the upstream answered with invalid JSON"),
    ],
)
def test_count_tokens_upstream_errors_are_mapped_like_messages_errors(
    gw: AnthropicGateway, model: str, status: int, error_type: str, message: str
) -> None:
    key = gw.create_key(balance="1")
    with pytest.raises(anthropic.APIStatusError) as info:
        anthropic_client(gw, key).messages.count_tokens(model=model, messages=USER)
    body: Any = info.value.body
    assert info.value.status_code == status and body["type"] == "error"
    assert body["error"]["type"] == error_type and message in body["error"]["message"]
    if status == 429:
        assert info.value.response.headers["retry-after"] == "3"


@pytest.mark.parametrize("model", ["claude-count", "sim-small"])
@pytest.mark.parametrize("stream", [False, True])
def test_messages_keep_the_stop_sequence_from_anthropic_and_openai_upstreams(
    gw: AnthropicGateway, model: str, stream: bool
) -> None:
    client = anthropic_client(gw, gw.create_key())
    args: Any = {"model": model, "max_tokens": 50, "messages": USER, "stop_sequences": ["never", "dolor"]}
    if stream:
        with client.messages.stream(**args) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**args)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "dolor")
    assert "".join(b.text for b in message.content if b.type == "text") == "lorem ipsum "


@pytest.mark.parametrize("stream", [False, True])
def test_chat_on_an_anthropic_upstream_reports_the_matched_stop_on_the_choice(
    gw: AnthropicGateway, stream: bool
) -> None:
    client = gw.client(gw.create_key())
    if stream:
        chunks = list(
            client.chat.completions.create(model="claude-count", messages=USER, stop=["dolor"], stream=True)
        )
        final = chunks[-1].choices[0]
    else:
        final = client.chat.completions.create(model="claude-count", messages=USER, stop=["dolor"]).choices[0]  # type: ignore[assignment]
    assert final.finish_reason == "stop" and getattr(final, "stop_reason", None) == "dolor"


def test_messages_without_a_matched_stop_end_their_turn(gw: AnthropicGateway) -> None:
    message = anthropic_client(gw, gw.create_key()).messages.create(
        model="sim-small", max_tokens=50, messages=USER, stop_sequences=["never"]
    )
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
