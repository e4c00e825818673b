"""Fitting the calibration constants of ``scoring`` on a labelled set (used by ``bench/classify.py``).

Both fits minimise negative log-likelihood by a plain grid search: two or three parameters over a bounded
range need no optimiser, and the result is reproducible to the grid step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tollgate.classify.scoring import softmax

Floats = npt.NDArray[np.floating]
Ints = npt.NDArray[np.integer]


def temperature_nll(cosines: Sequence[Floats], truths: Sequence[Ints], temperature: float) -> float:
    """Mean NLL of the true labels over several tasks (each its own label set)."""
    total, n = 0.0, 0
    for cos, y in zip(cosines, truths, strict=True):
        p = softmax(cos / temperature)[np.arange(len(y)), y]
        total += float(-np.log(np.maximum(p, 1e-12)).sum())
        n += len(y)
    return total / max(n, 1)


def fit_temperature(cosines: Sequence[Floats], truths: Sequence[Ints]) -> float:
    """The NLL-best temperature on a 0.001 grid over 0.005–0.5 (cosines of unrelated texts can be so weakly
    informative that the best temperature is far above the shipped one: keep the edge well away)."""
    grid = np.round(np.arange(0.005, 0.5, 0.001), 3)
    return float(min(grid, key=lambda t: temperature_nll(cosines, truths, float(t))))


def _centred(cos: Floats) -> Floats:
    return np.asarray(cos - cos.mean(axis=1, keepdims=True), dtype=np.float64)


def platt_nll(cosines: Sequence[Floats], truths: Sequence[Ints], a: float, b: float) -> float:
    feats = np.concatenate([_centred(c).ravel() for c in cosines])
    target = np.concatenate([np.eye(c.shape[1])[y].ravel() for c, y in zip(cosines, truths, strict=True)])
    p = np.clip(1.0 / (1.0 + np.exp(-(a * feats + b))), 1e-9, 1 - 1e-9)
    return float(-(target * np.log(p) + (1 - target) * np.log(1 - p)).mean())


def fit_platt(cosines: Sequence[Floats], truths: Sequence[Ints]) -> tuple[float, float]:
    best = (float("inf"), 0.0, 0.0)
    for a in np.arange(5.0, 81.0, 1.0):
        for b in np.round(np.arange(-6.0, 2.01, 0.1), 1):
            loss = platt_nll(cosines, truths, float(a), float(b))
            if loss < best[0]:
                best = (loss, float(a), float(b))
    return best[1], best[2]


def expected_calibration_error(confidences: Floats, correct: npt.NDArray[np.bool_], bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (confidences > lo) & (confidences <= hi)
        if mask.any():
            total += mask.mean() * abs(float(confidences[mask].mean()) - float(correct[mask].mean()))
    return total
