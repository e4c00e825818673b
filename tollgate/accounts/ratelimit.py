"""Per-key rate limits: requests per minute, tokens per minute and requests in flight.

A key's limits come from its tier (``server.tiers``; the key's own tier, else ``server.default_tier``) with
per-key overrides on top; with no tier at all a key is unlimited, so a self-hosted install never throttles
its owner by surprise. Minutes are fixed windows aligned to the Unix minute (``X-RateLimit-Reset`` is the
window's end). Tokens are counted when the request is admitted from an estimate (prompt + the most it may
produce) and corrected to the actual usage when it settles; the concurrency slot is released then too.

Two implementations behind one interface: ``LocalRateLimiter`` (one process; atomic because it runs on the
event loop) and ``RedisRateLimiter`` (several replicas; one Lua script checks and counts atomically).
Unlimited keys never touch either.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from tollgate.accounts.keys import Principal
from tollgate.errors import RateLimitError, TollgateError
from tollgate.settings import TierConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("tollgate.ratelimit")

WINDOW = 60


@dataclass(frozen=True, slots=True)
class Limits:
    """``None`` means unlimited in that dimension."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    tier: str | None = None

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.concurrency is None


UNLIMITED = Limits()


def limits_for(principal: Principal, tiers: Mapping[str, TierConfig], default_tier: str | None) -> Limits:
    """The key's tier (or the server default) with the key's own overrides on top."""
    name = principal.tier if principal.tier in tiers else default_tier
    tier = tiers.get(name) if name else None
    return Limits(
        rpm=principal.rpm if principal.rpm is not None else (tier.rpm if tier else None),
        tpm=principal.tpm if principal.tpm is not None else (tier.tpm if tier else None),
        concurrency=principal.concurrency
        if principal.concurrency is not None
        else (tier.concurrency if tier else None),
        tier=name if tier else None,
    )


@dataclass(slots=True)
class Grant:
    """An admitted request: what it counted, and the state of the window right after."""

    key_id: str
    limits: Limits
    window: int
    tokens: int
    requests_used: int = 0
    tokens_used: int = 0
    holds_slot: bool = False
    open: bool = True

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` for each limited dimension (none for an unlimited key)."""
        return window_headers(self.limits, self.window, self.requests_used, self.tokens_used)


def reset_duration(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` duration: ``"20ms"``, ``"12.5s"``, ``"1m0s"``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def window_headers(
    limits: Limits, window: int, requests_used: int, tokens_used: int, now: float | None = None
) -> dict[str, str]:
    """``X-RateLimit-Reset`` is the window's end (Unix time); ``-Reset-Requests`` / ``-Reset-Tokens`` the time
    until then as OpenAI writes it (the same for both: one window counts both)."""
    out: dict[str, str] = {}
    left = reset_duration(window + WINDOW - (time.time() if now is None else now))
    if limits.rpm is not None:
        out["X-RateLimit-Limit-Requests"] = str(limits.rpm)
        out["X-RateLimit-Remaining-Requests"] = str(max(0, limits.rpm - requests_used))
        out["X-RateLimit-Reset-Requests"] = left
    if limits.tpm is not None:
        out["X-RateLimit-Limit-Tokens"] = str(limits.tpm)
        out["X-RateLimit-Remaining-Tokens"] = str(max(0, limits.tpm - tokens_used))
        out["X-RateLimit-Reset-Tokens"] = left
    if out or limits.concurrency is not None:
        out["X-RateLimit-Reset"] = str(window + WINDOW)
    return out


def current_window(now: float | None = None) -> int:
    t = time.time() if now is None else now
    return int(t) - int(t) % WINDOW


def refuse(
    dimension: str, limits: Limits, window: int, requests_used: int, tokens_used: int, now: float
) -> RateLimitError:
    tier = f" (tier {limits.tier})" if limits.tier else ""
    if dimension == "concurrency":
        retry = 1
        what = f"{limits.concurrency} concurrent requests"
    else:
        retry = max(1, math.ceil(window + WINDOW - now))
        what = (
            f"{limits.rpm} requests per minute" if dimension == "rpm" else f"{limits.tpm} tokens per minute"
        )
    headers = window_headers(limits, window, requests_used, tokens_used, now)
    headers["Retry-After"] = str(retry)
    return RateLimitError(
        f"Rate limit exceeded: this key allows {what}{tier}. Retry after {retry} s.",
        details={"limit": dimension, "retry_after": retry},
        headers=headers,
    )


def shared_state_unavailable(exc: Exception) -> TollgateError:
    """Redis (rate limits, balances) failed: the request is refused with a 503, and still settled."""
    err = TollgateError(
        f"The gateway's shared state (Redis) is unavailable ({type(exc).__name__}); retry shortly.",
        code="SHARED_STATE_UNAVAILABLE",
        headers={"Retry-After": "1"},
    )
    err.status = 503  # type: ignore[misc]
    return err


class RateLimiter(Protocol):
    async def acquire(self, key_id: str, limits: Limits, tokens: int) -> Grant:
        """Count one request of ``tokens`` estimated tokens, or raise ``RateLimitError`` (429)."""
        ...

    def settle(self, grant: Grant, tokens: int | None) -> None:
        """Correct the token count to the actual ``tokens`` (``None``: keep the estimate) and release the
        concurrency slot. Idempotent; never waits."""
        ...

    async def peek(self, key_id: str, limits: Limits) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers of the current window, counting nothing (for cache hits)."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Window:
    window: int = 0
    requests: int = 0
    tokens: int = 0
    inflight: int = 0


