"""The LLM backend's pure half: the chat request that asks a model for the label, and reading the answer back.

The label choice is constrained with ``response_format: json_schema`` (strict): for ``/v1/classify`` the
answer is ``{"label": <one of the labels>, "confidence": <0–1>}``; for ``/v1/tag`` it is an object with one
boolean property per label. ``logprobs`` are requested.

**Confidence.** With log-probabilities, a single label's confidence is the probability the model gave to the
label's own tokens: ``exp(Σ logprob)`` over the tokens that spell the label value in the JSON answer (the
first of them carries nearly all the uncertainty, since the schema fixes the rest). For a tag it is the
probability of ``true`` at that label's boolean token (``1 − p(false)`` when ``false`` was chosen). Without
log-probabilities (an upstream that does not return them), single-label confidence falls back to the
model's own ``confidence`` field (a verbalised confidence, clipped to 0–1; 0.9 when it gave none), and tags fall
back to 0.9 for a chosen label and 0.1 for a rejected one — documented guesses, not calibrated probabilities.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from tollgate.classify.request import Spec
from tollgate.errors import UpstreamBadResponseError

FALLBACK_TAG_TRUE = 0.9
FALLBACK_TAG_FALSE = 0.1
MAX_OUTPUT_TOKENS = 1024


def _system(spec: Spec) -> str:
    kind = spec.text_type or "text"
    lines = [
        f"You classify a {kind}. Answer with JSON only, following the schema.",
        "Labels:"
        if spec.mode == "single"
        else "For each label, say whether it applies (true) or not (false):",
    ]
    for label in spec.labels:
        desc = spec.descriptions.get(label)
        lines.append(f"- {label}" + (f": {desc}" if desc else ""))
        for example in spec.examples.get(label, []):
            lines.append(f"  example: {example}")
    if spec.mode == "single":
        lines.append("Choose exactly one label, and give your confidence in it between 0 and 1.")
    return "\n".join(lines)


def response_schema(spec: Spec) -> dict[str, Any]:
    if spec.mode == "single":
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": list(spec.labels)},
                "confidence": {"type": "number"},
            },
            "required": ["label", "confidence"],
            "additionalProperties": False,
        }
    else:
        schema = {
            "type": "object",
            "properties": {label: {"type": "boolean"} for label in spec.labels},
            "required": list(spec.labels),
            "additionalProperties": False,
        }
    return {
        "type": "json_schema",
        "json_schema": {"name": "classification", "strict": True, "schema": schema},
    }


def chat_body(model: str, spec: Spec, text: str, images: list[str]) -> dict[str, Any]:
    """An OpenAI chat-completions body for one input (text, and image URLs or data URLs)."""
    content: str | list[dict[str, Any]] = text
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        for image in images:
            url = (
                image
                if image.startswith(("http://", "https://", "data:"))
                else f"data:image/png;base64,{image}"
            )
            parts.append({"type": "image_url", "image_url": {"url": url}})
        content = parts
    return {
        "model": model,
        "messages": [{"role": "system", "content": _system(spec)}, {"role": "user", "content": content}],
        "response_format": response_schema(spec),
        "temperature": 0,
        "logprobs": True,
        # The classification result is cached by the classification service; not the chat answer again.
        "cache": False,
        "max_tokens": MAX_OUTPUT_TOKENS,
    }


def _answer(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
        answer = orjson.loads(content)
    except (KeyError, IndexError, TypeError, orjson.JSONDecodeError):
        raise UpstreamBadResponseError("The classification model did not answer with JSON") from None
    if not isinstance(answer, dict):
        raise UpstreamBadResponseError("The classification model did not answer with a JSON object")
    logprobs = (choice.get("logprobs") or {}).get("content")
    return answer, logprobs if isinstance(logprobs, list) and logprobs else None


def _token_spans(tokens: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int, float]]]:
    text, spans, pos = "", [], 0
    for t in tokens:
        piece = str(t.get("token", ""))
        spans.append((pos, pos + len(piece), float(t.get("logprob", 0.0))))
        text += piece
        pos += len(piece)
    return text, spans


def _span_probability(spans: list[tuple[int, int, float]], start: int, end: int) -> float:
    return math.exp(sum(lp for s, e, lp in spans if s < end and e > start))


def read_single(data: dict[str, Any], spec: Spec) -> tuple[str, float]:
    answer, logprobs = _answer(data)
    label = answer.get("label")
    if label not in spec.labels:
        raise UpstreamBadResponseError(
            f"The classification model answered a label not in the list: {label!r}"
        )
    if logprobs is not None:
        text, spans = _token_spans(logprobs)
        value = orjson.dumps(label).decode()[1:-1]
        at = text.find('"label"')
        start = text.find(value, at if at >= 0 else 0)
        if start >= 0:
            return label, _span_probability(spans, start, start + len(value))
    conf = answer.get("confidence")
    if isinstance(conf, int | float) and not isinstance(conf, bool):
        return label, min(max(float(conf), 0.0), 1.0)
    return label, FALLBACK_TAG_TRUE


def read_multi(data: dict[str, Any], spec: Spec) -> dict[str, float]:
    """The probability that each label applies."""
    answer, logprobs = _answer(data)
    text, spans = _token_spans(logprobs) if logprobs is not None else ("", [])
    out: dict[str, float] = {}
    for label in spec.labels:
        chosen = answer.get(label)
        if not isinstance(chosen, bool):
            raise UpstreamBadResponseError(
                f"The classification model did not answer true or false for {label!r}"
            )
        p = FALLBACK_TAG_TRUE if chosen else FALLBACK_TAG_FALSE
        if spans:
            key = text.find(orjson.dumps(label).decode())
            word = "true" if chosen else "false"
            start = text.find(word, key) if key >= 0 else -1
            if start >= 0:
                q = _span_probability(spans, start, start + len(word))
                p = q if chosen else 1.0 - q
        out[label] = p
    return out
