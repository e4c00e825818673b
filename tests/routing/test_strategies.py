from __future__ import annotations

import random
from collections import Counter

from tests.routing.builders import catalog, dep, model
from tollgate.routing.health import HealthBoard
from tollgate.routing.preferences import Preferences
from tollgate.routing.strategies import balanced, ordered

CAT = catalog(
    model(
        "m",
        dep("a", pricing={"prompt": "0.000003", "completion": "0.000003"}, latency_ms=300),
        dep("b", pricing={"prompt": "0.000001", "completion": "0.000001"}, throughput=50),
        dep("c", latency_ms=100, throughput=10),  # the model's price: 0.000002 + 0.000002
        pricing={"prompt": "0.000002", "completion": "0.000002"},
    ),
    model("w", dep("heavy", weight=3), dep("light", weight=1), routing="weighted"),
    model("busy", dep("x"), dep("y"), dep("z"), routing="least_busy"),
)


def names(prefs: Preferences, model_id: str = "m", health: HealthBoard | None = None) -> list[str]:
    out = ordered(CAT.targets(model_id), prefs, health or HealthBoard(), random.Random(1).random)
    return [t.provider.name for t in out]


def test_declaration_order_by_default() -> None:
    assert names(Preferences()) == ["a", "b", "c"]


def test_sort_by_price_uses_effective_prompt_plus_completion_price() -> None:
    assert names(Preferences(sort="price")) == ["b", "c", "a"]


def test_sort_by_latency_prefers_live_figures_over_hints() -> None:
    assert names(Preferences(sort="latency")) == ["c", "a", "b"]  # hints; b unknown goes last
    health = HealthBoard()
    health.succeeded(CAT.targets("m")[1].key, 20)
    assert names(Preferences(sort="latency"), health=health) == ["b", "c", "a"]


def test_sort_by_throughput_highest_first() -> None:
    assert names(Preferences(sort="throughput")) == ["b", "c", "a"]
    health = HealthBoard()
    health.succeeded(CAT.targets("m")[0].key, 20, tokens=1000, duration_s=1)
    assert names(Preferences(sort="throughput"), health=health) == ["a", "b", "c"]


def test_order_puts_named_providers_first_then_the_rest() -> None:
    assert names(Preferences(order=["c", "b"])) == ["c", "b", "a"]
    assert names(Preferences(order=["c"], sort="price")) == ["c", "b", "a"]


def test_weighted_balancing_follows_the_weights() -> None:
    rng = random.Random(7).random
    firsts = Counter(
        balanced(CAT.targets("w"), "weighted", HealthBoard(), rng)[0].provider.name for _ in range(4000)
    )
    share = firsts["heavy"] / 4000
    assert 0.70 < share < 0.80  # weight 3 of 4


def test_least_busy_puts_the_idlest_deployment_first() -> None:
    health = HealthBoard()
    x, y, _ = CAT.targets("busy")
    health.started(x.key)
    health.started(x.key)
    health.started(y.key)
    assert names(Preferences(), "busy", health) == ["z", "y", "x"]
