"""Chat completions end to end: official openai SDK → Tollgate → provider simulator."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from tests.support.gateway import PRICES, Gateway
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "Say something nice about gateways"}]


def expected_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return (
        (prompt - cached) * Decimal(PRICES["prompt"])
        + cached * Decimal(PRICES["input_cache_read"])
        + completion * Decimal(PRICES["completion"])
    )


def test_json_completion_is_relayed_billed_and_debited(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key(balance="1")
    raw = gateway.client(key).chat.completions.with_raw_response.create(model="sim-small", messages=USER)
    resp = raw.parse()
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 20
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-tollgate-provider"] == "sim"
    (row,) = gateway.usage_rows(expect=1)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.status, row.model, row.provider, row.upstream_model) == (
        200,
        "sim-small",
        "sim",
        "upstream-small",
    )
    assert row.prompt_tokens == resp.usage.prompt_tokens and row.completion_tokens == 20
    assert not row.estimated and not row.stream
    assert row.cost == expected_cost(resp.usage.prompt_tokens, 20)
    assert gateway.balance() == Decimal("1") - row.cost
    upstream = sim.requests()[-1]
    assert upstream["body"]["model"] == "upstream-small"
    assert upstream["headers"]["authorization"] == "Bearer sim-key"


def test_cached_prompt_tokens_are_priced_at_the_cache_read_price(gateway: Gateway) -> None:
    key = gateway.create_key()
    resp = gateway.client(key).chat.completions.create(
        model="sim-small", messages=USER, extra_body={"sim": {"prompt_tokens": 100, "cached_tokens": 60}}
    )
    assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 60
    (row,) = gateway.usage_rows(expect=1)
    assert row.cached_tokens == 60
    assert row.cost == expected_cost(100, 20, cached=60)


def test_unknown_fields_pass_through_to_the_upstream(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key()
    gateway.client(key).chat.completions.create(
        model="sim-small", messages=USER, extra_body={"custom_flag": {"a": 1}, "seed": 7}
    )
    body = sim.requests()[-1]["body"]
    assert body["custom_flag"] == {"a": 1} and body["seed"] == 7


def test_x_api_key_header_authenticates(gateway: Gateway) -> None:
    key = gateway.create_key()
    r = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"X-API-Key": key},
        json={"model": "sim-small", "messages": USER},
    )
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"


def test_api_v1_alias_serves_chat(gateway: Gateway) -> None:
    key = gateway.create_key()
    client = openai.OpenAI(base_url=gateway.server.url + "/api/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(model="sim-small", messages=USER).choices[0].message.content


def test_stream_relays_chunks_and_always_ends_with_usage(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key()
    chunks = list(gateway.client(key).chat.completions.create(model="sim-small", messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 20
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert sim.requests()[-1]["body"]["stream_options"] == {"include_usage": True}
    (row,) = gateway.usage_rows(expect=1)
    assert row.stream and row.status == 200 and not row.estimated
    assert row.completion_tokens == 20 and row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    assert row.cost == expected_cost(row.prompt_tokens, 20)


def test_stream_from_upstream_ignoring_include_usage_gets_counted_usage(gateway: Gateway) -> None:
    key = gateway.create_key()
    chunks = list(
        gateway.client(key).chat.completions.create(
            model="sim-small", messages=USER, stream=True, extra_body={"sim": {"ignore_include_usage": True}}
        )
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].usage.prompt_tokens > 0
    (row,) = gateway.usage_rows(expect=1)
    assert row.estimated and row.status == 200
    assert row.completion_tokens == chunks[-1].usage.completion_tokens
    assert row.cost > 0


def test_json_answer_without_usage_is_counted_locally(gateway: Gateway) -> None:
    key = gateway.create_key()
    resp = gateway.client(key).chat.completions.create(
        model="sim-small", messages=USER, extra_body={"sim": {"no_usage": True}}
    )
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    (row,) = gateway.usage_rows(expect=1)
    assert row.estimated and row.completion_tokens == resp.usage.completion_tokens


def test_fallback_to_the_next_deployment_when_one_is_unreachable(gateway: Gateway) -> None:
    key = gateway.create_key()
    raw = gateway.client(key).chat.completions.with_raw_response.create(model="sim-fallback", messages=USER)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-tollgate-attempts"] == "2"
    (row,) = gateway.usage_rows(expect=1)
    assert (row.provider, row.attempts, row.status) == ("sim", 2, 200)


def test_stream_cut_mid_way_ends_with_an_error_event_and_bills_what_was_produced(gateway: Gateway) -> None:
    key = gateway.create_key()
    stream = gateway.client(key).chat.completions.create(
        model="sim-small", messages=USER, stream=True, extra_body={"sim": {"cut_after": 5}}
    )
    got = []
    with pytest.raises(openai.APIError, match="cut short|closed the connection"):
        for chunk in stream:
            got.append(chunk)
    assert len([c for c in got if c.choices and c.choices[0].delta.content]) == 5
    (row,) = gateway.usage_rows(expect=1)
    assert row.status == 502 and row.stream and row.estimated
    assert row.completion_tokens > 0 and row.cost > 0


def test_stream_failing_before_the_first_byte_returns_an_http_error(gateway: Gateway) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.APIStatusError) as exc:
        list(
            gateway.client(key).chat.completions.create(
                model="sim-small", messages=USER, stream=True, extra_body={"sim": {"cut_after": 0}}
            )
        )
    assert exc.value.status_code == 502
    (row,) = gateway.usage_rows(expect=1)
    assert row.status == 502 and row.cost == 0


def test_every_request_leaves_one_row_even_when_refused_but_for_its_key(gateway: Gateway) -> None:
    key = gateway.create_key()
    client = gateway.client(key)
    client.chat.completions.create(model="sim-small", messages=USER)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sim-small", messages=[])
    with pytest.raises(openai.AuthenticationError):
        gateway.client("tg-wrong-key-123456789").chat.completions.create(model="sim-small", messages=USER)
    client.chat.completions.create(model="sim-small", messages=USER)
    rows = gateway.usage_rows(expect=3)
    assert [r.status for r in rows] == [200, 400, 200], "the wrong key is counted, not written"
    assert len({r.request_id for r in rows}) == 3


def test_json_reply_carries_its_cost_in_usage_and_a_header(gateway: Gateway) -> None:
    key = gateway.create_key()
    raw = gateway.client(key).chat.completions.with_raw_response.create(model="sim-small", messages=USER)
    resp = raw.parse()
    (row,) = gateway.usage_rows(expect=1)
    assert Decimal(raw.headers["x-tollgate-cost"]) == row.cost > 0
    assert resp.usage is not None and Decimal(str(resp.usage.model_extra["cost"])) == row.cost  # type: ignore[index]
    assert '"cost":' in raw.text and "e-" not in raw.text.split('"cost":')[1][:20]  # a plain decimal number


def test_limited_key_gets_openais_reset_durations(gateway: Gateway) -> None:
    key = gateway.create_key(rpm=100, tpm=100_000)
    raw = gateway.client(key).chat.completions.with_raw_response.create(model="sim-small", messages=USER)
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        value = raw.headers[name]
        assert value.endswith("s") and (
            value.endswith("ms") or 0 < float(value.rstrip("s").split("m")[-1]) <= 60
        )
