"""The route table (``POST /v1/chat/completions`` is dispatched before it, in ``api/asgi.py``)."""

from starlette.routing import BaseRoute, Route

from tollgate.api.health import healthz
from tollgate.api.models import get_model, list_models


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for prefix in ("/v1", "/api/v1"):
        table += [
            Route(f"{prefix}/models", list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", get_model, methods=["GET"]),
        ]
    return table
