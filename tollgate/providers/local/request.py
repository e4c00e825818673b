"""Pure translation between OpenAI bodies and the local models: chat parameters in, embeddings out."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from tollgate.errors import UpstreamRejectedError

if TYPE_CHECKING:  # numpy comes with the [local] extra; the chat side must import without it
    import numpy as np
    import numpy.typing as npt

# llama-cpp-python's own server defaults, used when the request leaves them out.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
_SAMPLING = ("seed", "presence_penalty", "frequency_penalty")


def _text(provider: str, content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[str] = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise UpstreamRejectedError(f"{provider}: the local model reads text only (got a {kind!r} part)")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def chat_kwargs(provider: str, body: dict[str, Any], upstream_model: str, *, stream: bool) -> dict[str, Any]:
    """Keyword arguments of ``Llama.create_chat_completion`` for an (already validated) OpenAI chat body."""
    if body.get("tools") or body.get("functions"):
        raise UpstreamRejectedError(f"{provider}: the local model does not support tools")
    if (body.get("n") or 1) != 1:
        raise UpstreamRejectedError(f"{provider}: the local model generates one choice per request (n=1)")
    messages = [{"role": m["role"], "content": _text(provider, m.get("content"))} for m in body["messages"]]
    kwargs: dict[str, Any] = {
        "messages": messages,
        "model": upstream_model,
        "stream": stream,
        "temperature": body.get("temperature", DEFAULT_TEMPERATURE),
        "top_p": body.get("top_p", DEFAULT_TOP_P),
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
    }
    stop = body.get("stop")
    if stop:
        kwargs["stop"] = [stop] if isinstance(stop, str) else list(stop)
    for name in _SAMPLING:
        if body.get(name) is not None:
            kwargs[name] = body[name]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        kwargs["response_format"] = fmt
    return {k: v for k, v in kwargs.items() if v is not None}


def embedding_inputs(provider: str, body: dict[str, Any], dimensions: int) -> list[str]:
    """The texts of an OpenAI embeddings request (token-id inputs belong to OpenAI's tokenizers)."""
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise UpstreamRejectedError(
            f"{provider}: 'input' must be a non-empty string or a non-empty array of strings "
            "(the local embedding model does not take token ids)"
        )
    wanted = body.get("dimensions")
    if wanted is not None and wanted != dimensions:
        raise UpstreamRejectedError(f"{provider}: the local embedding model has {dimensions} dimensions")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise UpstreamRejectedError(f"{provider}: encoding_format must be 'float' or 'base64'")
    return texts


def embeddings_response(
    vectors: npt.NDArray[np.float32], model: str, prompt_tokens: int, *, base64_encoding: bool
) -> dict[str, Any]:
    """An OpenAI embeddings ``list``; base64 is the little-endian float32 bytes, as OpenAI sends it."""
    rows: list[Any]
    if base64_encoding:
        rows = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        rows = [v.tolist() for v in vectors]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
