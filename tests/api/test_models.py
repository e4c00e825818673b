"""The model catalogue endpoints and the health check."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import Gateway, gateway_config
from tollgate.simulator import SimServer


def test_models_list_has_the_documented_metadata_shape(gateway: Gateway) -> None:
    key = gateway.create_key()
    models = gateway.client(key).models.list()
    ids = [m.id for m in models.data]
    assert ids == ["sim-small", "sim-fallback", "unreachable", "sim-embed", "sim-embed-fallback"]
    auth = {"Authorization": f"Bearer {key}"}
    card = httpx.get(gateway.base_url + "/models", headers=auth).json()["data"][0]
    assert {
        k: card[k]
        for k in (
            "id",
            "hugging_face_id",
            "name",
            "quantization",
            "context_length",
            "max_output_length",
            "supported_features",
        )
    } == {
        "id": "sim-small",
        "hugging_face_id": "org/sim-small",
        "name": "Sim Small",
        "quantization": "bf16",
        "context_length": 4096,
        "max_output_length": 512,
        "supported_features": ["tools", "json_mode"],
    }
    assert card["input_modalities"] == ["text"] and card["output_modalities"] == ["text"]
    assert card["pricing"] == {
        "prompt": "0.000001",
        "completion": "0.000002",
        "image": "0",
        "request": "0",
        "input_cache_read": "0.0000005",
    }


def test_model_by_id_and_unknown_model(gateway: Gateway) -> None:
    key = gateway.create_key()
    assert gateway.client(key).models.retrieve("sim-small").id == "sim-small"
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.get(gateway.base_url + "/models/nope", headers=auth)
    assert r.status_code == 404 and "GET /v1/models" in r.json()["error"]["message"]
    assert (
        httpx.get(gateway.server.url + "/api/v1/models/sim-small", headers=auth).json()["id"] == "sim-small"
    )


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/sim-small", "/api/v1/chat/models"])
def test_the_catalogue_needs_a_key(gateway: Gateway, path: str) -> None:
    r = httpx.get(gateway.server.url + path)
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_API_KEY"


def test_the_catalogue_can_be_public(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, public_models=True) as gw:
        assert httpx.get(gw.base_url + "/models").status_code == 200


def test_cards_have_sampling_parameters_created_and_chat_models_lists_text_models(gateway: Gateway) -> None:
    key = gateway.create_key()
    auth = {"Authorization": f"Bearer {key}"}
    cards = httpx.get(gateway.base_url + "/models", headers=auth).json()["data"]
    assert all(abs(c["created"] - time.time()) < 600 for c in cards)
    assert {"temperature", "top_p", "seed", "stop"} <= set(cards[0]["supported_sampling_parameters"])
    chat = httpx.get(gateway.server.url + "/api/v1/chat/models", headers=auth).json()["data"]
    assert [c["id"] for c in chat] == ["sim-small", "sim-fallback", "unreachable"]


def test_sampling_parameters_come_from_the_deployments(tmp_path: Path, sim: SimServer) -> None:
    config = gateway_config(sim.base_url, "")
    deployments = [
        {"provider": "sim", "model": "a", "supported_parameters": ["temperature", "tools"]},
        {"provider": "sim", "model": "b", "supported_parameters": ["seed"]},
    ]
    models = [{"id": "m", "created": 1700000000, "deployments": deployments}]
    with Gateway(tmp_path, sim.base_url, sections={"providers": config["providers"], "models": models}) as gw:
        card = gw.client(gw.create_key()).models.retrieve("m")
    assert card.created == 1700000000
    assert card.model_extra is not None and card.model_extra["supported_sampling_parameters"] == [
        "temperature",
        "seed",
    ]


def test_healthz(gateway: Gateway) -> None:
    body = httpx.get(gateway.server.url + "/healthz").json()
    assert body["status"] == "ok" and body["usage_rows_pending"] >= 0
