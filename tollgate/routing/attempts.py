"""The retry policy: which target to try next, and how long to wait first.

The plan (deployments of the requested model, then those of each fallback in ``models``) is walked once
without waiting: moving to another deployment needs no backoff. Then, ``retry_rounds`` times, the targets
that failed with a retryable error (429, 5xx, connection error, timeout) are tried again, each after a
jittered exponential backoff (full jitter: ``uniform(0, min(backoff_max, backoff_base * 2**n))``), or after
the upstream's ``Retry-After`` when that is longer. A ``Retry-After`` over ``retry_after_cap``, or a wait that
would end past the overall deadline, means that target is not retried. A non-retryable error (the upstream
rejected the request itself) ends the walk. At most ``max_attempts`` attempts are made in all.

Streams are only retried before their first byte reached the client; the service enforces that by
committing to a stream once it has its first frame.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate_to_datetime

from tollgate.errors import UpstreamError
from tollgate.routing.catalog import Target
from tollgate.routing.health import HealthBoard
from tollgate.settings import RoutingConfig


def retry_after_seconds(headers: dict[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class RetryPolicy:
    def __init__(self, config: RoutingConfig, rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self.rng = rng

    def backoff(self, retry: int) -> float:
        c = self.config
        return self.rng() * min(c.backoff_max, c.backoff_base * 2.0**retry)

    def delay(self, retry: int, err: UpstreamError, remaining: float) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based) after ``err``; None: do not retry."""
        if not err.retryable:
            return None
        wait = self.backoff(retry)
        asked = retry_after_seconds(err.headers)
        if asked is not None:
            if asked > self.config.retry_after_cap:
                return None
            wait = max(wait, asked)
        if wait >= remaining:
            return None
        return wait


class Attempts:
    """Walks a plan for one request. Iterate ``targets()``; report each failure with ``failed``."""

    def __init__(
        self,
        plan: list[Target],
        policy: RetryPolicy,
        health: HealthBoard,
        remaining: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.plan = plan
        self.policy = policy
        self.health = health
        self.remaining = remaining
        self.sleep = sleep
        self.errors: list[UpstreamError] = []
        self._last: dict[str, UpstreamError] = {}
        self._stopped = False
        self._round = self._index = 0

    @property
    def count(self) -> int:
        """Attempts made so far, including the one in progress."""
        return len(self.errors) + 1

    def targets(self) -> AsyncIterator[Target]:
        """The targets to try, in order: the plan, then up to ``retry_rounds`` more rounds over the targets
        that failed with a retryable error and are still available, each after its backoff.

        The walk is this object's own ``__anext__``, not an async generator: a generator left suspended
        when the caller returns after a success is finalised through the event loop's thread-safe wake-up
        (a task and two system calls on every request, measured with strace)."""
        self._round, self._index = 0, 0
        return self

    def __aiter__(self) -> AsyncIterator[Target]:
        return self

    async def __anext__(self) -> Target:
        config = self.policy.config
        while self._round <= config.retry_rounds:
            while self._index < len(self.plan):
                target = self.plan[self._index]
                self._index += 1
                if self._stopped or len(self.errors) >= config.max_attempts:
                    raise StopAsyncIteration
                if self._round > 0:
                    last = self._last.get(target.key)
                    if last is None or not self.health.available(target.key):
                        continue
                    wait = self.policy.delay(self._round - 1, last, self.remaining())
                    if wait is None:
                        continue
                    await self.sleep(wait)
                self.health.started(target.key)
                return target
            self._round, self._index = self._round + 1, 0
        raise StopAsyncIteration

    def failed(self, target: Target, err: UpstreamError) -> None:
        self.errors.append(err)
        self._last[target.key] = err
        if err.retryable:
            self.health.failed(target.key)
        else:
            self.health.released(target.key)
            self._stopped = True
