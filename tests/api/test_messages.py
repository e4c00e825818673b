"""``POST /v1/messages`` end to end: official anthropic SDK → Tollgate (translated onto chat) → upstream;
and ``POST /v1/messages/count_tokens`` on an OpenAI-compatible upstream (Tollgate's estimate)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.api.test_chat_completions import expected_cost
from tests.support.gateway import Gateway
from tests.support.servers import ServerThread
from tollgate.simulator import SimServer
from tollgate.tokens import count_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "responses"
USER: list[Any] = [{"role": "user", "content": "Say something nice about gateways"}]


def client(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.server.url, api_key=key, max_retries=0)


@pytest.fixture
def tool_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose upstream always answers with two parallel tool calls (JSON or stream)."""

    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("stream"):
            return Response((FIXTURES / "chat_stream_tools.sse").read_bytes(), media_type="text/event-stream")
        return Response((FIXTURES / "chat_completion_tools.json").read_bytes(), media_type="application/json")

    with ServerThread(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])) as upstream:
        with Gateway(tmp_path, upstream.url + "/v1") as gw:
            yield gw


def test_json_message_is_translated_billed_and_logged(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key(balance="1")
    raw = client(gateway, key).messages.with_raw_response.create(
        model="sim-small", max_tokens=100, system="Be kind.", messages=USER
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == "sim-small"
    assert message.id.startswith("msg_") and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens == 20
    (row,) = gateway.usage_rows(expect=1)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.status, row.model, row.stream) == ("messages", 200, "sim-small", False)
    assert (row.prompt_tokens, row.completion_tokens) == (message.usage.input_tokens, 20)
    assert row.cost == expected_cost(row.prompt_tokens, 20) and gateway.balance() == 1 - row.cost
    upstream = sim.requests()[-1]["body"]
    assert upstream["messages"][0] == {"role": "system", "content": "Be kind."}
    assert upstream["max_tokens"] == 100 and upstream["model"] == "upstream-small"


def test_stream_gives_text_and_final_usage(gateway: Gateway) -> None:
    key = gateway.create_key()
    with client(gateway, key).messages.stream(model="sim-small", max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 20
    (row,) = gateway.usage_rows(expect=1)
    assert (row.endpoint, row.status, row.stream) == ("messages", 200, True)
    assert (row.prompt_tokens, row.completion_tokens) == (final.usage.input_tokens, 20)
    assert row.cost == expected_cost(row.prompt_tokens, 20)


def test_tools_go_upstream_and_tool_calls_come_back_as_tool_use(tool_gateway: Gateway) -> None:
    key = tool_gateway.create_key()
    tools: Any = [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    message = client(tool_gateway, key).messages.create(
        model="sim-small", max_tokens=100, messages=USER, tools=tools, tool_choice={"type": "any"}
    )
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content] == [
        ("tool_use", "call_abc123", {"city": "Paris"}),
        ("tool_use", "call_def456", {"city": "Lyon"}),
    ]
    with client(tool_gateway, key).messages.stream(
        model="sim-small", max_tokens=100, messages=USER, tools=tools
    ) as stream:
        final = stream.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"city": "Lyon"}),
    ]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 17
    rows = tool_gateway.usage_rows(expect=2)
    assert [(r.endpoint, r.status, r.completion_tokens) for r in rows] == [
        ("messages", 200, 17),
        ("messages", 200, 17),
    ]


def test_tool_definitions_are_translated_for_the_upstream(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key()
    client(gateway, key).messages.create(
        model="sim-small",
        max_tokens=50,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
        tools=[{"name": "w", "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": "w"},
    )
    body = sim.requests()[-1]["body"]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert body["messages"][1]["tool_calls"][0]["id"] == "t1"
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "sunny"}


def test_errors_are_in_anthropic_shape(gateway: Gateway) -> None:
    key = gateway.create_key()
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gateway, key).messages.create(model="nope", max_tokens=10, messages=USER)
    assert isinstance(bad.value.body, dict) and set(bad.value.body) == {"type", "error"}
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
    assert "Model 'nope' is not available" in bad.value.body["error"]["message"]
    document: Any = [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    ]
    with pytest.raises(anthropic.BadRequestError) as unsupported:
        client(gateway, key).messages.create(
            model="sim-small", max_tokens=10, messages=[{"role": "user", "content": document}]
        )
    assert isinstance(unsupported.value.body, dict)
    assert "'document' is not supported" in unsupported.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as denied:
        client(gateway, "tg-wrong").messages.create(model="sim-small", max_tokens=10, messages=USER)
    assert (
        isinstance(denied.value.body, dict) and denied.value.body["error"]["type"] == "authentication_error"
    )
    r = httpx.post(
        gateway.server.url + "/api/v1/messages", headers={"x-api-key": key}, json={"model": "sim-small"}
    )
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert "max_tokens is required" in r.json()["error"]["message"]
    assert r.headers["x-request-id"].startswith("req_")
    r = httpx.get(gateway.server.url + "/v1/messages")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    rows = gateway.usage_rows(expect=3)
    assert [(r.endpoint, r.status) for r in rows] == [("messages", 400)] * 3, "the wrong key leaves no row"


