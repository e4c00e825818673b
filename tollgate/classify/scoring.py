"""Scoring texts against labels on sentence embeddings, with calibrated probabilities.

Every vector is L2-normalised, so a dot product is a cosine similarity. Measured figures and the data behind
every constant: ``bench/classify.py`` and the README's classification section.

**Zero-shot label vectors.** A label's prompts (``prompts.label_prompts``) are embedded and averaged
(``zero_shot_vectors``); a text's logit for the label is its cosine to that vector.

**Few-shot (``examples`` given).** A small linear head is fitted per label configuration (``fit_head``) and cached
with it: multinomial logistic regression of the logits ``HEAD_SCALE * x @ W.T`` on the examples' embeddings plus
each label's zero-shot vector as one more example of its label, started from and pulled towards the prototypes
``normalise(centroid + PROMPT_WEIGHT * label vector)`` by an L2 penalty ``HEAD_L2 * |W - W0|^2``, ``HEAD_STEPS``
Adam steps. The head learns which directions separate the labels the caller gave instead of averaging them into
one vector per label; the penalty keeps it near the prototypes when examples are few.

**Single label (``/v1/classify``).** ``p = softmax(logits / T)``, with a temperature that depends on what is known
at request time: ``T = a + b * ln(number of labels)``, one pair for zero-shot (``ZERO_SHOT_T``) and one for
few-shot (``FEW_SHOT_T``); the former single global ``T = 0.074`` was far under-confident on many-label sets
(ECE 0.22-0.34 on BANKING77 and CLINC150). The pairs minimise the negative log-likelihood of the true labels
(``calibration.fit_log_temperature``) on the fit sets only: HWU64's 899 test texts (64 labels) and the ``fit``
halves of SpamAssassin (2), ChatterBot (11) and Brown (15), zero-shot and with 1, 3 and 10 examples per label
(``bench/classify.py --fit-only`` reprints them). Fitted: zero-shot ``T = 0.1698 - 0.0286 ln C`` (0.150 at 2
labels, 0.027 at 150), few-shot ``T = 2.787 - 0.408 ln C`` on the head's logits. The temperature *falls* with
the label count: with many labels the true one's cosine stands further above the crowd than with few. Held
out (BANKING77, CLINC150, StackOverflow test texts): ECE 0.016-0.071 for BANKING77 and CLINC150 except
CLINC150 zero-shot (0.165, over-confident), StackOverflow 0.05-0.16; the README has the table.

``PROMPT_WEIGHT``, ``HEAD_*``: chosen on the examples pools and HWU64 while trying centroid, prototype mixes,
shrunk LDA and the head (10 examples/label, over the examples' centroid: BANKING77 +3.7 points, CLINC150
+2.4, HWU64 +1.7, StackOverflow +1.9); held out, not tuned further.

**Multi-label (``/v1/tag``).** Each label gets an independent probability by Platt scaling of its cosine to the
label's prototype, centred on the mean cosine over the request's labels: ``p = sigmoid(A * (cos - mean) + B)``
(``PLATT_A``, ``PLATT_B``, fitted with ``calibration.fit_platt`` on the hand-written sets in
``tests/fixtures/classify``, 4-5 labels a task, where a label applies about as often as in a typical tagging
request). A single label has no others to be centred against, so it is scored as if the mean were 0.1, the
typical level of unrelated labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

# provenance of every constant below: the module docstring and the README's classification section
ZERO_SHOT_T = (0.1698, -0.0286)
FEW_SHOT_T = (2.7871, -0.4082)
PROMPT_WEIGHT = 0.5
HEAD_SCALE = 20.0
HEAD_L2 = 0.001
HEAD_STEPS = 150
HEAD_STEP_SIZE = 0.02
PLATT_A = 47.0
PLATT_B = -2.2
LONE_LABEL_MEAN = 0.1
MIN_TEMPERATURE = 0.005


@dataclass(frozen=True)
class LabelModel:
    """What a request's labels are scored against: one prototype row per label (tags, zero-shot logits) and,
    when the request gave examples, the few-shot head's weights."""

    prototypes: Vectors
    head: Vectors | None = None

    @property
    def few_shot(self) -> bool:
        return self.head is not None

    def logits(self, texts: Vectors) -> npt.NDArray[np.float64]:
        if self.head is None:
            return np.asarray(texts @ self.prototypes.T, dtype=np.float64)
        return np.asarray(HEAD_SCALE * (texts @ self.head.T), dtype=np.float64)


