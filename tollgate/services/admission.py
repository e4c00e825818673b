"""The prompt tokens a chat request reserves at admission, before any upstream has counted them.

Text, tool definitions, response formats and every other field are counted from the body's size: a
token per 3 bytes of JSON, which is more than cl100k counts for ordinary text and code (≈ 4 bytes a token;
escapes and JSON syntax count too) and costs ≈ 1 µs a request (the walk below included). Counting with cl100k instead
took 110–190 µs per 1 KB of text here (240 tokens where the size rule reserves 391), and would still not
be the upstream's tokenizer.

Images are not text: each ``image_url`` part counts ``IMAGE_TOKENS``, the most the common providers
charge for one image (OpenAI ≤ 1,445 at high detail for gpt-4o; Anthropic ≈ width × height / 750, images
larger than ≈ 1.15 megapixels scaled down, so ≤ ≈ 1,600; Gemini 258 per 768-pixel tile), and the bytes of
an inline (``data:``) image are not counted as text. Files and audio sent inline are counted by their
size, as text (more than they cost).

Whatever the estimate misses, the upstream's report is what is charged, and settling caps it at the
account's balance plus the grace buffer (``accounts/balances.py``).
"""

from __future__ import annotations

from typing import Any

IMAGE_TOKENS = 1_600
TEXT_BYTES_PER_TOKEN = 3
FRAMING_TOKENS = 16  # the chat format's own tokens around the messages


def prompt_estimate(raw: bytes, body: dict[str, Any]) -> int:
    """The prompt tokens to reserve for ``body`` (the OpenAI chat body ``raw`` was translated into)."""
    images = inline = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue  # text only: counted by size
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if isinstance(url, str) and url.startswith("data:"):
                    inline += len(url)
    text = max(len(raw) - inline, 0) // TEXT_BYTES_PER_TOKEN
    return text + FRAMING_TOKENS + images * IMAGE_TOKENS
