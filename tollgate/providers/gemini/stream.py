"""Gemini ``streamGenerateContent?alt=sse`` payloads → OpenAI ``chat.completion.chunk`` dicts.

Feed the parsed JSON of each SSE ``data:`` line to ``StreamTranslator.feed``; it returns the chunks to send
at once and keeps only small per-choice counters (never the text), so memory stays flat however long the
stream. Each payload is a ``GenerateContentResponse`` fragment:

* the first chunk of each choice carries ``delta.role = "assistant"``;
* ``text`` parts → ``delta.content``; ``thought: true`` parts → ``delta.reasoning_content``;
* a ``functionCall`` part arrives whole, so it becomes one complete ``delta.tool_calls`` entry (``index``,
  ``id`` (``call_id``: unique per response), ``type``, ``function.name``, ``function.arguments``, plus
  ``extra_content.google.thought_signature`` when Gemini signed it);
* ``finishReason`` → a separate chunk with an empty delta and the mapped ``finish_reason``;
* ``usageMetadata`` is cumulative (the last one is the total): the latest is kept for ``usage`` and
  ``usage_chunk()``;
* a prompt blocked by ``promptFeedback.blockReason`` → one chunk with a ``refusal`` and ``content_filter``;
* an ``error`` object (Gemini can fail mid-stream with HTTP 200 already sent) raises the mapped
  ``UpstreamError``.
"""

from __future__ import annotations

from typing import Any

from tollgate.providers.gemini.errors import map_error_payload
from tollgate.providers.gemini.response import (
    block_reason,
    call_id,
    candidate_parts,
    finish_reason,
    tool_call,
    usage_from_gemini,
)
from tollgate.providers.usage import Usage

__all__ = ["StreamTranslator"]


class StreamTranslator:
    """Stateful translator for one streamed completion."""

    def __init__(self, *, model: str, created: int, chunk_id: str) -> None:
        self._model = model
        self._created = created
        self._id = chunk_id
        self._started: set[int] = set()
        self._seen: set[int] = set()
        self._finished: set[int] = set()
        self._tool_counts: dict[int, int] = {}
        self._calls = 0
        self._blocked = False
        self._usage_meta: dict[str, Any] | None = None

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Translate one SSE payload; raise the mapped ``UpstreamError`` if it carries an ``error``."""
        error = data.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            raise map_error_payload(code if isinstance(code, int) else 500, error)
        meta = data.get("usageMetadata")
        if isinstance(meta, dict):
            self._usage_meta = meta
        chunks: list[dict[str, Any]] = []
        candidates = data.get("candidates")
        if isinstance(candidates, list) and candidates:
            for position, candidate in enumerate(candidates):
                if isinstance(candidate, dict):
                    chunks.extend(self._candidate(candidate, position))
        elif not self._seen and not self._blocked:
            reason = block_reason(data.get("promptFeedback"))
            if reason is not None:
                self._blocked = True
                delta = {"refusal": f"The prompt was blocked by Gemini ({reason})."}
                chunks.append(self._chunk(0, delta, "content_filter"))
        return chunks

    @property
    def finished(self) -> bool:
        """True once every choice got its finish reason (or the prompt was blocked)."""
        return self._blocked or (bool(self._seen) and self._seen <= self._finished)

    @property
    def usage(self) -> Usage | None:
        """Usage from the latest ``usageMetadata``; ``None`` when the stream reported none (estimate it)."""
        return usage_from_gemini(self._usage_meta) if self._usage_meta is not None else None

    def usage_chunk(self, usage: Usage | None = None) -> dict[str, Any]:
        """The final OpenAI usage chunk (``choices: []``), for ``stream_options.include_usage``.

        ``usage`` overrides the upstream figures (e.g. a local estimate when ``self.usage`` is ``None``).
        """
        final = usage or self.usage or Usage()
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": final.to_openai(),
        }

    def _candidate(self, candidate: dict[str, Any], position: int) -> list[dict[str, Any]]:
        raw_index = candidate.get("index")
        index = raw_index if isinstance(raw_index, int) else position
        self._seen.add(index)
        if index in self._finished:
            return []
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in candidate_parts(candidate):
            if isinstance(part.get("functionCall"), dict):
                slot = self._tool_counts.get(index, 0)
                self._tool_counts[index] = slot + 1
                calls.append({"index": slot, **tool_call(part, call_id(self._id, self._calls))})
                self._calls += 1
            elif isinstance(part.get("text"), str) and part["text"]:
                (thoughts if part.get("thought") is True else texts).append(part["text"])
        delta: dict[str, Any] = {}
        if thoughts:
            delta["reasoning_content"] = "".join(thoughts)
        if texts:
            delta["content"] = "".join(texts)
        if calls:
            delta["tool_calls"] = calls
        out = [self._chunk(index, delta, None)] if delta else []
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self._finished.add(index)
            mapped = finish_reason(reason, has_tool_calls=self._tool_counts.get(index, 0) > 0)
            out.append(self._chunk(index, {}, mapped))
        return out

    def _chunk(self, index: int, delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", **delta}
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}],
        }
