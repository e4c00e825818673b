"""The catalogue enforced: a request goes only to models whose catalogue entry says they can serve it.

From each model's entry (``settings.ModelConfig``):

* ``output_modalities``: ``text`` for the chat-shaped endpoints (chat, completions, responses, messages),
  ``embeddings`` for ``POST /v1/embeddings``;
* ``input_modalities``: a message part of type ``image_url`` / ``input_image`` / ``image`` needs ``image``,
  ``input_audio`` needs ``audio``, ``file`` / ``input_file`` needs ``file``;
* ``max_output_length``: ``max_tokens`` / ``max_completion_tokens`` may not ask for more.

Fallback models that cannot serve the request are left out of the plan; when none can, the 400 gives the
first model's reason (``MODEL_CAPABILITY``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollgate.errors import ValidationError
from tollgate.protocol.chat import ChatRequest
from tollgate.routing.catalog import Target
from tollgate.settings import ModelConfig

CODE = "MODEL_CAPABILITY"
_PART_MODALITY = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",
    "input_audio": "audio",
    "file": "file",
    "input_file": "file",
}


def _modalities(messages: list[Any]) -> set[str]:
    found: set[str] = set()
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                modality = _PART_MODALITY.get(kind) if isinstance(kind, str) else None
                if modality is not None:
                    found.add(modality)
    return found


def chat_refusal(req: ChatRequest, model: ModelConfig) -> ValidationError | None:
    """Why ``model`` cannot serve this chat-shaped request, or None when it can."""
    if "text" not in model.output_modalities:
        hint = " use POST /v1/embeddings for it" if "embeddings" in model.output_modalities else ""
        return ValidationError(
            f"Model '{model.id}' does not generate text (output modalities: "
            f"{', '.join(model.output_modalities)}):{hint or ' choose a chat model'}.",
            param="model",
            code=CODE,
        )
    if req.max_tokens is not None and req.max_tokens > model.max_output_length:
        name = "max_completion_tokens" if "max_completion_tokens" in req.body else "max_tokens"
        return ValidationError(
            f"'{name}' is {req.max_tokens}, above the {model.max_output_length} output tokens model "
            f"'{model.id}' can produce; ask for at most {model.max_output_length}.",
            param=name,
            code=CODE,
        )
    if set(model.input_modalities) >= {"image", "audio", "file"}:
        return None
    missing = sorted(_modalities(req.body["messages"]) - set(model.input_modalities))
    if missing:
        return ValidationError(
            f"Model '{model.id}' does not accept {' or '.join(missing)} input (input modalities: "
            f"{', '.join(model.input_modalities)}); remove those message parts or choose a model that "
            "accepts them.",
            param="messages",
            code=CODE,
        )
    return None


def embeddings_refusal(model: ModelConfig) -> ValidationError | None:
    if "embeddings" in model.output_modalities:
        return None
    return ValidationError(
        f"Model '{model.id}' is not an embeddings model (output modalities: "
        f"{', '.join(model.output_modalities)}); name a model whose output_modalities include embeddings.",
        param="model",
        code=CODE,
    )


def fit_chat(req: ChatRequest, targets: list[Target]) -> list[Target]:
    """The targets whose model can serve ``req``; the first model's 400 when none can."""
    return _fit(targets, lambda m: chat_refusal(req, m))


def fit_embeddings(targets: list[Target]) -> list[Target]:
    return _fit(targets, embeddings_refusal)


def _fit(targets: list[Target], refusal: Callable[[ModelConfig], ValidationError | None]) -> list[Target]:
    verdicts: dict[str, ValidationError | None] = {}
    kept = []
    for target in targets:
        model = target.model
        if model.id not in verdicts:
            verdicts[model.id] = refusal(model)
        if verdicts[model.id] is None:
            kept.append(target)
    if kept:
        return kept
    raise next(v for v in verdicts.values() if v is not None)
