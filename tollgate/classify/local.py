"""The local backend: the bundled sentence-embedding model scoring texts against label vectors.

A label configuration's ``scoring.LabelModel`` (label vectors and, with examples, the few-shot head) is built
once and kept in a small LRU, so a steady stream of requests with the same labels (a saved classifier's
version, or the same inline labels) only embeds the texts. Inference and the head's fit run in worker threads
(``Embedder.aencode``, ``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson

from tollgate.classify import scoring
from tollgate.classify.prompts import label_prompts
from tollgate.classify.request import Spec
from tollgate.errors import UpstreamUnavailableError
from tollgate.local.bundled import MissingLocalModel
from tollgate.local.embedder import Embedder

LABEL_CACHE_SIZE = 256


def single_result(spec: Spec, row: np.ndarray[Any, Any]) -> dict[str, Any]:
    """``{label, confidence}``: the most probable label."""
    best = int(row.argmax())
    return {"label": spec.labels[best], "confidence": scoring.confidence(row[best])}


def multi_result(spec: Spec, row: np.ndarray[Any, Any]) -> dict[str, Any]:
    """``{labels: [{label, confidence}]}``: the labels at or above the threshold, most probable first."""
    chosen = sorted(
        (
            (scoring.confidence(p), label)
            for label, p in zip(spec.labels, row, strict=True)
            if p >= spec.threshold
        ),
        key=lambda c: -c[0],
    )
    return {"labels": [{"label": label, "confidence": conf} for conf, label in chosen]}


class LocalClassifier:
    def __init__(self, embedder: Embedder, label_cache_size: int = LABEL_CACHE_SIZE) -> None:
        self.embedder = embedder
        self._size = label_cache_size
        self._labels: OrderedDict[str, scoring.LabelModel] = OrderedDict()

    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model reads them (loads the model on first use)."""
        try:
            await self.embedder.aload()
        except MissingLocalModel as exc:
            raise UpstreamUnavailableError(
                f"The local classification model is not installed: {exc}"
            ) from None
        return await asyncio.to_thread(self.embedder.count_tokens, texts)

    async def classify(self, spec: Spec, texts: list[str]) -> list[dict[str, Any]]:
        """One wire result per text, in ``spec.mode``."""
        model = await self.label_model(spec)
        vectors = await self.embedder.aencode(texts)
        if spec.mode == "single":
            return [single_result(spec, row) for row in scoring.single_label(vectors, model)]
        return [multi_result(spec, row) for row in scoring.multi_label(vectors, model.prototypes)]

    async def label_model(self, spec: Spec) -> scoring.LabelModel:
        key = hashlib.sha256(
            orjson.dumps([spec.labels, spec.descriptions, spec.examples], option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        found = self._labels.get(key)
        if found is not None:
            self._labels.move_to_end(key)
            return found
        prompts = [label_prompts(label, spec.descriptions.get(label)) for label in spec.labels]
        examples = [spec.examples.get(label, []) for label in spec.labels]
        vectors = await self.embedder.aencode(
            [p for g in prompts for p in g] + [e for g in examples for e in g]
        )
        at = 0
        prompt_vectors: list[scoring.Vectors] = []
        for group in prompts:
            prompt_vectors.append(vectors[at : at + len(group)])
            at += len(group)
        example_vectors: list[scoring.Vectors | None] = []
        for group in examples:
            example_vectors.append(vectors[at : at + len(group)] if group else None)
            at += len(group)
        model = await asyncio.to_thread(scoring.label_model, prompt_vectors, example_vectors)
        self._labels[key] = model
        while len(self._labels) > self._size:
            self._labels.popitem(last=False)
        return model
