"""Validation of ``POST /v1/embeddings`` bodies (OpenAI's shape).

The body stays a plain dict (other fields pass through to the upstream); only what the gateway relies on is
checked, each failure naming the field and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollgate.errors import ValidationError
from tollgate.protocol.chat import MAX_COUNT
from tollgate.tokens import count_text

MAX_INPUTS = 2048
FORMATS = ("float", "base64")


@dataclass(slots=True)
class EmbeddingsRequest:
    body: dict[str, Any]
    model: str
    inputs: list[str | list[int]]  # one entry per embedding asked for

    def count_tokens(self) -> int:
        """Input tokens counted locally (for upstreams that do not report usage)."""
        return sum(len(i) if isinstance(i, list) else count_text(i) for i in self.inputs)


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _inputs(value: Any) -> list[str | list[int]]:
    hint = "a string, an array of strings, an array of token ids, or an array of token-id arrays"
    if value is None:
        raise ValidationError(f"'input' is required: {hint}.", param="input")
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and _is_tokens(value):
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise ValidationError(f"'input' must be {hint}, and not empty.", param="input")
    if len(items) > MAX_INPUTS:
        raise ValidationError(f"'input' holds {len(items)} items; the limit is {MAX_INPUTS}.", param="input")
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise ValidationError(f"'input[{i}]' is an empty string; send text to embed.", param="input")
        elif not _is_tokens(item) or not item:
            raise ValidationError(
                f"'input[{i}]' must be a non-empty string or array of token ids.", param="input"
            )
    return items


def parse_embeddings_request(body: Any) -> EmbeddingsRequest:
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    model = body.get("model")
    if model is None or model == "":
        raise ValidationError(
            "'model' is required: name one of the models listed by GET /v1/models.", param="model"
        )
    if not isinstance(model, str):
        raise ValidationError("'model' must be a string.", param="model")
    inputs = _inputs(body.get("input"))
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in FORMATS:
        raise ValidationError(
            f"'encoding_format' must be float or base64; got {fmt!r}.", param="encoding_format"
        )
    dims = body.get("dimensions")
    if dims is not None and (
        isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_COUNT
    ):
        raise ValidationError(
            f"'dimensions' must be a positive integer up to {MAX_COUNT}; got {dims!r}.", param="dimensions"
        )
    return EmbeddingsRequest(body, model, inputs)
