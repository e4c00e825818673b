from __future__ import annotations

import pytest

from tollgate.routing.health import HealthBoard
from tollgate.settings import RoutingConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def board(**config: float) -> tuple[HealthBoard, Clock]:
    clock = Clock()
    return HealthBoard(RoutingConfig.model_validate(config), clock), clock


def fail(b: HealthBoard, key: str, n: int = 1) -> None:
    for _ in range(n):
        b.started(key)
        b.failed(key)


def test_breaker_opens_after_consecutive_failures_and_probes_back_after_cooldown() -> None:
    b, clock = board(breaker_failures=3, breaker_cooldown=10)
    fail(b, "d", 2)
    assert b.state("d") == "closed" and b.available("d")
    fail(b, "d")
    assert b.state("d") == "open" and not b.available("d")
    clock.now += 10
    assert b.state("d") == "half_open" and b.available("d")
    b.started("d")  # the probe
    assert not b.available("d"), "half-open lets one probe through at a time"
    b.succeeded("d", 50)
    assert b.state("d") == "closed" and b.get("d").consecutive_failures == 0


def test_failed_probe_reopens_the_breaker() -> None:
    b, clock = board(breaker_failures=1, breaker_cooldown=5)
    fail(b, "d")
    clock.now += 5
    fail(b, "d")
    assert b.state("d") == "open"
    clock.now += 4.9
    assert b.state("d") == "open"


def test_breaker_opens_on_error_rate_over_threshold() -> None:
    b, _ = board(breaker_failures=100, breaker_min_samples=10, breaker_error_rate=0.5, health_alpha=0.2)
    for _ in range(10):
        b.started("d")
        b.succeeded("d", 10)
        fail(b, "d")
        if b.state("d") == "open":
            break
    assert b.state("d") == "open"
    assert b.get("d").error_rate >= 0.5


def test_latency_and_throughput_are_moving_averages() -> None:
    b, _ = board(health_alpha=0.5)
    b.started("d")
    b.succeeded("d", 100, tokens=50, duration_s=1.0)
    b.started("d")
    b.succeeded("d", 200, tokens=150, duration_s=1.0)
    h = b.get("d")
    assert h.latency_ms == pytest.approx(150)
    assert h.throughput == pytest.approx(100)
    assert h.error_rate == 0 and h.in_flight == 0


def test_in_flight_counts_started_attempts_until_they_end() -> None:
    b, _ = board()
    b.started("d")
    b.started("d")
    assert b.get("d").in_flight == 2
    b.released("d")
    b.failed("d")
    assert b.get("d").in_flight == 0
