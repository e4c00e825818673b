"""Gemini ``GenerateContentResponse`` → OpenAI ``chat.completion`` (pure, no I/O).

* Each candidate becomes a choice (``candidate.index``; proto3 JSON omits it when 0).
* ``text`` parts are joined into ``content``; parts with ``thought: true`` are thought summaries and go to
  ``reasoning_content`` instead. Other part kinds (inline images, code execution) are dropped.
* ``functionCall`` parts become ``tool_calls`` with ids ``call_<h>_0``, ``call_<h>_1``… (``call_id``: ``<h>``
  is a hash of the response's id, so ids are unique across responses and turns, and stable within one)
  and ``arguments`` as a JSON string. A part's ``thoughtSignature`` is kept in the tool call's
  ``extra_content.google.thought_signature`` (the field Google's own OpenAI-compatible endpoint uses), so a
  client that echoes the assistant message back lets ``build_request`` return it to Gemini.
* A prompt blocked by ``promptFeedback.blockReason`` has no candidates: it becomes one choice with null
  content, a ``refusal`` naming the block reason and ``finish_reason: content_filter``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.usage import Usage

__all__ = [
    "CONTENT_FILTER_REASONS",
    "block_reason",
    "blocked_choice",
    "candidate_parts",
    "finish_reason",
    "to_openai_response",
    "tool_call",
    "usage_from_gemini",
]

CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


def usage_from_gemini(meta: dict[str, Any]) -> Usage:
    """``usageMetadata`` → ``Usage`` (OpenAI semantics).

    Per the API reference ``promptTokenCount`` already includes ``cachedContentTokenCount``, and
    ``totalTokenCount`` is prompt + candidates + tool-use prompt + thoughts, so: prompt = prompt + tool-use
    prompt (the latter only appears with Google's built-in tools), completion = candidates + thoughts,
    reasoning = thoughts, cached = cachedContent.
    """
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    thoughts = _count(meta, "thoughtsTokenCount")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=_count(meta, "candidatesTokenCount") + thoughts,
        cached_tokens=_count(meta, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def finish_reason(gemini_reason: str | None, *, has_tool_calls: bool) -> str:
    """Gemini ``finishReason`` → OpenAI ``finish_reason``."""
    if gemini_reason == "MAX_TOKENS":
        return "length"
    if gemini_reason in CONTENT_FILTER_REASONS:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def call_id(response_id: str, n: int) -> str:
    """The id of the ``n``-th tool call of a response: Gemini has none, and clients (agent loops) tell calls
    apart by id, so it must not repeat in a later turn."""
    digest = hashlib.blake2b(response_id.encode(), digest_size=8).hexdigest()
    return f"call_{digest}_{n}"


def tool_call(part: dict[str, Any], call_id: str) -> dict[str, Any]:
    """An OpenAI ``tool_calls`` entry for a Gemini ``functionCall`` part."""
    call = part["functionCall"]
    args = call.get("args")
    out: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {
            "name": str(call.get("name", "")),
            "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode(),
        },
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def to_openai_response(data: dict[str, Any], *, model: str, created: int, response_id: str) -> dict[str, Any]:
    """Translate a complete ``generateContent`` answer into an OpenAI ``chat.completion`` object."""
    raw = data.get("candidates")
    candidates = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    choices: list[dict[str, Any]] = []
    calls = 0
    for position, candidate in enumerate(candidates):
        choice, calls = _choice(candidate, position, calls, response_id)
        choices.append(choice)
    if not choices:
        choices.append(blocked_choice(data.get("promptFeedback")))
    choices.sort(key=lambda c: int(c["index"]))
    meta = data.get("usageMetadata")
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage_from_gemini(meta if isinstance(meta, dict) else {}).to_openai(),
    }


def _choice(
    candidate: dict[str, Any], position: int, calls: int, response_id: str
) -> tuple[dict[str, Any], int]:
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for part in candidate_parts(candidate):
        if isinstance(part.get("functionCall"), dict):
            tool_calls.append(tool_call(part, call_id(response_id, calls)))
            calls += 1
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") is True else texts).append(part["text"])
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if tool_calls:
        message["tool_calls"] = tool_calls
    reason = candidate.get("finishReason")
    index = candidate.get("index")
    choice = {
        "index": index if isinstance(index, int) else position,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(
            reason if isinstance(reason, str) else None, has_tool_calls=bool(tool_calls)
        ),
    }
    return choice, calls


def block_reason(feedback: Any) -> str | None:
    """``promptFeedback.blockReason``, when Gemini refused the prompt itself."""
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    return reason if isinstance(reason, str) and reason else None


def blocked_choice(feedback: Any) -> dict[str, Any]:
    """The single choice standing for a prompt Gemini blocked: no content, ``content_filter``.

    Raises ``UpstreamBadResponseError`` when there is no block reason either (an answer with no candidates
    for no stated reason is malformed).
    """
    reason = block_reason(feedback)
    if reason is None:
        raise UpstreamBadResponseError(
            "gemini: the response has neither candidates nor a prompt block reason"
        )
    return {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": f"The prompt was blocked by Gemini ({reason}).",
        },
        "logprobs": None,
        "finish_reason": "content_filter",
    }


def candidate_parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """The well-formed parts of ``candidate.content`` (a blocked or truncated candidate may have none)."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _count(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
