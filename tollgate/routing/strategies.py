"""In what order a model's eligible deployments are tried (pure; randomness and health are passed in).

1. Load balancing, per model (``routing:`` in the model config): ``ordered`` keeps declaration order,
   ``weighted`` draws a weighted random order (Efraimidis–Spirakis: key ``u ** (1 / weight)``), and
   ``least_busy`` puts the deployment with the fewest requests in flight first.
2. ``sort`` re-orders stably: ``price`` by effective prompt + completion price, ``latency`` by the live
   average latency (else the configured hint; unknown last), ``throughput`` by live tokens/s, highest first.
3. ``order`` puts the named providers first, in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

from tollgate.routing.catalog import Target
from tollgate.routing.health import HealthBoard
from tollgate.routing.preferences import Preferences


def balanced(
    candidates: list[Target], mode: str, health: HealthBoard, rng: Callable[[], float]
) -> list[Target]:
    if mode == "weighted" and len(candidates) > 1:
        keys = {id(t): rng() ** (1 / t.deployment.weight) for t in candidates}
        return sorted(candidates, key=lambda t: keys[id(t)], reverse=True)
    if mode == "least_busy":
        return sorted(candidates, key=lambda t: health.get(t.key).in_flight)
    return list(candidates)


def price_key(t: Target) -> Decimal:
    return t.pricing.prompt + t.pricing.completion


def latency_key(t: Target, health: HealthBoard) -> float:
    live = health.get(t.key).latency_ms
    if live is not None:
        return live
    return t.deployment.latency_ms if t.deployment.latency_ms is not None else math.inf


def throughput_key(t: Target, health: HealthBoard) -> float:
    live = health.get(t.key).throughput
    if live is not None:
        return -live
    return -(t.deployment.throughput or 0.0)


def ordered(
    candidates: list[Target], prefs: Preferences, health: HealthBoard, rng: Callable[[], float]
) -> list[Target]:
    """One model's candidates in the order they are tried."""
    if not candidates:
        return []
    out = balanced(candidates, candidates[0].model.routing, health, rng)
    match prefs.sort:
        case "price":
            out.sort(key=price_key)
        case "latency":
            out.sort(key=lambda t: latency_key(t, health))
        case "throughput":
            out.sort(key=lambda t: throughput_key(t, health))
        case None:
            pass
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}
        out.sort(key=lambda t: rank.get(t.provider.name.lower(), len(rank)))
    return out
