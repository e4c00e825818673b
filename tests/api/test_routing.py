"""Routing and resilience end to end: fault injection through the simulator, preferences, fallback models,
the circuit breaker and load balancing. Every request ends in exactly one usage row for what served it."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import PRICES, Gateway
from tollgate.simulator import SimServer
from tollgate.storage import UsageRow

USER = [{"role": "user", "content": "hello there"}]
CHEAP = {"prompt": "0.0000001", "completion": "0.0000002"}
DEAR = {"prompt": "0.00001", "completion": "0.00002"}


def m(model_id: str, *deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "pricing": PRICES,
        "max_output_length": 256,
        "deployments": list(deployments),
        **extra,
    }


def d(provider: str, upstream: str, **extra: Any) -> dict[str, Any]:
    return {"provider": provider, "model": upstream, **extra}


def sections(sim_url: str) -> dict[str, Any]:
    sim = {"kind": "openai", "base_url": sim_url, "api_key": "sim-key", "timeout": 10}
    return {
        "providers": [
            {"name": "sim", **sim},
            {"name": "sim2", **sim},
            {"name": "slow", **sim, "timeout": 0.5},
            {"name": "down", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"},
        ],
        "routing": {
            "retry_rounds": 1,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "retry_after_cap": 1,
            "breaker_failures": 3,
            "breaker_cooldown": 0.5,
        },
        "models": [
            m("r-500", d("sim", "up@error=500"), d("sim2", "ok-500")),
            m("r-dead", d("sim", "up@error=500"), d("sim2", "up@error=503")),
            m("r-429", d("sim", "up@error=429,retry_after=0.2")),
            m("r-429-long", d("sim", "up@error=429,retry_after=30"), d("sim2", "ok-429")),
            m("r-429-once", d("sim", "up@fail_first=1,error=429,retry_after=0.3,scenario=r429once")),
            m("r-hang", d("slow", "up@hang=true"), d("sim2", "ok-hang")),
            m("r-cut", d("sim", "up@cut_after=0"), d("sim2", "ok-cut")),
            m("r-cut-late", d("sim", "up@cut_after=2"), d("sim2", "never-cut")),
            m("r-json", d("sim", "up@invalid_json=true"), d("sim2", "ok-json")),
            m("r-reject", d("sim", "up@error=400"), d("sim2", "never-reject")),
            m(
                "r-prefs",
                d(
                    "sim",
                    "pref-a",
                    zdr=True,
                    quantization="fp8",
                    pricing=DEAR,
                    supported_parameters=["top_p"],
                ),
                d(
                    "sim2",
                    "pref-b",
                    data_collection="deny",
                    pricing=CHEAP,
                    supported_parameters=["temperature"],
                ),
                quantization="bf16",
            ),
            m("r-primary", d("down", "x")),
            m("r-backup", d("sim2", "backup-ok")),
            m("r-breaker", d("sim", "up@fail_first=3,scenario=breaker"), d("sim2", "breaker-ok")),
            m("r-weighted", d("sim", "heavy", weight=3), d("sim2", "light", weight=1), routing="weighted"),
        ],
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[Gateway]:
    with Gateway(
        tmp_path_factory.mktemp("routing"), sim.base_url, upstream_timeout=5, sections=sections(sim.base_url)
    ) as g:
        yield g


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    return gw.create_key(balance="100")


def post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
    )


def stream(gw: Gateway, key: str, body: dict[str, Any]) -> tuple[httpx.Response, str]:
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={**body, "stream": True},
        timeout=30,
    ) as r:
        return r, r.read().decode()


def row_of(gw: Gateway, request_id: str) -> UsageRow:
    """The single usage row of a request (fails if there are none or several)."""
    deadline = time.monotonic() + 5
    while True:
        rows = [r for r in gw.usage_rows() if r.request_id == request_id]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.05)
    rows = [r for r in gw.usage_rows() if r.request_id == request_id]
    assert len(rows) == 1, rows
    return rows[0]


def sent_to(sim: SimServer, upstream: str) -> list[dict[str, Any]]:
    return [q for q in sim.requests() if q.get("body", {}).get("model") == upstream]


def test_a_deployment_returning_500_falls_back_and_bills_the_one_that_served(gw: Gateway, key: str) -> None:
    raw = gw.client(key).chat.completions.with_raw_response.create(model="r-500", messages=USER)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-tollgate-provider"] == "sim2" and raw.headers["x-tollgate-attempts"] == "2"
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.status, row.provider, row.upstream_model, row.attempts) == (200, "sim2", "ok-500", 2)
    assert row.cost > 0


def test_when_every_deployment_fails_the_last_attempts_status_is_returned_after_retries(
    gw: Gateway, key: str
) -> None:
    r = post(gw, key, {"model": "r-dead", "messages": USER})
    assert r.status_code == 503, r.text  # the last attempt (sim2) answered 503
    message = r.json()["error"]["message"]
    assert "All 4 attempts failed" in message and "answered 500" in message and "answered 503" in message
    row = row_of(gw, r.headers["x-request-id"])
    assert (row.status, row.attempts, row.cost) == (503, 4, 0)


def test_429_is_retried_after_retry_after_and_passed_on_when_it_persists(gw: Gateway, key: str) -> None:
    began = time.monotonic()
    r = post(gw, key, {"model": "r-429", "messages": USER})
    assert time.monotonic() - began >= 0.2
    assert r.status_code == 429 and r.headers["retry-after"] == "0.2"
    row = row_of(gw, r.headers["x-request-id"])
    assert (row.status, row.attempts, row.cost) == (429, 2, 0)


def test_429_then_success_on_the_same_deployment_after_waiting_retry_after(gw: Gateway, key: str) -> None:
    began = time.monotonic()
    raw = gw.client(key).chat.completions.with_raw_response.create(model="r-429-once", messages=USER)
    assert time.monotonic() - began >= 0.3
    assert raw.headers["x-tollgate-attempts"] == "2"
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.status, row.provider, row.attempts) == (200, "sim", 2)


def test_a_retry_after_over_the_cap_moves_on_without_waiting(gw: Gateway, key: str) -> None:
    began = time.monotonic()
    raw = gw.client(key).chat.completions.with_raw_response.create(model="r-429-long", messages=USER)
    assert time.monotonic() - began < 2
    assert raw.headers["x-tollgate-provider"] == "sim2"


def test_a_hanging_deployment_times_out_and_falls_back(gw: Gateway, key: str) -> None:
    raw = gw.client(key).chat.completions.with_raw_response.create(model="r-hang", messages=USER)
    assert raw.headers["x-tollgate-provider"] == "sim2"
    assert row_of(gw, raw.headers["x-request-id"]).upstream_model == "ok-hang"
    r, text = stream(gw, key, {"model": "r-hang", "messages": USER})
    assert r.headers["x-tollgate-provider"] == "sim2" and text.endswith("data: [DONE]\n\n")
    row = row_of(gw, r.headers["x-request-id"])
    assert (row.status, row.upstream_model, row.stream) == (200, "ok-hang", True)


def test_a_stream_cut_before_the_first_byte_falls_back(gw: Gateway, key: str) -> None:
    client = gw.client(key)
    raw = client.chat.completions.with_raw_response.create(model="r-cut", messages=USER, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text and raw.headers["x-tollgate-provider"] == "sim2"
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.status, row.provider, row.attempts, row.stream) == (200, "sim2", 2, True)


def test_a_stream_cut_after_the_first_byte_is_not_retried(gw: Gateway, key: str, sim: SimServer) -> None:
    r, text = stream(gw, key, {"model": "r-cut-late", "messages": USER})
    assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "sim"
    assert '"error"' in text and "mid-response" in text and text.endswith("data: [DONE]\n\n")
    row = row_of(gw, r.headers["x-request-id"])
    assert (row.status, row.provider, row.attempts) == (502, "sim", 1)
    assert row.completion_tokens > 0 and row.cost > 0, "what was relayed is billed"
    assert sent_to(sim, "never-cut") == []


def test_invalid_json_from_a_deployment_falls_back(gw: Gateway, key: str) -> None:
    raw = gw.client(key).chat.completions.with_raw_response.create(model="r-json", messages=USER)
    assert raw.headers["x-tollgate-provider"] == "sim2"
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.status, row.upstream_model, row.attempts) == (200, "ok-json", 2)


def test_a_rejected_request_is_not_retried_elsewhere(gw: Gateway, key: str, sim: SimServer) -> None:
    r = post(gw, key, {"model": "r-reject", "messages": USER})
    assert r.status_code == 400
    assert row_of(gw, r.headers["x-request-id"]).status == 400
    assert sent_to(sim, "never-reject") == []


def test_preferences_choose_the_deployment_and_never_reach_the_upstream(
    gw: Gateway, key: str, sim: SimServer
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"provider_zdr": True}, "pref-a"),
        ({"provider_data_collection": "deny"}, "pref-b"),
        ({"provider_sort": "price"}, "pref-b"),
        ({"provider": {"sort": "price", "order": ["sim"]}}, "pref-a"),
        ({"provider_ignore": ["sim"]}, "pref-b"),
        ({"provider_quantizations": ["bf16"]}, "pref-b"),
        ({"provider_max_prompt_price": 1}, "pref-b"),
        ({"provider_require_parameters": True, "top_p": 0.5}, "pref-a"),
        ({"provider": {"max_price": {"completion": "0.5"}}}, "pref-b"),
    ]
    for fields, upstream in cases:
        r = post(gw, key, {"model": "r-prefs", "messages": USER, **fields})
        assert r.status_code == 200, (fields, r.text)
        assert r.headers["x-tollgate-upstream-model"] == upstream, fields
        sent = sim.requests()[-1]["body"]
        assert not any(k.startswith("provider") or k == "models" for k in sent), sent


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (
            {"provider_only": ["nobody"]},
            "'provider_only' (provider in ['nobody']) excluded r-prefs@sim/pref-a",
        ),
        ({"provider_zdr": True, "provider_data_collection": "deny"}, "'provider_data_collection'"),
        (
            {"provider_max_prompt_price": "0.01"},
            "'provider_max_prompt_price' (prompt price <= 0.01) excluded",
        ),
        ({"provider_quantizations": ["int4"]}, "r-prefs@sim2/pref-b"),
        ({"provider": {"max_price": {"request": -1}}}, "'provider.max_price.request' must be a non-negative"),
        ({"provider_sort": "vibes"}, "'provider_sort' must be one of price, latency, throughput"),
        ({"models": ["r-backup", "nope"]}, "'models[1]'"),
    ],
)
def test_unsatisfiable_or_invalid_preferences_get_a_400_that_says_why(
    gw: Gateway, key: str, fields: dict[str, Any], says: str
) -> None:
    r = post(gw, key, {"model": "r-prefs", "messages": USER, **fields})
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"], r.json()["error"]["message"]


def test_models_list_falls_back_to_the_next_model_which_the_body_names(gw: Gateway, key: str) -> None:
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model="r-primary", messages=USER, extra_body={"models": ["r-primary", "r-backup"]}
    )
    assert raw.parse().model == "r-backup"
    assert raw.headers["x-tollgate-model"] == "r-backup"
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row.status, row.model, row.provider, row.attempts) == (200, "r-backup", "sim2", 2)
    r, text = stream(gw, key, {"model": "r-primary", "models": ["r-backup"], "messages": USER})
    assert r.headers["x-tollgate-model"] == "r-backup"
    assert row_of(gw, r.headers["x-request-id"]).model == "r-backup"
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert len(chunks) > 2 and {c["model"] for c in chunks} == {"r-backup"}, "the chunks name the model too"


def test_circuit_breaker_opens_after_failures_and_probes_back(gw: Gateway, key: str, sim: SimServer) -> None:
    client = gw.client(key)

    def attempt() -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(model="r-breaker", messages=USER)
        return raw.headers["x-tollgate-provider"], raw.headers["x-tollgate-attempts"]

    assert [attempt() for _ in range(3)] == [("sim2", "2")] * 3  # sim fails three times: breaker opens
    tried = len(sent_to(sim, "up@fail_first=3,scenario=breaker"))
    assert attempt() == ("sim2", "1"), "the open deployment is skipped"
    assert len(sent_to(sim, "up@fail_first=3,scenario=breaker")) == tried
    time.sleep(0.6)  # cooldown: the next request probes sim, which has recovered
    assert attempt() == ("sim", "1")
    assert attempt() == ("sim", "1")


def test_weighted_balancing_spreads_requests_by_weight(gw: Gateway, key: str) -> None:
    client = gw.client(key)
    served = Counter(
        client.chat.completions.with_raw_response.create(model="r-weighted", messages=USER).headers[
            "x-tollgate-provider"
        ]
        for _ in range(60)
    )
    assert set(served) == {"sim", "sim2"}
    assert served["sim"] > served["sim2"], served


def test_sdk_errors_carry_the_documented_status(gw: Gateway, key: str) -> None:
    with pytest.raises(openai.RateLimitError):
        gw.client(key).chat.completions.create(model="r-429", messages=USER)
