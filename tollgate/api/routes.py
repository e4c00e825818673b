"""The route table (``POST /v1/chat/completions`` is dispatched before it, in ``api/asgi.py``)."""

from starlette.routing import BaseRoute, Route

from tollgate.api.batch import (
    cancel_batch,
    create_batch,
    delete_batch,
    download_results,
    get_batch,
    get_results,
    list_batches,
    start_batch,
    upload_input,
)
from tollgate.api.classify import (
    classify,
    classify_batch,
    create_classifier,
    get_classifier,
    list_classifiers,
    tag,
    tag_batch,
)
from tollgate.api.completions import create_completion
from tollgate.api.embeddings import create_embeddings
from tollgate.api.health import healthz
from tollgate.api.management import create_key, get_balance, get_logs, get_usage, list_keys, revoke_key
from tollgate.api.messages import count_tokens, create_message
from tollgate.api.models import get_model, list_chat_models, list_models
from tollgate.api.responses import create_response
from tollgate.api.select_model import select_model


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/v1/chat/models", list_chat_models, methods=["GET"]),
    ]
    for prefix in ("/v1", "/api/v1"):
        table += [
            Route(f"{prefix}/models", list_models, methods=["GET"]),
            Route(f"{prefix}/keys", list_keys, methods=["GET"]),
            Route(f"{prefix}/keys", create_key, methods=["POST"]),
            Route(f"{prefix}/keys/{{key_id}}", revoke_key, methods=["DELETE"]),
            Route(f"{prefix}/balance", get_balance, methods=["GET"]),
            Route(f"{prefix}/usage", get_usage, methods=["GET"]),
            Route(f"{prefix}/logs", get_logs, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", get_model, methods=["GET"]),
            Route(f"{prefix}/messages", create_message, methods=["POST"]),
            Route(f"{prefix}/messages/count_tokens", count_tokens, methods=["POST"]),
            Route(f"{prefix}/responses", create_response, methods=["POST"]),
            Route(f"{prefix}/embeddings", create_embeddings, methods=["POST"]),
            Route(f"{prefix}/completions", create_completion, methods=["POST"]),
            Route(f"{prefix}/select-model", select_model, methods=["POST"]),
            Route(f"{prefix}/classify", classify, methods=["POST"]),
            Route(f"{prefix}/classify/batch", classify_batch, methods=["POST"]),
            Route(f"{prefix}/tag", tag, methods=["POST"]),
            Route(f"{prefix}/tag/batch", tag_batch, methods=["POST"]),
            Route(f"{prefix}/classifiers", create_classifier, methods=["POST"]),
            Route(f"{prefix}/classifiers", list_classifiers, methods=["GET"]),
            Route(f"{prefix}/classifiers/{{name}}", get_classifier, methods=["GET"]),
            Route(f"{prefix}/batch", create_batch, methods=["POST"]),
            Route(f"{prefix}/batch", list_batches, methods=["GET"]),
            Route(f"{prefix}/batch/{{job_id}}", get_batch, methods=["GET"]),
            Route(f"{prefix}/batch/{{job_id}}", delete_batch, methods=["DELETE"]),
            Route(f"{prefix}/batch/{{job_id}}/input", upload_input, methods=["PUT", "POST"]),
            Route(f"{prefix}/batch/{{job_id}}/start", start_batch, methods=["POST"]),
            Route(f"{prefix}/batch/{{job_id}}/cancel", cancel_batch, methods=["POST"]),
            Route(f"{prefix}/batch/{{job_id}}/results", get_results, methods=["GET"]),
            Route(f"{prefix}/batch/{{job_id}}/results/content", download_results, methods=["GET"]),
        ]
    return table
