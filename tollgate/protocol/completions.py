"""Legacy ``POST /v1/completions``: validation, the chat request it becomes, and chat answers turned back
into ``text_completion`` objects and chunks.

Upstreams that serve ``/completions`` (OpenAI-compatible kinds, ``completions_api``) get the body as the client
sent it. For the others (Anthropic, Gemini, local) the prompt becomes one user message and the answer's text
the completion's ``text``. What chat cannot express is refused there with a 400 (``refusal``): ``echo``,
``logprobs``, ``suffix``, ``best_of`` above 1 and several prompts (or token-id prompts) in one request.
``max_tokens`` defaults to 16, as OpenAI's does.
"""

from __future__ import annotations

from typing import Any

from tollgate.errors import ValidationError

DEFAULT_MAX_TOKENS = 16
# Fields that mean the same on chat completions: passed on as they are.
_SHARED = (
    "model", "max_tokens", "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty",
    "logit_bias", "seed", "user", "stream", "stream_options", "models", "provider", "route", "cache",
)  # fmt: skip


def _prompts(body: dict[str, Any]) -> list[Any]:
    prompt = body.get("prompt")
    if prompt is None:
        raise ValidationError("'prompt' is required: a string or an array of strings.", param="prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return prompt
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [prompt]  # one prompt as token ids
        if all(isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt):
            return prompt
    raise ValidationError(
        "'prompt' must be a string, an array of strings, or token ids (an array of integers).", param="prompt"
    )


def chat_request_from_completions(body: Any) -> dict[str, Any]:
    """The chat body the pipeline routes, bills and (for translated targets) sends."""
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    prompts = _prompts(body)
    first = prompts[0]
    text = first if isinstance(first, str) else ""
    chat: dict[str, Any] = {k: body[k] for k in _SHARED if k in body}
    chat["messages"] = [{"role": "user", "content": text}]
    if chat.get("max_tokens") is None:
        chat["max_tokens"] = DEFAULT_MAX_TOKENS
    return chat


def refusal(body: dict[str, Any]) -> ValidationError | None:
    """Why only an upstream serving ``/completions`` itself can answer this request (None: any can)."""
    prompts = _prompts(body)
    if len(prompts) > 1:
        return ValidationError(
            "Several prompts in one request are only served by models on upstreams with a native /completions "
            "endpoint; send one prompt per request.",
            param="prompt",
        )
    if not isinstance(prompts[0], str):
        return ValidationError(
            "Token-id prompts are only served by models on upstreams with a native /completions endpoint; "
            "send the prompt as text.",
            param="prompt",
        )
    for name, unsupported in (
        ("echo", body.get("echo") is True),
        ("logprobs", body.get("logprobs") is not None and body.get("logprobs") is not False),
        ("suffix", bool(body.get("suffix"))),
        ("best_of", isinstance(body.get("best_of"), int) and body["best_of"] > 1),
    ):
        if unsupported:
            return ValidationError(
                f"'{name}' is only supported by models on upstreams with a native /completions endpoint; "
                f"this model is served through chat completions. Remove '{name}' or choose such a model.",
                param=name,
            )
    return None


def _completion_id(chat_id: Any) -> str:
    raw = chat_id if isinstance(chat_id, str) and chat_id else "tollgate"
    return "cmpl-" + raw.removeprefix("chatcmpl-")


def completion_from_chat(completion: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` as a ``text_completion``."""
    choices = []
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        content = message.get("content")
        choices.append(
            {
                "text": content if isinstance(content, str) else "",
                "index": choice.get("index", 0),
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    out: dict[str, Any] = {
        "id": _completion_id(completion.get("id")),
        "object": "text_completion",
        "created": completion.get("created"),
        "model": completion.get("model"),
        "choices": choices,
    }
    if completion.get("usage") is not None:
        out["usage"] = completion["usage"]
    return out


def chunk_from_chat(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """A ``chat.completion.chunk`` as a ``text_completion`` chunk; None for one that carries nothing (the
    role-only first chunk)."""
    choices = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        text = content if isinstance(content, str) else ""
        if text or choice.get("finish_reason"):
            choices.append(
                {
                    "text": text,
                    "index": choice.get("index", 0),
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
    if not choices and not chunk.get("choices") == [] and chunk.get("usage") is None:
        return None
    out: dict[str, Any] = {
        "id": _completion_id(chunk.get("id")),
        "object": "text_completion",
        "created": chunk.get("created"),
        "model": chunk.get("model"),
        "choices": choices,
    }
    if chunk.get("usage") is not None:
        out["usage"] = chunk["usage"]
    return out
