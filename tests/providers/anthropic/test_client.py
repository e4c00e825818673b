"""tollgate/providers/anthropic/client.py against the provider simulator speaking Anthropic's wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
)
from tollgate.providers.anthropic.client import AnthropicProvider, AnthropicStream, messages_url
from tollgate.providers.registry import build_provider
from tollgate.providers.usage import Usage
from tollgate.settings import ProviderConfig
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "say hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["location"],
        },
    },
}


@pytest.fixture
async def provider(sim: SimServer) -> AsyncIterator[AnthropicProvider]:
    config = ProviderConfig(name="claude", kind="anthropic", base_url=sim.url, timeout=10)
    p = build_provider(config, "sk-ant-test")
    assert isinstance(p, AnthropicProvider)
    yield p
    await p.close()


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-public", "messages": USER, **extra}


async def collect(stream: AnthropicStream | Any) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    async for item in stream:
        for frame in item.split(b"\n\n"):
            if frame:
                assert frame.startswith(b"data: ")
                chunks.append(orjson.loads(frame[6:]))
    return chunks


def last_request(sim: SimServer) -> dict[str, Any]:
    rec = sim.requests()[-1]
    assert rec["path"] == "/v1/messages"
    return rec


def test_base_url_is_the_api_root_and_a_trailing_v1_is_not_doubled() -> None:
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://proxy.example/anthropic/v1") == "https://proxy.example/anthropic/v1/messages"


async def test_json_reply_is_an_openai_completion_with_exact_usage(
    provider: AnthropicProvider, sim: SimServer
) -> None:
    result = await provider.chat(body(max_tokens=50), "claude-sim@completion_tokens=4,prompt_tokens=30", 10)

    data = orjson.loads(result.body)
    assert data == result.data
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("msg_sim")
    assert data["model"] == "claude-sim"
    choice = data["choices"][0]
    assert choice["message"]["content"] == "lorem ipsum dolor sit "
    assert choice["finish_reason"] == "stop"
    assert result.usage == Usage(prompt_tokens=30, completion_tokens=4)
    assert data["usage"]["total_tokens"] == 34
    rec = last_request(sim)
    assert rec["headers"]["x-api-key"] == "sk-ant-test"
    assert rec["headers"]["anthropic-version"] == "2023-06-01"
    assert rec["headers"]["content-type"] == "application/json"
    assert "authorization" not in rec["headers"]
    sent = rec["body"]
    assert sent["model"] == "claude-sim@completion_tokens=4,prompt_tokens=30"
    assert sent["max_tokens"] == 50
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "say hello"}]}]
    assert "stream" not in sent


async def test_json_reply_counts_cache_reads_and_writes_in_the_prompt(provider: AnthropicProvider) -> None:
    model = "claude-sim@prompt_tokens=100,cached_tokens=60,cache_creation_tokens=25,completion_tokens=3"
    result = await provider.chat(body(), model, 10)

    assert result.usage == Usage(
        prompt_tokens=100, completion_tokens=3, cached_tokens=60, cache_write_tokens=25
    )
    assert result.data["usage"]["prompt_tokens_details"] == {"cached_tokens": 60}


async def test_max_tokens_cut_is_reported_as_length(provider: AnthropicProvider) -> None:
    result = await provider.chat(body(max_tokens=3), "claude-sim", 10)
    assert result.data["choices"][0]["finish_reason"] == "length"
    assert result.usage is not None and result.usage.completion_tokens == 3


async def test_json_tool_call_becomes_openai_tool_calls(provider: AnthropicProvider, sim: SimServer) -> None:
    result = await provider.chat(body(tools=[WEATHER_TOOL]), "claude-sim@tool_call=get_weather", 10)

    choice = result.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("toolu_sim")
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "lorem", "unit": "celsius"}
    assert choice["message"]["content"] is None
    assert last_request(sim)["body"]["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]


async def test_response_format_json_schema_comes_back_as_content(provider: AnthropicProvider) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
    result = await provider.chat(body(response_format=fmt), "claude-sim", 10)

    choice = result.data["choices"][0]
    assert orjson.loads(choice["message"]["content"]) == {"answer": "lorem", "score": 2}
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]


async def test_stream_yields_openai_chunks_and_ends_with_its_own_usage_chunk(
    provider: AnthropicProvider, sim: SimServer
) -> None:
    stream = await provider.chat_stream(
        body(stream=True), "claude-sim@completion_tokens=5,prompt_tokens=12,cached_tokens=2", 10
    )
    assert isinstance(stream, AnthropicStream)
    chunks = await collect(stream)

    assert stream.finished
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("msg_sim")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "lorem ipsum dolor sit amet "
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 12
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert stream.usage == Usage(prompt_tokens=12, completion_tokens=5, cached_tokens=2)
    assert "".join(stream.text_parts) == text
    assert stream.meta == {k: chunks[0][k] for k in ("id", "created", "model")}
    assert stream.meta["model"] == "claude-sim"
    assert stream.chunks == len(chunks)
    assert last_request(sim)["body"]["stream"] is True


async def test_stream_usage_folds_cache_writes_from_message_start(provider: AnthropicProvider) -> None:
    model = "claude-sim@prompt_tokens=40,cache_creation_tokens=30,completion_tokens=2,chunk_delay_ms=1"
    stream = await provider.chat_stream(body(stream=True), model, 10)
    chunks = await collect(stream)

    assert stream.usage == Usage(prompt_tokens=40, completion_tokens=2, cache_write_tokens=30)
    assert chunks[-1]["usage"]["prompt_tokens"] == 40


async def test_stream_tool_call_arguments_arrive_as_deltas(provider: AnthropicProvider) -> None:
    stream = await provider.chat_stream(
        body(stream=True, tools=[WEATHER_TOOL]), "claude-sim@tool_call=get_weather", 10
    )
    chunks = await collect(stream)

    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"].startswith("toolu_sim") and calls[0]["function"]["name"] == "get_weather"
    assert len(calls) > 2  # the start, then the input in several input_json_delta pieces
    arguments = "".join(tc["function"]["arguments"] for tc in calls)
    assert orjson.loads(arguments) == {"location": "lorem", "unit": "celsius"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert stream.finished and stream.usage is not None


async def test_mid_stream_error_is_raised_after_the_frames_before_it(provider: AnthropicProvider) -> None:
    stream = await provider.chat_stream(
        body(stream=True), "claude-sim@stream_error=overloaded_error,stream_error_after=2", 10
    )
    seen: list[bytes] = []
    with pytest.raises(UpstreamUnavailableError) as info:
        async for item in stream:
            seen.append(item)

    assert b'"content":"lorem "' in b"".join(seen) and b'"content":"ipsum "' in b"".join(seen)
    assert info.value.message == "anthropic: Overloaded"
    assert info.value.details["mid_stream"] is True
    assert not stream.finished and stream.usage is None


async def test_stream_cut_short_is_not_finished_and_has_no_usage(provider: AnthropicProvider) -> None:
    stream = await provider.chat_stream(body(stream=True), "claude-sim@cut_after=2", 10)
    with pytest.raises(UpstreamBadResponseError):
        await collect(stream)
    assert not stream.finished and stream.usage is None
    assert "".join(stream.text_parts) == "lorem ipsum "


async def test_invalid_json_in_the_stream_is_a_bad_response(provider: AnthropicProvider) -> None:
    stream = await provider.chat_stream(body(stream=True), "claude-sim@invalid_json", 10)
    with pytest.raises(UpstreamBadResponseError, match="invalid JSON"):
        await collect(stream)


@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limit_keeps_retry_after(provider: AnthropicProvider, stream: bool) -> None:
    model = "claude-sim@error=429,retry_after=7"
    with pytest.raises(UpstreamRateLimitError) as info:
        if stream:
            await provider.chat_stream(body(stream=True), model, 10)
        else:
            await provider.chat(body(), model, 10)
    assert info.value.headers == {"Retry-After": "7"}
    assert info.value.details["upstream_type"] == "rate_limit_error"
    assert info.value.details["upstream_request_id"].startswith("req_sim")


@pytest.mark.parametrize("stream", [False, True])
async def test_overloaded_529_is_unavailable_and_retryable(provider: AnthropicProvider, stream: bool) -> None:
    with pytest.raises(UpstreamUnavailableError) as info:
        if stream:
            await provider.chat_stream(body(stream=True), "claude-sim@error=529", 10)
        else:
            await provider.chat(body(), "claude-sim@error=529", 10)
    assert info.value.status == 503 and info.value.retryable
    assert info.value.message == "anthropic: Overloaded"


async def test_invalid_request_400_is_rejected_with_anthropics_message(provider: AnthropicProvider) -> None:
    with pytest.raises(UpstreamRejectedError) as info:
        await provider.chat(body(), "claude-sim@error=400", 10)
    assert info.value.message == "anthropic: Simulated invalid request."
    assert not info.value.retryable


async def test_wrong_provider_key_401_is_a_gateway_configuration_error(
    provider: AnthropicProvider,
) -> None:
    with pytest.raises(UpstreamBadResponseError) as info:
        await provider.chat(body(), "claude-sim@require_key=other-key", 10)
    assert "provider credentials were rejected" in info.value.message
    assert info.value.details["upstream_status"] == 401


async def test_the_right_provider_key_is_accepted(provider: AnthropicProvider) -> None:
    result = await provider.chat(body(), "claude-sim@require_key=sk-ant-test", 10)
    assert result.data["choices"][0]["message"]["content"]


async def test_invalid_json_body_is_a_bad_response(provider: AnthropicProvider) -> None:
    with pytest.raises(UpstreamBadResponseError, match="invalid JSON"):
        await provider.chat(body(), "claude-sim@invalid_json", 10)