def normalise(v: npt.NDArray[np.floating]) -> Vectors:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def softmax(z: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float64)


def zero_shot_vectors(prompt_vectors: Sequence[Vectors]) -> Vectors:
    """One row per label: the mean of its prompts' embeddings, normalised."""
    return normalise(np.stack([p.mean(axis=0) for p in prompt_vectors]))


def prototypes(zero_shot: Vectors, example_vectors: Sequence[Vectors | None]) -> Vectors:
    """A label's zero-shot vector, moved to its examples' centroid when it has examples (the centroid counts
    1, the label vector ``PROMPT_WEIGHT``)."""
    rows = []
    for label, examples in zip(zero_shot, example_vectors, strict=True):
        if examples is None or not len(examples):
            rows.append(label)
        else:
            rows.append(normalise(examples.mean(axis=0)) + PROMPT_WEIGHT * label)
    return normalise(np.stack(rows))


def fit_head(zero_shot: Vectors, example_vectors: Sequence[Vectors | None], start: Vectors) -> Vectors:
    """The few-shot head's weights (see the module docstring), deterministic for given inputs."""
    xs = [zero_shot]
    ys = [np.arange(len(zero_shot))]
    for i, examples in enumerate(example_vectors):
        if examples is not None and len(examples):
            xs.append(examples)
            ys.append(np.full(len(examples), i))
    x = np.concatenate(xs).astype(np.float32)
    onehot = np.eye(len(zero_shot), dtype=np.float32)[np.concatenate(ys)]
    w0 = start.astype(np.float32)
    w = w0.copy()
    m: npt.NDArray[np.floating] = np.zeros_like(w)
    v: npt.NDArray[np.floating] = np.zeros_like(w)
    for t in range(1, HEAD_STEPS + 1):
        p = softmax(HEAD_SCALE * (x @ w.T)).astype(np.float32)
        grad = HEAD_SCALE * ((p - onehot).T @ x) / len(x) + 2 * HEAD_L2 * (w - w0)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= HEAD_STEP_SIZE * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return np.asarray(w, dtype=np.float32)


def label_model(prompt_vectors: Sequence[Vectors], example_vectors: Sequence[Vectors | None]) -> LabelModel:
    """Everything a label configuration is scored with; the head only when some label has examples."""
    zero = zero_shot_vectors(prompt_vectors)
    protos = prototypes(zero, example_vectors)
    if all(e is None or not len(e) for e in example_vectors):
        return LabelModel(protos)
    return LabelModel(protos, fit_head(zero, example_vectors, protos))


def temperature(n_labels: int, few_shot: bool) -> float:
    a, b = FEW_SHOT_T if few_shot else ZERO_SHOT_T
    return max(a + b * math.log(max(n_labels, 2)), MIN_TEMPERATURE)


def single_label(texts: Vectors, model: LabelModel, temp: float | None = None) -> npt.NDArray[np.float64]:
    """Probabilities over the labels for each text (rows sum to 1)."""
    t = temperature(len(model.prototypes), model.few_shot) if temp is None else temp
    return softmax(model.logits(texts) / t)


def multi_label(
    texts: Vectors, labels: Vectors, a: float = PLATT_A, b: float = PLATT_B
) -> npt.NDArray[np.float64]:
    """An independent probability per (text, label)."""
    cos = (texts @ labels.T).astype(np.float64)
    mean = cos.mean(axis=1, keepdims=True) if cos.shape[1] > 1 else np.full_like(cos, LONE_LABEL_MEAN)
    return np.asarray(1.0 / (1.0 + np.exp(-(a * (cos - mean) + b))), dtype=np.float64)


def confidence(p: float) -> float:
    """Confidence as the API reports it: 0-1, four decimals."""
    return round(min(max(float(p), 0.0), 1.0), 4)
