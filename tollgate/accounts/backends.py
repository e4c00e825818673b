"""Where shared account state lives, chosen once at start-up: in-process by default, Redis when
``redis_url`` is configured (so balances, rate limits and the response cache hold across replicas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollgate.accounts.allowance import FreeAllowance, LocalAllowance, RedisAllowance
from tollgate.accounts.balances import BalanceLedger
from tollgate.accounts.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from tollgate.accounts.redis_balances import RedisBalanceLedger
from tollgate.settings import Settings
from tollgate.storage.base import Storage

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(slots=True)
class AccountState:
    ledger: BalanceLedger
    limiter: RateLimiter
    redis: Redis | None = None
    allowance: FreeAllowance | None = None  # None: no monthly free tokens

    async def close(self) -> None:
        """After the usage writer stopped: let settles reach Redis, then disconnect."""
        await self.limiter.close()
        if isinstance(self.ledger, RedisBalanceLedger):
            await self.ledger.drain()
        if self.redis is not None:
            await self.redis.aclose()


def open_redis(url: str, max_connections: int = 64, timeout: float = 2.0) -> Redis:
    """A client whose pool waits for a free connection under load (the default pool raises instead), at
    most ``timeout`` seconds, which is also every call's socket timeout: a stalled Redis is an error
    (503 to the client), not a request held forever."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return Redis.from_pool(pool)


def open_account_state(settings: Settings, storage: Storage) -> AccountState:
    server = settings.server
    free = server.free_tokens_per_month
    if not settings.redis_url:
        allowance = LocalAllowance(storage, free) if free else None
        return AccountState(BalanceLedger(storage, server.grace_buffer), LocalRateLimiter(), None, allowance)
    redis = open_redis(settings.redis_url, timeout=server.redis_timeout)
    ledger = RedisBalanceLedger(
        storage,
        server.grace_buffer,
        redis,
        server.redis_prefix,
        hold=server.upstream_timeout + server.reservation_margin,
        retry_window=server.reservation_margin / 2,
        reconcile_interval=server.reconcile_interval,
    )
    slot_ttl = int(server.upstream_timeout) + 60
    shared = RedisAllowance(storage, free, redis, server.redis_prefix) if free else None
    return AccountState(ledger, RedisRateLimiter(redis, server.redis_prefix, slot_ttl), redis, shared)
