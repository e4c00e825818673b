"""How a profile's prompts are embedded: the name in the profile picks the embedder.

``all-MiniLM-L6-v2`` (the bundled sentence-embedding model, ``tollgate[local]``) is the production choice.
``hashing-256`` is a deterministic bag-of-words hashing embedder that needs no model: a fallback for
installs without the local models, and what the fast tests train on.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Awaitable, Callable

import numpy as np

from tollgate.routing.auto.profile import Vectors

HASHING = "hashing-256"
_WORD = re.compile(r"[a-z0-9]+")

AsyncEmbed = Callable[[list[str]], Awaitable[Vectors]]


def hashing_embed(texts: list[str], dimensions: int = 256) -> Vectors:
    """Each lower-cased word (and word pair) adds +1/-1 at a crc32-chosen position; rows of norm 1."""
    out = np.zeros((len(texts), dimensions), dtype=np.float32)
    for i, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        for feature in [*words, *(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))]:
            h = zlib.crc32(feature.encode())
            out[i, h % dimensions] += 1.0 if (h >> 16) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def sync_embedder(name: str) -> Callable[[list[str]], Vectors]:
    if name == HASHING:
        return hashing_embed
    from tollgate.local.embedder import MODEL_NAME, get_embedder

    if name != MODEL_NAME:
        raise ValueError(f"unknown embedding model {name!r} (known: {MODEL_NAME}, {HASHING})")
    return get_embedder().encode


def async_embedder(name: str) -> AsyncEmbed:
    """An embedder that never blocks the event loop."""
    embed = sync_embedder(name)

    async def run(texts: list[str]) -> Vectors:
        if name == HASHING:
            return embed(texts)
        return await asyncio.to_thread(embed, texts)

    return run
