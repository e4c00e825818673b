"""``POST /v1/select-model``: ask the automatic router which model it would pick, without calling it.

Body ``{"prompt": "...", "models": [...]?, "cost_bias": 0..1?}`` (``messages`` may replace ``prompt``: the
last user message is routed on, as for ``model: "auto"``). Answer ``{"provider", "model", "cluster",
"score", "quality", "alternatives": [{provider, model, score, quality, price}, ...]}`` (the other
candidates, best first), with the choice and its reason in ``X-Tollgate-Auto-Model`` and
``X-Tollgate-Auto-Reason``. Needs an API key; nothing is billed.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.accounts.keys import key_from_headers
from tollgate.api.http import json_response, read_request_body
from tollgate.errors import ValidationError
from tollgate.routing.auto.chooser import AutoRouter, cost_bias_of, prompt_text, selection_headers
from tollgate.routing.auto.select import Choice
from tollgate.routing.router import Router
from tollgate.services.context import new_request_id


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    return body


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None and isinstance(body.get("messages"), list):
        prompt = prompt_text(body["messages"])
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("'prompt' is required: the text to route.", param="prompt")
    return prompt


async def select_model(request: Request) -> Response:
    state = request.app.state
    request.state.request_id = request_id = new_request_id()
    await state.completions.auth.authenticate(
        key_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
    )
    router: Router = state.completions.router
    auto: AutoRouter | None = router.auto
    if auto is None:
        raise ValidationError("The automatic router is not enabled on this gateway (routing.auto_profile).")
    body = _body(await read_request_body(request, state.settings.server.body_limit))
    prompt = _prompt(body)
    selection = await auto.choose(
        prompt, body.get("models"), cost_bias_of(body.get("cost_bias"), auto.cost_bias)
    )

    def provider(model_id: str) -> str:
        return auto.catalog.targets(model_id)[0].provider.name

    def card(c: Choice) -> dict[str, Any]:
        return {
            "provider": provider(c.model),
            "model": c.model,
            "score": round(c.score, 6),
            "quality": round(c.quality, 6),
            "price": f"{c.price.normalize():f}",
        }

    answer = {
        "provider": provider(selection.model),
        "model": selection.model,
        "cluster": selection.cluster,
        "cost_bias": selection.cost_bias,
        "score": round(selection.ranked[0].score, 6),
        "quality": round(selection.ranked[0].quality, 6),
        "alternatives": [card(c) for c in selection.ranked[1:]],
    }
    return json_response(orjson.dumps(answer), {"X-Request-ID": request_id, **selection_headers(selection)})
