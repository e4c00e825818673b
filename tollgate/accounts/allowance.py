"""The monthly free allowance of tokens per account (``server.free_tokens_per_month``; 0: none).

Every token an account uses in a UTC calendar month is free until the month's total reaches the allowance;
the tokens past it are billed at normal prices. So the allowance used is ``min(allowance, tokens used this
month)``, and the only state is one counter per account and month: the tokens used so far.

- ``take`` counts a settled request's tokens and returns how many of them were free, atomically: the
  in-process allowance (one process) updates a dict on the event loop; the Redis one (several replicas)
  runs one ``INCRBY`` on ``{prefix}free:{account}:{YYYY-MM}``, which expires a day after the month ends.
- Restarts: a counter that does not exist yet (a new process, or a Redis that lost the key) starts from the
  usage table: the sum of the tokens of the account's rows created this month (cache hits record none).
  Rows still queued in the usage writer of a process that died are the only tokens it can miss.
- Without Redis, replicas each count on their own (the allowance is per process); configure ``redis_url``
  to share it.

``billable`` turns the free tokens into the usage that is priced: they cover uncached prompt tokens first,
then cached prompt tokens, then completion tokens. A per-request price (``pricing.request``) still applies.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from redis.exceptions import RedisError

from tollgate.accounts.ratelimit import shared_state_unavailable
from tollgate.providers.usage import Usage
from tollgate.storage.base import Storage

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("tollgate.allowance")

# KEYS: the month's counter. ARGV: tokens. Returns the new total, or -1 when the counter does not exist yet.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


def month_of(ts: float) -> tuple[str, float, float]:
    """The UTC month holding ``ts``: its label (``YYYY-MM``), start and end (Unix times)."""
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    start = dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=dt.UTC)
    return f"{d.year:04d}-{d.month:02d}", start.timestamp(), end.timestamp()


def free_part(allowance: int, used_before: int, tokens: int) -> int:
    """How many of ``tokens`` fall within the allowance when ``used_before`` were used this month."""
    return max(0, min(tokens, allowance - used_before))


def billable(usage: Usage, free: int) -> Usage:
    """The usage left to price once ``free`` tokens are taken off (uncached, cached, then completion)."""
    if free <= 0:
        return usage
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    uncached_off = min(free, usage.prompt_tokens - cached)
    free -= uncached_off
    cached_off = min(free, cached)
    free -= cached_off
    completion_off = min(free, usage.completion_tokens)
    return replace(
        usage,
        prompt_tokens=usage.prompt_tokens - uncached_off - cached_off,
        cached_tokens=cached - cached_off,
        completion_tokens=usage.completion_tokens - completion_off,
    )


async def used_in_month(storage: Storage, account_id: str, start: float, end: float) -> int:
    """Tokens of the account's rows created in ``[start, end)``, from the usage table."""
    totals = await storage.usage_totals(account_id, start, end, "model")
    return sum(t.prompt_tokens + t.completion_tokens for t in totals)


class FreeAllowance(Protocol):
    allowance: int

    async def take(self, account_id: str, when: float, tokens: int) -> int:
        """Count ``tokens`` used at ``when`` and return how many of them were free."""
        ...

    async def remaining(self, account_id: str, when: float) -> int:
        """The free tokens left in the month holding ``when``."""
        ...


class LocalAllowance:
    """One process: counters in a dict, atomic under the event loop (no await between read and update)."""

    def __init__(self, storage: Storage, allowance: int) -> None:
        self.allowance = allowance
        self._storage = storage
        self._used: dict[tuple[str, str], int] = {}

    async def _counter(self, account_id: str, when: float) -> tuple[str, str]:
        label, start, end = month_of(when)
        key = (account_id, label)
        if key not in self._used:
            base = await used_in_month(self._storage, account_id, start, end)
            if key not in self._used:  # another request of the account may have loaded it meanwhile
                previous = month_of(start - 1)[0]  # kept: requests still settling across the boundary
                for old in [k for k in self._used if k[1] < previous]:
                    del self._used[old]
                self._used[key] = base
        return key

    async def take(self, account_id: str, when: float, tokens: int) -> int:
        key = await self._counter(account_id, when)
        before = self._used[key]
        self._used[key] = before + tokens
        return free_part(self.allowance, before, tokens)

    async def remaining(self, account_id: str, when: float) -> int:
        key = await self._counter(account_id, when)
        return max(0, self.allowance - self._used[key])


class RedisAllowance:
    """Several replicas: one counter per account and month in Redis, counted with ``INCRBY``."""

    def __init__(self, storage: Storage, allowance: int, redis: Redis, prefix: str) -> None:
        self.allowance = allowance
        self._storage = storage
        self._redis = redis
        self._prefix = prefix + "free:"
        self._take = redis.register_script(_TAKE)

    async def _create(self, key: str, account_id: str, when: float) -> None:
        _, start, end = month_of(when)
        base = await used_in_month(self._storage, account_id, start, end)
        # Kept a day past the month's end, and never less than a day from now: a request of a month already
        # over (settled late, or a clock set back) must not write a key that expires at once.
        expires = max(int(end), int(time.time())) + 86_400
        await self._redis.set(key, base, nx=True, exat=expires)

    def _key(self, account_id: str, when: float) -> str:
        return f"{self._prefix}{account_id}:{month_of(when)[0]}"

    async def take(self, account_id: str, when: float, tokens: int) -> int:
        key = self._key(account_id, when)
        try:
            total = int(await self._take(keys=[key], args=[tokens]))
            if total == -1:
                await self._create(key, account_id, when)
                total = int(await self._take(keys=[key], args=[tokens]))
        except RedisError:
            log.exception("free allowance unavailable (Redis); billing %d tokens at normal prices", tokens)
            return 0
        return free_part(self.allowance, total - tokens, tokens)

    async def remaining(self, account_id: str, when: float) -> int:
        key = self._key(account_id, when)
        try:
            value = await self._redis.get(key)
            if value is None:
                await self._create(key, account_id, when)
                value = await self._redis.get(key)
        except RedisError as exc:
            raise shared_state_unavailable(exc) from exc
        return max(0, self.allowance - int(value or 0))
