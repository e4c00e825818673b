"""Token usage as Tollgate counts it, whatever the upstream's wire shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    """Tokens of one request.

    ``prompt_tokens`` follows OpenAI: it *includes* ``cached_tokens`` (cache reads) and ``cache_write_tokens``.
    ``estimated`` is true when the numbers were counted locally because the upstream did not report them.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        """The ``usage`` object of an OpenAI chat completion."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        return out

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read an OpenAI-shaped ``usage`` object; ``None`` when it is missing or malformed."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens", 0)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if not isinstance(cached, int):
            # DeepSeek reports cache hits at the top level.
            cached = usage.get("prompt_cache_hit_tokens", 0)
        cdetails = usage.get("completion_tokens_details")
        reasoning = cdetails.get("reasoning_tokens") if isinstance(cdetails, dict) else None
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached if isinstance(cached, int) else 0,
            reasoning_tokens=reasoning if isinstance(reasoning, int) else 0,
        )
