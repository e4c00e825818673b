"""``POST /v1/responses`` forwarded natively to an upstream that serves the Responses API: official openai SDK
→ Tollgate → simulator ``/v1/responses``, billed like chat, with fallback onto a translated target."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.api.test_chat_completions import expected_cost
from tests.support.gateway import PRICES, Gateway
from tollgate.providers.openai_compat import OpenAICompatProvider
from tollgate.providers.openai_responses import usage_from_responses
from tollgate.settings import ProviderConfig
from tollgate.simulator import SimServer
from tollgate.storage import UsageRow


def sections(sim_url: str) -> dict[str, Any]:
    def model(model_id: str, *deployments: dict[str, Any]) -> dict[str, Any]:
        return {"id": model_id, "pricing": PRICES, "max_output_length": 512, "deployments": list(deployments)}

    return {
        "providers": [
            {"name": "native", "kind": "openai", "base_url": sim_url, "api_key": "k", "responses_api": True},
            {"name": "chat", "kind": "openai", "base_url": sim_url, "api_key": "k"},
        ],
        "models": [
            model("n-model", {"provider": "native", "model": "native-up"}),
            model("t-model", {"provider": "chat", "model": "chat-up"}),
            model(
                "n-fallback",
                {"provider": "native", "model": "native-down@error=503"},
                {"provider": "chat", "model": "chat-rescue"},
            ),
        ],
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("native"), sim.base_url, sections=sections(sim.base_url)) as g:
        yield g


def sent(sim: SimServer, model: str) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if (r.get("body") or {}).get("model") == model]


def row_of(gw: Gateway, request_id: str) -> UsageRow:
    """The single usage row of a request (fails if there are none or several)."""
    deadline = time.monotonic() + 5
    rows = [r for r in gw.usage_rows() if r.request_id == request_id]
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = [r for r in gw.usage_rows() if r.request_id == request_id]
    time.sleep(0.05)
    rows = [r for r in gw.usage_rows() if r.request_id == request_id]
    assert len(rows) == 1, rows
    return rows[0]


def test_json_response_comes_back_unchanged_and_is_billed_with_cached_tokens(
    gw: Gateway, sim: SimServer
) -> None:
    key = gw.create_key(balance="1", account="native-json")
    raw = gw.client(key).responses.with_raw_response.create(
        model="n-model",
        input="Say hello",
        store=True,
        extra_body={
            "sim": {"prompt_tokens": 40, "cached_tokens": 10, "completion_tokens": 6},
            "provider": {"sort": "price"},
        },
    )
    resp = raw.parse()
    assert raw.headers["x-tollgate-upstream-api"] == "responses"
    assert resp.id.startswith("resp_sim")  # the upstream's own response id: not re-encoded by the gateway
    assert resp.status == "completed" and resp.model == "native-up" and resp.store is True
    assert resp.usage is not None and resp.usage.input_tokens_details.cached_tokens == 10
    (upstream,) = sent(sim, "native-up")
    assert upstream["path"] == "/v1/responses"
    assert upstream["body"]["input"] == "Say hello" and upstream["body"]["store"] is True
    assert "provider" not in upstream["body"]  # routing fields stay in the gateway
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.endpoint, row.status, row.model, row.provider) == ("responses", 200, "n-model", "native")
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (40, 6, 10)
    assert not row.stream and row.cost == expected_cost(40, 6, cached=10)
    assert gw.balance("native-json") == 1 - row.cost


def test_stream_relays_the_upstream_events_and_bills_from_response_completed(
    gw: Gateway, sim: SimServer
) -> None:
    key = gw.create_key(account="native-stream")
    with gw.client(key).responses.with_streaming_response.create(
        model="n-model",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        stream=True,
        extra_body={"sim": {"prompt_tokens": 30, "cached_tokens": 20, "completion_tokens": 5}},
    ) as raw:
        request_id = raw.headers["x-request-id"]
        events = list(raw.parse())
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 5
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.id.startswith("resp_sim") and final.usage is not None and final.usage.output_tokens == 5
    assert [r["path"] for r in sent(sim, "native-up")][-1] == "/v1/responses"
    row = row_of(gw, request_id)
    assert (row.endpoint, row.status, row.stream) == ("responses", 200, True)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (30, 5, 20)
    assert row.cost == expected_cost(30, 5, cached=20)


def test_native_target_failure_falls_back_to_a_translated_target(gw: Gateway, sim: SimServer) -> None:
    key = gw.create_key(account="native-fallback")
    raw = gw.client(key).responses.with_raw_response.create(
        model="n-fallback", input="hello", extra_body={"sim": {"prompt_tokens": 12, "completion_tokens": 3}}
    )
    resp = raw.parse()
    assert raw.headers["x-tollgate-provider"] == "chat" and raw.headers["x-tollgate-attempts"] == "2"
    assert "x-tollgate-upstream-api" not in raw.headers
    assert resp.id == "resp_" + raw.headers["x-request-id"].removeprefix("req_")  # translated by the gateway
    assert resp.output_text and resp.usage is not None and resp.usage.output_tokens == 3
    assert [r["path"] for r in sent(sim, "native-down@error=503")] == ["/v1/responses"]
    assert [r["path"] for r in sent(sim, "chat-rescue")] == ["/v1/chat/completions"]
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.status, row.provider, row.attempts) == (200, "chat", 2)
    assert row.cost == expected_cost(12, 3)


def test_stored_state_is_served_natively_and_refused_for_translated_targets(
    gw: Gateway, sim: SimServer
) -> None:
    client = gw.client(gw.create_key(account="native-state"))
    resp = client.responses.create(model="n-model", input="and then?", previous_response_id="resp_earlier")
    assert resp.previous_response_id == "resp_earlier"
    assert sent(sim, "native-up")[-1]["body"]["previous_response_id"] == "resp_earlier"
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="t-model", input="and then?", previous_response_id="resp_earlier")
    assert "previous_response_id" in str(exc.value)
    assert not sent(sim, "chat-up")


def test_native_stream_that_fails_mid_way_ends_with_an_error_event(gw: Gateway) -> None:
    key = gw.create_key(account="native-cut")
    with httpx.stream(
        "POST",
        gw.base_url + "/responses",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "n-model", "input": "hi", "stream": True, "sim": {"cut_after": 2}},
        timeout=30,
    ) as r:
        text = r.read().decode()
        request_id = r.headers["x-request-id"]
    assert text.count("event: response.output_text.delta") == 2
    assert text.rstrip().splitlines()[-2] == "event: error" and "[DONE]" not in text
    row = row_of(gw, request_id)
    assert row.status >= 500 and row.stream


def test_background_is_refused_even_for_native_targets(gw: Gateway, sim: SimServer) -> None:
    client = gw.client(gw.create_key(account="native-background"))
    before = len(sent(sim, "native-up"))
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="n-model", input="later", background=True)
    assert "background" in str(exc.value)
    assert len(sent(sim, "native-up")) == before


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_without_usage_is_billed_on_an_estimate(gw: Gateway, stream: bool) -> None:
    key = gw.create_key(account=f"native-estimate-{stream}")
    r = httpx.post(
        gw.base_url + "/responses",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "n-model", "input": "count me", "stream": stream, "sim": {"no_usage": True}},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["x-tollgate-upstream-api"] == "responses"
    row = row_of(gw, r.headers["x-request-id"])
    assert row.estimated and row.prompt_tokens > 0 and row.completion_tokens > 0 and row.cost > 0


def test_responses_capability_comes_from_the_preset_unless_the_provider_entry_says_otherwise() -> None:
    def native(**config: Any) -> bool:
        return OpenAICompatProvider(ProviderConfig(name="p", **config), None).responses_api

    assert native(preset="openai") and native(preset="openrouter")
    assert not native(preset="deepseek") and not native(base_url="http://127.0.0.1:1/v1")
    assert not native(preset="openai", responses_api=False)
    assert native(preset="groq", responses_api=True)


def test_responses_usage_is_read_with_cached_and_reasoning_tokens() -> None:
    usage = usage_from_responses(
        {
            "input_tokens": 328,
            "input_tokens_details": {"cached_tokens": 256},
            "output_tokens": 52,
            "output_tokens_details": {"reasoning_tokens": 40},
            "total_tokens": 380,
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.reasoning_tokens) == (
        328,
        256,
        52,
        40,
    )
    assert usage_from_responses(None) is None and usage_from_responses({"input_tokens": 3}) is None
