"""Rank candidate models for one prompt (pure, deterministic).

The prompt vector picks the nearest cluster; each candidate's quality there (its estimated probability of
a correct answer, 0..1) is blended with its cheapness (1 for the cheapest candidate, 0 for the dearest,
linear in price between): ``score = (1 - cost_bias) * quality + cost_bias * cheapness``.
Ties go to the higher quality, then the lower price, then the model id, so the same input always gives the
same answer. A candidate the profile has no scores for (a model the operator added) gets a neutral prior:
the mean quality of the scored candidates in that cluster (0.5 when none is scored); the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tollgate.routing.auto.profile import Profile, Vectors


@dataclass(frozen=True, slots=True)
class Choice:
    model: str
    score: float
    quality: float
    price: Decimal
    prior: bool = False  # quality is the neutral prior: the profile does not score this model


@dataclass(frozen=True, slots=True)
class Selection:
    model: str
    cluster: int
    ranked: list[Choice]  # best first; ranked[0].model == model
    cost_bias: float

    @property
    def reason(self) -> str:
        best = self.ranked[0]
        prior = " (unscored: neutral prior)" if best.prior else ""
        return (
            f"cluster {self.cluster}: quality {best.quality:.2f}{prior}, price {best.price.normalize():f}, "
            f"score {best.score:.3f} at cost_bias {self.cost_bias:g}"
        )


def _spread(values: list[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return [1.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def select(profile: Profile, vector: Vectors, prices: dict[str, Decimal], cost_bias: float) -> Selection:
    """``prices``: candidate model -> price (prompt + completion per token). Raises ``ValueError`` for an
    empty candidate list."""
    if not 0 <= cost_bias <= 1:
        raise ValueError(f"cost_bias must be between 0 and 1; got {cost_bias!r}")
    if not prices:
        raise ValueError("no candidate models")
    cluster = profile.nearest(vector)
    models = sorted(prices)
    scored = [profile.scores[m][cluster] for m in models if m in profile.scores]
    prior = sum(scored) / len(scored) if scored else 0.5
    quality = [profile.scores[m][cluster] if m in profile.scores else prior for m in models]
    cheap = [1 - v for v in _spread([float(prices[m]) for m in models])]
    ranked = [
        Choice(m, (1 - cost_bias) * q + cost_bias * c, q, prices[m], m not in profile.scores)
        for m, q, c in zip(models, quality, cheap, strict=True)
    ]
    ranked.sort(key=lambda c: (-round(c.score, 12), -c.quality, c.price, c.model))
    return Selection(ranked[0].model, cluster, ranked, cost_bias)
