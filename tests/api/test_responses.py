"""``POST /v1/responses`` end to end: official openai SDK → Tollgate (translated onto chat) → simulator."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.test_chat_completions import expected_cost
from tests.support.gateway import Gateway
from tollgate.simulator import SimServer


def test_json_response_is_translated_billed_and_logged(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key(balance="1")
    raw = gateway.client(key).responses.with_raw_response.create(
        model="sim-small",
        instructions="Be kind.",
        input="Say something nice about gateways",
        max_output_tokens=50,
        extra_body={"sim": {"prompt_tokens": 40, "cached_tokens": 10}},
    )
    resp = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert resp.id == "resp_" + request_id.removeprefix("req_")
    assert resp.object == "response" and resp.status == "completed" and resp.model == "sim-small"
    assert resp.output_text and resp.output[0].type == "message"
    assert resp.instructions == "Be kind." and resp.max_output_tokens == 50
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (40, 20, 60)
    assert resp.usage.input_tokens_details.cached_tokens == 10
    (row,) = gateway.usage_rows(expect=1)
    assert (row.request_id, row.endpoint, row.status, row.model) == (
        request_id,
        "responses",
        200,
        "sim-small",
    )
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (40, 20, 10)
    assert not row.stream and row.cost == expected_cost(40, 20, cached=10)
    assert gateway.balance() == 1 - row.cost
    upstream = sim.requests()[-1]["body"]
    assert upstream["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Say something nice about gateways"},
    ]
    assert upstream["max_tokens"] == 50 and upstream["model"] == "upstream-small"


def test_streamed_response_emits_responses_events_and_bills_like_chat(gateway: Gateway) -> None:
    key = gateway.create_key()
    stream = gateway.client(key).responses.create(
        model="sim-small",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}],
        stream=True,
        extra_body={"sim": {"completion_tokens": 7}},
    )
    events = list(stream)
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 7
    (row,) = gateway.usage_rows(expect=1)
    assert (row.endpoint, row.status, row.stream, row.completion_tokens) == ("responses", 200, True, 7)
    assert row.prompt_tokens == final.usage.input_tokens and row.cost > 0


def test_sdk_stream_helper_accumulates_the_final_response(gateway: Gateway) -> None:
    key = gateway.create_key()
    with gateway.client(key).responses.stream(model="sim-small", input="hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text and final.output_text == text


def test_mid_stream_failure_ends_with_response_failed(gateway: Gateway) -> None:
    key = gateway.create_key()
    events = list(
        gateway.client(key).responses.create(
            model="sim-small", input="hi", stream=True, extra_body={"sim": {"cut_after": 3}}
        )
    )
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]
    (row,) = gateway.usage_rows(expect=1)
    assert row.endpoint == "responses" and row.status == 502 and row.completion_tokens > 0


def test_function_tools_are_sent_upstream_as_chat_tools(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key()
    gateway.client(key).responses.create(
        model="sim-small",
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        tools=[
            {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}
        ],
        tool_choice="auto",
        text={"format": {"type": "json_object"}},
    )
    body = sim.requests()[-1]["body"]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": False},
        }
    ]
    assert body["tool_choice"] == "auto" and body["response_format"] == {"type": "json_object"}
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_function_tools_are_echoed_with_strict(gateway: Gateway) -> None:
    key = gateway.create_key()
    resp = gateway.client(key).responses.create(
        model="sim-small",
        input="weather?",
        tools=[
            {"type": "function", "name": "a", "parameters": {"type": "object"}, "strict": False},
            {"type": "function", "name": "b", "parameters": {"type": "object"}},  # type: ignore[typeddict-item]
        ],
    )
    assert [(t.name, t.strict) for t in resp.tools] == [("a", False), ("b", True)]  # type: ignore[union-attr]


def test_errors_are_in_openai_shape_and_leave_a_row(gateway: Gateway) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client(key).responses.create(model="sim-small", input="hi", previous_response_id="resp_x")
    assert caught.value.code == "VALIDATION_ERROR"
    assert "previous_response_id" in caught.value.message
    with pytest.raises(openai.AuthenticationError):
        gateway.client("tg-wrong").responses.create(model="sim-small", input="hi")
    r = httpx.post(
        gateway.server.url + "/api/v1/responses", headers={"X-API-Key": key}, json={"model": "nope"}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    gateway.client(key).responses.create(model="sim-small", input="hi")
    rows = gateway.usage_rows(expect=3)
    assert [(r.endpoint, r.status) for r in rows] == [
        ("responses", 400),
        ("responses", 400),
        ("responses", 200),
    ], "a refused key leaves no row"