class LocalRateLimiter:
    """One process: counters in a dict, atomic under the event loop."""

    def __init__(self) -> None:
        self._keys: dict[str, _Window] = {}

    async def acquire(self, key_id: str, limits: Limits, tokens: int) -> Grant:
        now = time.time()
        window = current_window(now)
        if limits.unlimited:
            return Grant(key_id, limits, window, tokens)
        w = self._keys.get(key_id)
        if w is None:
            w = self._keys[key_id] = _Window(window)
        if w.window != window:
            w.window, w.requests, w.tokens = window, 0, 0
        if limits.rpm is not None and w.requests + 1 > limits.rpm:
            raise refuse("rpm", limits, window, w.requests, w.tokens, now)
        if limits.tpm is not None and w.tokens + tokens > limits.tpm:
            raise refuse("tpm", limits, window, w.requests, w.tokens, now)
        if limits.concurrency is not None and w.inflight + 1 > limits.concurrency:
            raise refuse("concurrency", limits, window, w.requests, w.tokens, now)
        w.requests += 1
        w.tokens += tokens
        holds = limits.concurrency is not None
        if holds:
            w.inflight += 1
        return Grant(key_id, limits, window, tokens, w.requests, w.tokens, holds)

    def settle(self, grant: Grant, tokens: int | None) -> None:
        if not grant.open:
            return
        grant.open = False
        w = self._keys.get(grant.key_id)
        if w is None:
            return
        if tokens is not None and w.window == grant.window:
            w.tokens = max(0, w.tokens + tokens - grant.tokens)
        if grant.holds_slot:
            w.inflight = max(0, w.inflight - 1)

    async def peek(self, key_id: str, limits: Limits) -> dict[str, str]:
        window = current_window()
        w = self._keys.get(key_id)
        if w is None or w.window != window:
            return window_headers(limits, window, 0, 0)
        return window_headers(limits, window, w.requests, w.tokens)

    async def close(self) -> None:
        """Nothing to release: settles happen in place."""


# KEYS: requests, tokens, inflight. ARGV: rpm, tpm, concurrency (0 = unlimited), tokens, slot ttl.
# Returns {refused dimension (0 = admitted), requests, tokens}.
_ACQUIRE = """
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
if rpm > 0 and r + 1 > rpm then return {1, r, t} end
if tpm > 0 and t + tokens > tpm then return {2, r, t} end
if conc > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') + 1 > conc then return {3, r, t} end
r = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
t = redis.call('INCRBY', KEYS[2], tokens)
redis.call('EXPIRE', KEYS[2], 120)
if conc > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
end
return {0, r, t}
"""

# KEYS: tokens, inflight. ARGV: token correction, release slot (0/1).
_SETTLE = """
local delta = tonumber(ARGV[1])
if delta ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  if tonumber(redis.call('INCRBY', KEYS[1], delta)) < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
end
if ARGV[2] == '1' and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 1
"""

_DIMENSIONS = {1: "rpm", 2: "tpm", 3: "concurrency"}


class RedisRateLimiter:
    """Several replicas: the counters live in Redis and one Lua script checks and counts atomically.

    A slot held by a replica that died is freed when its key expires (``slot_ttl`` after the last
    admission for that key)."""

    def __init__(self, redis: Redis, prefix: str, slot_ttl: int = 600) -> None:
        self._redis = redis
        self._prefix = prefix + "rl:"
        self._slot_ttl = slot_ttl
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)
        self._tasks: set[asyncio.Task[Any]] = set()

    def _keys(self, key_id: str, window: int) -> tuple[str, str, str]:
        base = f"{self._prefix}{{{key_id}}}"
        return f"{base}:r:{window}", f"{base}:t:{window}", f"{base}:c"

    async def acquire(self, key_id: str, limits: Limits, tokens: int) -> Grant:
        now = time.time()
        window = current_window(now)
        if limits.unlimited:
            return Grant(key_id, limits, window, tokens)
        try:
            result = await self._acquire(
                keys=list(self._keys(key_id, window)),
                args=[limits.rpm or 0, limits.tpm or 0, limits.concurrency or 0, tokens, self._slot_ttl],
            )
        except RedisError as exc:
            raise shared_state_unavailable(exc) from exc
        refused, requests, used = (int(x) for x in result)
        if refused:
            raise refuse(_DIMENSIONS[refused], limits, window, requests, used, now)
        return Grant(key_id, limits, window, tokens, requests, used, limits.concurrency is not None)

    def settle(self, grant: Grant, tokens: int | None) -> None:
        if not grant.open:
            return
        grant.open = False
        delta = 0 if tokens is None else tokens - grant.tokens
        if grant.limits.unlimited or (delta == 0 and not grant.holds_slot):
            return
        _, tok_key, slot_key = self._keys(grant.key_id, grant.window)
        task = asyncio.get_running_loop().create_task(
            self._settle(keys=[tok_key, slot_key], args=[delta, 1 if grant.holds_slot else 0])
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rate-limit settle failed", exc_info=task.exception())

    async def peek(self, key_id: str, limits: Limits) -> dict[str, str]:
        """Headers for the current window; without Redis, none (a cache hit must not fail)."""
        window = current_window()
        if limits.unlimited:
            return {}
        req_key, tok_key, _ = self._keys(key_id, window)
        try:
            requests, tokens = await self._redis.mget([req_key, tok_key])
        except RedisError:
            log.warning("rate-limit state unavailable for a cache hit's headers", exc_info=True)
            return {}
        return window_headers(limits, window, int(requests or 0), int(tokens or 0))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
