"""``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /api/v1/chat/models``: the catalogue with
OpenRouter-style metadata. They need a key like every other endpoint, unless ``server.public_models``.

``supported_sampling_parameters`` are the sampling parameters at least one of the model's deployments accepts
(a deployment without ``supported_parameters`` accepts them all); ``created`` is the model's own ``created``
from the configuration, else the time the gateway loaded it. ``/api/v1/chat/models`` lists the models that
generate text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.accounts.keys import key_from_headers
from tollgate.api.http import json_response
from tollgate.errors import NotFoundError
from tollgate.settings import ModelConfig

SAMPLING_PARAMETERS = (
    "temperature", "top_p", "top_k", "min_p", "top_a", "frequency_penalty", "presence_penalty",
    "repetition_penalty", "seed", "stop", "max_tokens", "logit_bias", "logprobs", "top_logprobs",
)  # fmt: skip


def sampling_parameters(m: ModelConfig) -> list[str]:
    accepted: set[str] = set()
    for d in m.deployments:
        if d.supported_parameters is None:
            return list(SAMPLING_PARAMETERS)
        accepted.update(d.supported_parameters)
    return [p for p in SAMPLING_PARAMETERS if p in accepted]


def _price(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def model_card(m: ModelConfig, loaded_at: int = 0) -> dict[str, Any]:
    p = m.pricing
    return {
        "id": m.id,
        "object": "model",
        "created": m.created if m.created is not None else loaded_at,
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
        "supported_sampling_parameters": sampling_parameters(m),
        "supported_features": m.supported_features,
    }


async def _authorize(request: Request) -> None:
    state = request.app.state
    if not state.settings.server.public_models:
        key = key_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
        await state.completions.auth.authenticate(key)


async def list_models(request: Request) -> Response:
    await _authorize(request)
    catalog = request.app.state.catalog
    cards = [model_card(m, catalog.loaded_at) for m in catalog.models.values()]
    return json_response(orjson.dumps({"object": "list", "data": cards}))


async def list_chat_models(request: Request) -> Response:
    await _authorize(request)
    catalog = request.app.state.catalog
    chat = [m for m in catalog.models.values() if "text" in m.output_modalities]
    return json_response(
        orjson.dumps({"object": "list", "data": [model_card(m, catalog.loaded_at) for m in chat]})
    )


async def get_model(request: Request) -> Response:
    await _authorize(request)
    model_id = request.path_params["model_id"]
    m = request.app.state.catalog.models.get(model_id)
    if m is None:
        raise NotFoundError(
            f"Model '{model_id}' does not exist. List the available ones with GET /v1/models.",
            param="model",
            code="model_not_found",
        )
    return json_response(orjson.dumps(model_card(m, request.app.state.catalog.loaded_at)))
