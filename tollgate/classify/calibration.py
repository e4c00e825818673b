"""Fitting the calibration constants of ``scoring`` on labelled sets (used by ``bench/classify.py``).

Every fit minimises negative log-likelihood by a plain grid search: two parameters over a bounded range need no
optimiser, and the result is reproducible to the grid step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tollgate.classify.scoring import softmax

Floats = npt.NDArray[np.floating]
Ints = npt.NDArray[np.integer]


def temperature_nll(logits: Sequence[Floats], truths: Sequence[Ints], temperature: float) -> float:
    """Mean NLL of the true labels over several tasks (each its own label set)."""
    total, n = 0.0, 0
    for z, y in zip(logits, truths, strict=True):
        p = softmax(z / temperature)[np.arange(len(y)), y]
        total += float(-np.log(np.maximum(p, 1e-12)).sum())
        n += len(y)
    return total / max(n, 1)


def fit_temperature(logits: Sequence[Floats], truths: Sequence[Ints]) -> float:
    """The NLL-best single temperature on a 0.001 grid over 0.005-0.5."""
    grid = np.round(np.arange(0.005, 0.5, 0.001), 3)
    return float(min(grid, key=lambda t: temperature_nll(logits, truths, float(t))))


def log_temperature_nll(logits: Sequence[Floats], truths: Sequence[Ints], a: float, b: float) -> float:
    """Mean NLL of the true labels when each task's temperature is ``a + b * ln(its labels)`` (inf when some
    task's temperature is at or under 0.005)."""
    temps = [a + b * math.log(max(z.shape[1], 2)) for z in logits]
    if min(temps) <= 0.005:
        return math.inf
    total, n = 0.0, 0
    for z, y, t in zip(logits, truths, temps, strict=True):
        p = softmax(z / t)[np.arange(len(y)), y]
        total += float(-np.log(np.maximum(p, 1e-12)).sum())
        n += len(y)
    return total / max(n, 1)


def fit_log_temperature(
    logits: Sequence[Floats],
    truths: Sequence[Ints],
    a_range: tuple[float, float],
    b_range: tuple[float, float],
) -> tuple[float, float]:
    """The NLL-best ``(a, b)`` of ``T = a + b * ln(labels)``, every task weighted by its rows: a 21 x 21 grid
    over the ranges, then four rounds of a 5 x 5 grid around the best point, each a quarter of the last step
    (the NLL is smooth in both, so this finds the grid optimum of a fine grid at a fraction of the cost)."""
    steps = 20
    da, db = (a_range[1] - a_range[0]) / steps, (b_range[1] - b_range[0]) / steps
    grid = [(a_range[0] + i * da, b_range[0] + j * db) for i in range(steps + 1) for j in range(steps + 1)]
    best = min(grid, key=lambda ab: log_temperature_nll(logits, truths, *ab))
    for _ in range(4):
        da, db = da / 4, db / 4
        grid = [(best[0] + i * da, best[1] + j * db) for i in range(-2, 3) for j in range(-2, 3)]
        best = min(grid, key=lambda ab: log_temperature_nll(logits, truths, *ab))
    return round(best[0], 4), round(best[1], 4)


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


def expected_calibration_error(confidences: Floats, correct: npt.NDArray[np.bool_], bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins (15, as is usual
    since Guo et al., 2017)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (confidences > lo) & (confidences <= hi)
        if mask.any():
            total += mask.mean() * abs(float(confidences[mask].mean()) - float(correct[mask].mean()))
    return total
