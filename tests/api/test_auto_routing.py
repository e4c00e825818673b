"""``model: "auto"`` and ``POST /v1/select-model`` end to end, with a profile trained at fixture time on the
synthetic topic set (hashing embedder, so no model load)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.routing.test_auto import dataset
from tests.support.gateway import Gateway
from tollgate.routing.auto.embedding import HASHING, hashing_embed
from tollgate.routing.auto.train import Row, fit
from tollgate.simulator import SimServer

NAMES = {"strong": "auto-strong", "coder": "auto-coder", "mathy": "auto-mathy", "cheap": "auto-cheap"}
PRICE = {"strong": "0.00001", "coder": "0.000002", "mathy": "0.000003", "cheap": "0.000001"}
CODE = "please fix the bug in this python function loop"


def sections(sim_url: str, profile: Path) -> dict[str, Any]:
    return {
        "providers": [{"name": "sim", "kind": "openai", "base_url": sim_url, "api_key": "k", "timeout": 10}],
        "routing": {"auto_profile": str(profile), "auto_cost_bias": 0.5},
        "models": [
            {
                "id": NAMES[m],
                "pricing": {"prompt": PRICE[m], "completion": PRICE[m]},
                "max_output_length": 256,
                "deployments": [{"provider": "sim", "model": f"{m}-up"}],
            }
            for m in NAMES
        ],
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("auto")
    rows = [Row(r.prompt, NAMES[r.model], r.correct) for r in dataset()]
    fit(rows, hashing_embed, k=4, name=HASHING).save(tmp / "profile.json")
    with Gateway(tmp, sim.base_url, sections=sections(sim.base_url, tmp / "profile.json")) as g:
        yield g


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    return gw.create_key(balance="100")


def post(gw: Gateway, key: str | None, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.base_url + path, headers=headers, json=body, timeout=30)


def test_auto_picks_the_specialist_and_says_why(gw: Gateway, key: str) -> None:
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": CODE}]
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-tollgate-auto-model"] == "auto-coder" == raw.headers["x-tollgate-model"]
    assert "cluster" in raw.headers["x-tollgate-auto-reason"]
    (row,) = [r for r in gw.usage_rows(expect=1) if r.request_id == raw.headers["x-request-id"]]
    assert (row.model, row.upstream_model, row.status) == ("auto-coder", "coder-up", 200)


def test_cost_bias_and_models_steer_the_choice(gw: Gateway, key: str) -> None:
    messages = [{"role": "user", "content": CODE}]
    best = post(gw, key, "/chat/completions", {"model": "auto", "messages": messages, "cost_bias": 0})
    assert best.headers["x-tollgate-auto-model"] == "auto-strong"
    within = post(
        gw,
        key,
        "/chat/completions",
        {"model": "auto", "messages": messages, "models": ["auto-mathy", "auto-cheap"]},
    )
    assert within.headers["x-tollgate-auto-model"] in {"auto-mathy", "auto-cheap"}


def test_select_model_answers_with_the_choice_and_ranked_alternatives(gw: Gateway, key: str) -> None:
    r = post(gw, key, "/select-model", {"prompt": "solve the integral and the derivative", "cost_bias": 0.5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["provider"], body["model"]) == ("sim", "auto-mathy")
    assert [a["model"] for a in body["alternatives"]] and body["model"] not in {
        a["model"] for a in body["alternatives"]
    }
    assert r.headers["x-tollgate-auto-model"] == "auto-mathy"
    again = post(
        gw, key, "/select-model", {"prompt": "solve the integral and the derivative", "cost_bias": 0.5}
    )
    assert again.json() == body, "deterministic for the same input"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"prompt": "hi", "cost_bias": 2}, 400, "cost_bias"),
        ({"prompt": "hi", "models": ["nope"]}, 400, "models[0]"),
        ({"models": ["auto-cheap"]}, 400, "prompt"),
    ],
)
def test_select_model_rejects_bad_requests(
    gw: Gateway, key: str, body: dict[str, Any], status: int, says: str
) -> None:
    r = post(gw, key, "/select-model", body)
    assert r.status_code == status and says in r.text, r.text


def test_select_model_needs_a_key(gw: Gateway) -> None:
    assert post(gw, None, "/select-model", {"prompt": "hi"}).status_code == 401


def test_models_the_profile_does_not_score_are_ranked_with_a_neutral_prior(
    tmp_path: Path, sim: SimServer
) -> None:
    rows = [Row(r.prompt, NAMES[r.model], r.correct) for r in dataset()]
    fit(rows, hashing_embed, k=4, name=HASHING).save(tmp_path / "profile.json")
    config = sections(sim.base_url, tmp_path / "profile.json")
    config["models"].append({"id": "mine", "pricing": {"prompt": "0", "completion": "0"},
                             "deployments": [{"provider": "sim", "model": "mine-up"}]})  # fmt: skip
    with Gateway(tmp_path, sim.base_url, sections=config) as g:
        key = g.create_key()
        body = {
            "model": "auto",
            "messages": [{"role": "user", "content": CODE}],
            "models": ["auto-strong", "mine"],
        }
        cheap = post(g, key, "/chat/completions", {**body, "cost_bias": 1})
        assert cheap.status_code == 200, cheap.text
        assert cheap.headers["x-tollgate-auto-model"] == "mine"
        assert "unscored: neutral prior" in cheap.headers["x-tollgate-auto-reason"]
        picked = post(
            g, key, "/select-model", {"prompt": CODE, "models": ["auto-strong", "mine"], "cost_bias": 0}
        )
        assert picked.status_code == 200, picked.text
