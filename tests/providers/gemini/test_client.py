"""tollgate/providers/gemini/client.py against the provider simulator speaking Gemini's wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    ValidationError,
)
from tollgate.providers.base import ChatStream
from tollgate.providers.gemini.client import GeminiProvider
from tollgate.providers.gemini.response import call_id
from tollgate.providers.registry import build_provider
from tollgate.providers.usage import Usage
from tollgate.settings import ProviderConfig
from tollgate.simulator import SimServer
from tollgate.simulator.gemini import SIGNATURE

USER = [{"role": "user", "content": "say something nice"}]
BODY: dict[str, Any] = {"model": "public", "messages": USER}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def make(
    sim: SimServer, base_url: str | None = None, key: str = "gem-key", timeout: float = 10
) -> GeminiProvider:
    config = ProviderConfig(name="gem", kind="gemini", base_url=base_url or sim.url, timeout=timeout)
    provider = build_provider(config, key)
    assert isinstance(provider, GeminiProvider)
    return provider


@pytest.fixture
async def gemini(sim: SimServer) -> AsyncIterator[GeminiProvider]:
    sim.clear()
    provider = make(sim)
    yield provider
    await provider.close()


async def drain(stream: ChatStream) -> list[bytes]:
    items: list[bytes] = []
    try:
        async for item in stream:
            items.append(item)
    finally:
        stream.close()
    return items


def chunks(items: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        for frame in item.split(b"\n\n"):
            if frame:
                assert frame.startswith(b"data: ")
                out.append(orjson.loads(frame[6:]))
    return out


# JSON ---------------------------------------------------------------------------------------------------


async def test_json_answer_is_an_openai_completion_with_gemini_usage(
    gemini: GeminiProvider, sim: SimServer
) -> None:
    result = await gemini.chat(BODY, "gemini-sim@completion_tokens=3,prompt_tokens=40,cached_tokens=25", 10)
    assert orjson.loads(result.body) == result.data
    assert result.data["object"] == "chat.completion"
    assert result.data["id"].startswith("chatcmpl-") and result.data["model"] == "gemini-sim"
    (choice,) = result.data["choices"]
    assert choice["message"]["content"] == "lorem ipsum dolor "
    assert choice["finish_reason"] == "stop"
    assert result.usage == Usage(prompt_tokens=40, completion_tokens=3, cached_tokens=25)
    assert result.data["usage"]["prompt_tokens_details"] == {"cached_tokens": 25}
    (rec,) = sim.requests()
    assert (
        rec["path"]
        == "/v1beta/models/gemini-sim@completion_tokens=3,prompt_tokens=40,cached_tokens=25:generateContent"
    )
    assert rec["headers"]["x-goog-api-key"] == "gem-key"
    assert rec["headers"]["content-type"] == "application/json"
    assert rec["body"]["contents"] == [{"role": "user", "parts": [{"text": "say something nice"}]}]


async def test_request_is_translated_to_gemini_fields(gemini: GeminiProvider, sim: SimServer) -> None:
    body = {
        "model": "public",
        "messages": [{"role": "system", "content": "be brief"}, *USER],
        "max_tokens": 2,
        "stop": ["zzz"],
        "temperature": 0.3,
    }
    result = await gemini.chat(body, "gemini-sim", 10)
    assert result.data["choices"][0]["finish_reason"] == "length"
    assert result.data["choices"][0]["message"]["content"] == "lorem ipsum "
    sent = sim.requests()[-1]["body"]
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 2, "stopSequences": ["zzz"]}


async def test_thoughts_become_reasoning_content_and_reasoning_tokens(gemini: GeminiProvider) -> None:
    body = {**BODY, "reasoning_effort": "low"}
    result = await gemini.chat(body, "gemini-sim@completion_tokens=4,thoughts_tokens=30,prompt_tokens=9", 10)
    message = result.data["choices"][0]["message"]
    assert message["reasoning_content"].startswith("**Thinking")
    assert message["content"] == "lorem ipsum dolor sit "
    assert result.usage == Usage(prompt_tokens=9, completion_tokens=34, reasoning_tokens=30)


async def test_function_call_reply_becomes_tool_calls(gemini: GeminiProvider, sim: SimServer) -> None:
    body = {**BODY, "tools": [WEATHER, TIME], "tool_choice": "required"}
    result = await gemini.chat(body, "gemini-sim@tool_call=get_weather|get_time", 10)
    (choice,) = result.data["choices"]
    assert choice["finish_reason"] == "tool_calls"
    first, second = choice["message"]["tool_calls"]
    assert first["function"]["name"] == "get_weather"
    assert orjson.loads(first["function"]["arguments"]) == {"city": "lorem", "days": 1}
    assert first["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    assert second["function"] == {"name": "get_time", "arguments": "{}"} and "extra_content" not in second
    ids = [c["id"] for c in (first, second)]
    assert ids == [call_id(result.data["id"], 0), call_id(result.data["id"], 1)]
    assert result.usage is not None and result.usage.completion_tokens == 16
    sent = sim.requests()[-1]["body"]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert [d["name"] for d in sent["tools"][0]["functionDeclarations"]] == ["get_weather", "get_time"]


async def test_missing_usage_metadata_leaves_usage_to_the_gateway(gemini: GeminiProvider) -> None:
    result = await gemini.chat(BODY, "gemini-sim@no_usage", 10)
    assert result.usage is None
    assert result.data["choices"][0]["message"]["content"]


async def test_base_url_with_the_version_segment_is_not_doubled(sim: SimServer) -> None:
    sim.clear()
    provider = make(sim, base_url=sim.url + "/v1beta/")
    try:
        await provider.chat(BODY, "gemini-sim", 10)
    finally:
        await provider.close()
    assert sim.requests()[-1]["path"] == "/v1beta/models/gemini-sim:generateContent"


async def test_invalid_request_is_refused_before_any_upstream_call(
    gemini: GeminiProvider, sim: SimServer
) -> None:
    with pytest.raises(ValidationError):
        await gemini.chat({**BODY, "tools": [WEATHER], "tool_choice": "nope"}, "gemini-sim", 10)
    assert sim.requests() == []


# Streams ------------------------------------------------------------------------------------------------


async def test_stream_relays_openai_chunks_then_the_usage_chunk(
    gemini: GeminiProvider, sim: SimServer
) -> None:
    stream = await gemini.chat_stream(
        BODY, "gemini-sim@completion_tokens=5,prompt_tokens=12,cached_tokens=4", 10
    )
    got = chunks(await drain(stream))
    assert got[0]["choices"][0]["delta"] == {"role": "assistant", "content": "lorem "}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in got if c["choices"])
    assert text == "lorem ipsum dolor sit amet "
    assert [c["choices"][0]["finish_reason"] for c in got if c["choices"]][-1] == "stop"
    assert got[-1]["choices"] == [] and got[-1]["usage"]["prompt_tokens"] == 12
    assert got[-1]["usage"]["completion_tokens"] == 5
    assert got[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}
    assert {c["id"] for c in got} == {stream.meta["id"]}
    assert stream.meta["model"] == "gemini-sim" and isinstance(stream.meta["created"], int)
    assert stream.finished and stream.usage == Usage(prompt_tokens=12, completion_tokens=5, cached_tokens=4)
    assert "".join(stream.text_parts) == text
    assert stream.chunks == len(got) - 1
    rec = sim.requests()[-1]
    assert rec["path"].endswith(":streamGenerateContent") and rec["query"] == "alt=sse"
    assert rec["headers"]["x-goog-api-key"] == "gem-key"


async def test_stream_yields_one_item_per_upstream_read(gemini: GeminiProvider) -> None:
    slow = await gemini.chat_stream(BODY, "gemini-sim@completion_tokens=3,chunk_delay_ms=20", 10)
    items = await drain(slow)
    assert [len(chunks([item])) for item in items] == [1, 1, 3]  # the last: content, finish and usage
    fast = await gemini.chat_stream(BODY, "gemini-sim@completion_tokens=3", 10)
    items = await drain(fast)
    assert len(items) == 1 and len(chunks(items)) == 5  # 3 content, finish, usage


async def test_stream_function_call_arrives_as_complete_tool_call_delta(gemini: GeminiProvider) -> None:
    body = {**BODY, "tools": [WEATHER]}
    stream = await gemini.chat_stream(body, "gemini-sim@tool_call=get_weather", 10)
    got = chunks(await drain(stream))
    (call,) = got[0]["choices"][0]["delta"]["tool_calls"]
    assert call["index"] == 0 and call["id"] == call_id(got[0]["id"], 0) and call["type"] == "function"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "lorem", "days": 1}
    assert got[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.finished and stream.usage is not None and stream.usage.completion_tokens == 8


async def test_stream_reasoning_is_relayed_and_counted(gemini: GeminiProvider) -> None:
    body = {**BODY, "reasoning_effort": "medium"}
    stream = await gemini.chat_stream(body, "gemini-sim@completion_tokens=2,thoughts_tokens=11", 10)
    got = chunks(await drain(stream))
    assert got[0]["choices"][0]["delta"]["reasoning_content"].startswith("**Thinking")
    assert got[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 11}
    assert stream.usage is not None and stream.usage.completion_tokens == 13


async def test_stream_without_usage_metadata_leaves_usage_to_the_relay(gemini: GeminiProvider) -> None:
    stream = await gemini.chat_stream(BODY, "gemini-sim@completion_tokens=2,no_usage", 10)
    got = chunks(await drain(stream))
    assert stream.finished and stream.usage is None
    assert all(c["choices"] for c in got) and "usage" not in got[-1]
    assert "".join(stream.text_parts) == "lorem ipsum "


async def test_cut_stream_raises_after_the_chunks_it_got(gemini: GeminiProvider) -> None:
    stream = await gemini.chat_stream(BODY, "gemini-sim@cut_after=2", 10)
    items: list[bytes] = []
    with pytest.raises(UpstreamBadResponseError, match="mid-response"):
        async for item in stream:
            items.append(item)
    stream.close()
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks(items)) == "lorem ipsum "
    assert not stream.finished and stream.usage is None


async def test_error_event_mid_stream_is_mapped_after_the_good_chunks(gemini: GeminiProvider) -> None:
    stream = await gemini.chat_stream(BODY, "gemini-sim@completion_tokens=2,stream_error=503", 10)
    items: list[bytes] = []
    with pytest.raises(UpstreamUnavailableError, match="overloaded"):
        async for item in stream:
            items.append(item)
    stream.close()
    assert len(chunks(items)) == 2
    assert not stream.finished and stream.usage is None


async def test_invalid_json_in_the_stream_is_a_bad_response(gemini: GeminiProvider) -> None:
    stream = await gemini.chat_stream(BODY, "gemini-sim@invalid_json", 10)
    with pytest.raises(UpstreamBadResponseError, match="invalid JSON"):
        await drain(stream)


# Errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_resource_exhausted_is_a_rate_limit_with_the_retry_delay(
    gemini: GeminiProvider, stream: bool
) -> None:
    model = "gemini-sim@error=429,retry_after=16.5"
    with pytest.raises(UpstreamRateLimitError) as info:
        if stream:
            await gemini.chat_stream(BODY, model, 10)
        else:
            await gemini.chat(BODY, model, 10)
    assert info.value.headers == {"Retry-After": "17"}
    assert "exceeded your current quota" in info.value.message


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, UpstreamUnavailableError),
        (400, UpstreamRejectedError),
        (404, UpstreamRejectedError),
        (500, UpstreamBadResponseError),
        (504, UpstreamTimeoutError),
    ],
)
async def test_google_error_envelopes_map_into_the_error_tree(
    gemini: GeminiProvider, status: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await gemini.chat(BODY, f"gemini-sim@error={status}", 10)
    with pytest.raises(error):
        await gemini.chat_stream(BODY, f"gemini-sim@error={status}", 10)


async def test_a_wrong_provider_key_is_the_operators_problem(sim: SimServer) -> None:
    provider = make(sim, key="wrong")
    try:
        with pytest.raises(UpstreamBadResponseError, match="credentials were rejected"):
            await provider.chat(BODY, "gemini-sim@require_key=gem-key", 10)
    finally:
        await provider.close()


async def test_truncated_json_answer_is_a_bad_response(gemini: GeminiProvider) -> None:
    with pytest.raises(UpstreamBadResponseError, match="invalid JSON"):
        await gemini.chat(BODY, "gemini-sim@invalid_json", 10)
    with pytest.raises(UpstreamBadResponseError):
        await gemini.chat(BODY, "gemini-sim@cut_after=0", 10)


async def test_an_upstream_that_never_answers_times_out(gemini: GeminiProvider) -> None:
    with pytest.raises(UpstreamTimeoutError):
        await gemini.chat(BODY, "gemini-sim@hang", 0.2)
    with pytest.raises(UpstreamTimeoutError):
        await gemini.chat_stream(BODY, "gemini-sim@hang", 0.2)


async def test_closing_a_stream_aborts_the_upstream_request(gemini: GeminiProvider, sim: SimServer) -> None:
    stream = await gemini.chat_stream(BODY, "gemini-sim@hang_after=1", 10)
    frames = aiter(stream)
    first = chunks([await anext(frames)])
    assert first[0]["choices"][0]["delta"]["content"] == "lorem "
    stream.close()
    records = await sim.wait_for(lambda recs: bool(recs) and recs[-1]["cancelled"])
    assert not records[-1]["completed"] and not stream.finished
