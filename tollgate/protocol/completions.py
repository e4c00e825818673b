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


def _text_completion(chat: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``text_completion`` (or chunk) around ``choices``: the id, created, model and usage of the chat
    completion (or chunk) it comes from."""
    chat_id = chat.get("id")
    raw = chat_id if isinstance(chat_id, str) and chat_id else "tollgate"
    out: dict[str, Any] = {
        "id": "cmpl-" + raw.removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": chat.get("created"),
        "model": chat.get("model"),
        "choices": choices,
    }
    if chat.get("usage") is not None:
        out["usage"] = chat["usage"]
    return out


def _text_choice(choice: dict[str, Any], content: Any) -> dict[str, Any]:
    """A chat choice (or chunk choice) whose message (or delta) holds ``content``, as a text choice."""
    return {
        "text": content if isinstance(content, str) else "",
        "index": choice.get("index", 0),
        "logprobs": None,
        "finish_reason": choice.get("finish_reason"),
    }


def completion_from_chat(completion: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` as a ``text_completion``."""
    choices = [
        _text_choice(choice, (choice.get("message") or {}).get("content"))
        for choice in completion.get("choices") or []
    ]
    return _text_completion(completion, choices)


def chunk_from_chat(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """A ``chat.completion.chunk`` as a ``text_completion`` chunk; None for one that carries nothing (the
    role-only first chunk)."""
    choices = []
    for choice in chunk.get("choices") or []:
        out = _text_choice(choice, (choice.get("delta") or {}).get("content"))
        if out["text"] or choice.get("finish_reason"):
            choices.append(out)
    if not choices and not chunk.get("choices") == [] and chunk.get("usage") is None:
        return None
    return _text_completion(chunk, choices)
