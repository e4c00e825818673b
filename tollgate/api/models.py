"""``GET /v1/models`` and ``GET /v1/models/{id}``: the catalogue with OpenRouter-style metadata."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.api.http import json_response
from tollgate.errors import NotFoundError
from tollgate.settings import ModelConfig


def _price(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def model_card(m: ModelConfig) -> dict[str, Any]:
    p = m.pricing
    return {
        "id": m.id,
        "object": "model",
        "created": 0,
        "owned_by": "tollgate",
        "hugging_face_id": m.hugging_face_id,
        "name": m.display_name,
        "description": m.description,
        "input_modalities": m.input_modalities,
        "output_modalities": m.output_modalities,
        "quantization": m.quantization,
        "context_length": m.context_length,
        "max_output_length": m.max_output_length,
        "pricing": {
            "prompt": _price(p.prompt),
            "completion": _price(p.completion),
            "image": _price(p.image),
            "request": _price(p.request),
            "input_cache_read": _price(p.cache_read),
        },
        "supported_features": m.supported_features,
    }


async def list_models(request: Request) -> Response:
    models = request.app.state.catalog.models.values()
    return json_response(orjson.dumps({"object": "list", "data": [model_card(m) for m in models]}))


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    m = request.app.state.catalog.models.get(model_id)
    if m is None:
        raise NotFoundError(
            f"Model '{model_id}' does not exist. List the available ones with GET /v1/models.",
            param="model",
            code="model_not_found",
        )
    return json_response(orjson.dumps(model_card(m)))