def test_mid_stream_upstream_failure_is_an_anthropic_error_event(tmp_path: Path) -> None:
    with SimServer({"cut_after": 3}) as cutting, Gateway(tmp_path, cutting.base_url) as gw:
        key = gw.create_key()
        with pytest.raises(anthropic.APIStatusError) as caught:
            with client(gw, key).messages.stream(model="sim-small", max_tokens=100, messages=USER) as stream:
                for _ in stream:
                    pass
        assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"
        assert caught.value.body["error"]["type"] == "api_error"
        (row,) = gw.usage_rows(expect=1)
        assert (row.endpoint, row.status, row.stream) == ("messages", 502, True)
        assert row.completion_tokens > 0 and row.cost > 0


def test_client_disconnect_cancels_upstream_and_settles(tmp_path: Path) -> None:
    with (
        SimServer({"completion_tokens": 200, "chunk_delay_ms": 20}) as slow,
        Gateway(tmp_path, slow.base_url) as gw,
    ):
        key = gw.create_key()
        body = {"model": "sim-small", "max_tokens": 500, "messages": USER, "stream": True}
        with httpx.Client(timeout=10) as http:
            with http.stream(
                "POST", gw.server.url + "/v1/messages", json=body, headers={"x-api-key": key}
            ) as r:
                assert r.status_code == 200
                seen = 0
                for line in r.iter_lines():
                    seen += line.startswith("event: content_block_delta")
                    if seen >= 5:
                        break
        (row,) = gw.usage_rows(expect=1)
        assert (row.endpoint, row.status, row.error_code) == ("messages", 499, "CLIENT_DISCONNECTED")
        assert row.estimated and 3 <= row.completion_tokens < 200 and row.cost > 0
        deadline = time.monotonic() + 5
        while not slow.requests()[-1]["cancelled"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.requests()[-1]["cancelled"], "the upstream request was not cancelled"


def test_count_tokens_on_an_openai_upstream_is_tollgates_estimate(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key()
    anth = client(gateway, key)
    seen = len(sim.requests())
    raw = anth.messages.with_raw_response.count_tokens(model="sim-small", messages=USER)
    short = raw.parse().input_tokens
    # cl100k over the one user message, plus OpenAI's chat framing (3 per message, 3 for the reply)
    assert short == 3 + 3 + count_text(USER[0]["content"])
    assert raw.headers["x-tollgate-token-count"] == "estimate"
    assert raw.headers["x-tollgate-upstream-model"] == "upstream-small"
    longer = [{"role": "user", "content": USER[0]["content"] + " and about tokens, at length."}]
    assert anth.messages.count_tokens(model="sim-small", messages=longer).input_tokens > short
    with_system = anth.messages.count_tokens(model="sim-small", system="Be kind.", messages=USER)
    assert with_system.input_tokens == short + 3 + count_text("Be kind.")
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {}}}}]
    with_tools = anth.messages.count_tokens(model="sim-small", messages=USER, tools=tools)
    assert with_tools.input_tokens > short
    assert len(sim.requests()) == seen, "an OpenAI-compatible upstream has nothing to count with"
    r = httpx.post(
        gateway.server.url + "/api/v1/messages/count_tokens",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "sim-small", "messages": USER, "max_tokens": 10},
    )
    assert r.status_code == 200 and r.json() == {"input_tokens": short}


def test_count_tokens_is_free_unlimited_and_leaves_no_usage_row(gateway: Gateway) -> None:
    key = gateway.create_key(balance="1", rpm=2)
    anth = client(gateway, key)
    for _ in range(5):
        assert anth.messages.count_tokens(model="sim-small", messages=USER).input_tokens > 0
    anth.messages.create(model="sim-small", max_tokens=10, messages=USER)  # the rpm budget is untouched
    time.sleep(0.2)  # count requests would have been written before the message's row
    (row,) = gateway.usage_rows(expect=1)
    assert row.endpoint == "messages" and gateway.balance() == 1 - row.cost


def test_count_tokens_errors_are_in_anthropic_shape(gateway: Gateway) -> None:
    key = gateway.create_key()
    url = gateway.server.url + "/v1/messages/count_tokens"
    r = httpx.post(url, json={"model": "sim-small", "messages": USER})
    assert r.status_code == 401 and r.json()["type"] == "error"
    assert (
        r.json()["error"]["type"] == "authentication_error"
        and "Missing API key" in r.json()["error"]["message"]
    )
    with pytest.raises(anthropic.AuthenticationError):
        client(gateway, "tg-wrong").messages.count_tokens(model="sim-small", messages=USER)
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client(gateway, key).messages.count_tokens(model="nope", messages=USER)
    body: Any = unknown.value.body
    assert set(body) == {"type", "error"} and body["error"]["type"] == "invalid_request_error"
    assert "Model 'nope' is not available" in body["error"]["message"]
    r = httpx.post(url, headers={"x-api-key": key}, json={"model": "sim-small"})
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "messages is required" in r.json()["error"]["message"]
    assert r.headers["x-request-id"].startswith("req_")
    r = httpx.post(url, headers={"x-api-key": key}, json={"messages": USER})
    assert r.status_code == 400 and "model is required" in r.json()["error"]["message"]
    client(gateway, key).messages.create(model="sim-small", max_tokens=10, messages=USER)
    time.sleep(0.2)
    assert [row.endpoint for row in gateway.usage_rows(expect=1)] == ["messages"]
