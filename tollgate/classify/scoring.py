"""Zero-shot scoring on sentence embeddings, with calibrated probabilities.

Every vector is L2-normalised, so a dot product is a cosine similarity.

**Label vectors.** Each label's prompts (``prompts.label_prompts``: the label name in a ``text_type`` template,
plus its description when given) are embedded and averaged; when the request gives ``examples`` for the label,
the label vector is the mean of that prompt vector and every example's embedding — the prompt weighs as much
as one example, so the more examples, the more the prototype follows the data (with equal weight for the
prompt and the examples' mean, 250 examples of SpamAssassin mail reached 0.69 accuracy against 0.89 for
the examples alone; see ``bench/classify.py``) — and normalised again.

**Single label (``/v1/classify``).** ``p = softmax(cos / T)`` over the labels: temperature scaling (Guo et al.,
2017) of the cosine similarities. ``T = 0.027`` minimises the negative log-likelihood of the true labels on the
``fit`` half of the hand-written labelled sets in ``tests/fixtures/classify`` (news topics with
``text_type="news article"`` and support tickets with ``text_type="support ticket"``, 80 texts, no examples),
fitted by ``calibration.fit_temperature``. On the held-out ``eval`` half the mean confidence is 0.85 against an
accuracy of 0.94 (topics) and 0.75 (support): re-run ``bench/classify.py`` to see the current figures.

**Multi-label (``/v1/tag``).** Each label gets an independent probability by Platt scaling of its cosine
centred on the mean cosine over the request's labels: ``p = sigmoid(A · (cos − mean) + B)`` with ``A = 47.0``,
``B = −2.2``, fitted (``calibration.fit_platt``) on the same ``fit`` texts with "is this the text's label" as the
binary target. Centring makes one constant pair usable across label sets whose raw cosines sit at different
levels. A single label has no others to be centred against, so it is scored as if the mean were 0.1, the
typical level of unrelated labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

TEMPERATURE = 0.027
PLATT_A = 47.0
PLATT_B = -2.2
LONE_LABEL_MEAN = 0.1


def normalise(v: npt.NDArray[np.floating]) -> Vectors:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def label_matrix(prompt_vectors: Sequence[Vectors], example_vectors: Sequence[Vectors | None]) -> Vectors:
    """One row per label: the mean of its prompts' mean and each of its examples (the prompt counts as one
    example), normalised."""
    rows = []
    for prompts, examples in zip(prompt_vectors, example_vectors, strict=True):
        row = prompts.mean(axis=0)
        if examples is not None and len(examples):
            row = (row + examples.sum(axis=0)) / (len(examples) + 1)
        rows.append(row)
    return normalise(np.stack(rows))


def softmax(z: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float64)


def single_label(
    texts: Vectors, labels: Vectors, temperature: float = TEMPERATURE
) -> npt.NDArray[np.float64]:
    """Probabilities over the labels for each text (rows sum to 1)."""
    return softmax((texts @ labels.T) / temperature)


def multi_label(
    texts: Vectors, labels: Vectors, a: float = PLATT_A, b: float = PLATT_B
) -> npt.NDArray[np.float64]:
    """An independent probability per (text, label)."""
    cos = (texts @ labels.T).astype(np.float64)
    mean = cos.mean(axis=1, keepdims=True) if cos.shape[1] > 1 else np.full_like(cos, LONE_LABEL_MEAN)
    return np.asarray(1.0 / (1.0 + np.exp(-(a * (cos - mean) + b))), dtype=np.float64)


def confidence(p: float) -> float:
    """Confidence as the API reports it: 0–1, four decimals."""
    return round(min(max(float(p), 0.0), 1.0), 4)
