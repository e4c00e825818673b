"""tollgate/classify/local.py with a stand-in embedder (no model): label-vector caching and result shapes."""

from __future__ import annotations

import numpy as np

from tollgate.classify.local import LocalClassifier, multi_result, single_result
from tollgate.classify.request import Spec

AXES = {"billing": 0, "shipping": 1, "technical": 2}


class FakeEmbedder:
    """Each text points along the axis of the first label word it mentions."""

    def __init__(self) -> None:
        self.encoded: list[list[str]] = []

    async def aload(self) -> None:
        pass

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    async def aencode(self, texts: list[str]) -> np.ndarray:
        self.encoded.append(list(texts))
        out = np.full((len(texts), 3), 0.05, dtype=np.float32)
        for i, text in enumerate(texts):
            for word, axis in AXES.items():
                if word in text:
                    out[i, axis] = 1.0
                    break
        return out / np.linalg.norm(out, axis=1, keepdims=True)


SPEC = Spec(labels=("billing", "shipping", "technical"), text_type="ticket")


async def test_texts_get_the_label_they_point_at_and_label_vectors_are_embedded_once() -> None:
    fake = FakeEmbedder()
    local = LocalClassifier(fake)  # type: ignore[arg-type]
    first = await local.classify(SPEC, ["about billing", "about shipping"])
    again = await local.classify(SPEC, ["about technical"])
    assert [r["label"] for r in first + again] == ["billing", "shipping", "technical"]
    assert fake.encoded[0] == [
        "billing",
        "a question about billing",
        "shipping",
        "a question about shipping",
        "technical",
        "a question about technical",
    ]
    assert len(fake.encoded) == 3, "labels once, then only the texts"
    assert await local.count_tokens(["a b c"]) == [5]


async def test_the_label_cache_is_bounded() -> None:
    fake = FakeEmbedder()
    local = LocalClassifier(fake, label_cache_size=1)  # type: ignore[arg-type]
    await local.label_model(SPEC)
    await local.label_model(Spec(labels=("billing",)))
    await local.label_model(SPEC)
    assert len(fake.encoded) == 3


def test_results_in_wire_shape() -> None:
    row = np.array([0.2, 0.7, 0.55])
    assert single_result(SPEC, row) == {"label": "shipping", "confidence": 0.7}
    assert multi_result(SPEC, row) == {
        "labels": [{"label": "shipping", "confidence": 0.7}, {"label": "technical", "confidence": 0.55}]
    }


async def test_examples_give_a_cached_few_shot_head() -> None:
    fake = FakeEmbedder()
    local = LocalClassifier(fake)  # type: ignore[arg-type]
    spec = Spec(
        labels=SPEC.labels, examples={"billing": ["my billing is wrong"], "shipping": ["shipping late"]}
    )
    model = await local.label_model(spec)
    assert model.few_shot and model.head is not None and model.head.shape == (3, 3)
    assert await local.label_model(spec) is model
    results = await local.classify(spec, ["about billing", "about technical"])
    assert [r["label"] for r in results] == ["billing", "technical"]
    assert all(0 < r["confidence"] <= 1 for r in results)
