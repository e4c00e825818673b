"""Live health of each deployment: error rate, latency, throughput, in-flight count and a circuit breaker.

Figures are exponentially weighted moving averages (``alpha`` = weight of the newest sample). The breaker::

    closed ──(N consecutive failures, or error rate over the threshold after enough samples)──> open
    open ──(cooldown elapsed)──> half-open: one probe request is let through
    half-open ──success──> closed          half-open ──failure──> open (cooldown again)

Only failures that say something about the deployment count (429, 5xx, connection errors, timeouts); a
request the upstream rejected as invalid does not. The clock is injected so tests control time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tollgate.settings import RoutingConfig

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class DeploymentHealth:
    samples: int = 0
    error_rate: float = 0.0
    latency_ms: float | None = None
    throughput: float | None = None  # completion tokens per second
    consecutive_failures: int = 0
    in_flight: int = 0
    opened_at: float | None = None
    probing: bool = False


class HealthBoard:
    def __init__(
        self, config: RoutingConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or RoutingConfig()
        self.clock = clock
        self._by_key: dict[str, DeploymentHealth] = {}

    def get(self, key: str) -> DeploymentHealth:
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = DeploymentHealth()
        return found

    def state(self, key: str) -> State:
        h = self.get(key)
        if h.opened_at is None:
            return "closed"
        if self.clock() - h.opened_at >= self.config.breaker_cooldown:
            return "half_open"
        return "open"

    def available(self, key: str) -> bool:
        """Whether the breaker lets a request through now (half-open admits one probe at a time)."""
        state = self.state(key)
        return state == "closed" or (state == "half_open" and not self.get(key).probing)

    def started(self, key: str) -> None:
        h = self.get(key)
        h.in_flight += 1
        if self.state(key) == "half_open":
            h.probing = True

    def _sample(self, h: DeploymentHealth, error: float) -> None:
        a = self.config.health_alpha
        h.samples += 1
        h.error_rate = error if h.samples == 1 else (1 - a) * h.error_rate + a * error
        h.in_flight = max(0, h.in_flight - 1)
        h.probing = False

    def succeeded(self, key: str, latency_ms: float, tokens: int = 0, duration_s: float = 0.0) -> None:
        """``latency_ms``: time to the first byte (streams) or to the whole answer (JSON)."""
        h = self.get(key)
        self._sample(h, 0.0)
        a = self.config.health_alpha
        h.latency_ms = latency_ms if h.latency_ms is None else (1 - a) * h.latency_ms + a * latency_ms
        if tokens > 0 and duration_s > 0:
            tps = tokens / duration_s
            h.throughput = tps if h.throughput is None else (1 - a) * h.throughput + a * tps
        h.consecutive_failures = 0
        h.opened_at = None

    def failed(self, key: str) -> None:
        h = self.get(key)
        half_open = self.state(key) == "half_open"
        self._sample(h, 1.0)
        h.consecutive_failures += 1
        c = self.config
        if (
            half_open
            or h.consecutive_failures >= c.breaker_failures
            or (h.samples >= c.breaker_min_samples and h.error_rate >= c.breaker_error_rate)
        ):
            h.opened_at = self.clock()

    def released(self, key: str) -> None:
        """The attempt ended without saying anything about the deployment (client gone, request rejected)."""
        h = self.get(key)
        h.in_flight = max(0, h.in_flight - 1)
        h.probing = False
