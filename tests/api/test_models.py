"""The model catalogue endpoints and the health check."""

from __future__ import annotations

import httpx

from tests.support.gateway import Gateway


def test_models_list_has_the_documented_metadata_shape(gateway: Gateway) -> None:
    key = gateway.create_key()
    models = gateway.client(key).models.list()
    ids = [m.id for m in models.data]
    assert ids == ["sim-small", "sim-fallback", "unreachable", "sim-embed", "sim-embed-fallback"]
    card = httpx.get(gateway.base_url + "/models").json()["data"][0]
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
    r = httpx.get(gateway.base_url + "/models/nope")
    assert r.status_code == 404 and "GET /v1/models" in r.json()["error"]["message"]
    assert httpx.get(gateway.server.url + "/api/v1/models/sim-small").json()["id"] == "sim-small"


def test_healthz(gateway: Gateway) -> None:
    body = httpx.get(gateway.server.url + "/healthz").json()
    assert body["status"] == "ok" and body["usage_rows_pending"] >= 0
