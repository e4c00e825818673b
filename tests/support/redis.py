"""The real Redis on this machine, for tests: a unique key prefix per test, deleted afterwards.

When Redis is unreachable the tests that need it fail rather than skip: CI starts it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tollgate.accounts.backends import open_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def new_prefix() -> str:
    return f"tollgate_test_{secrets.token_hex(6)}:"


async def delete_prefix(redis: Redis, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await redis.delete(*keys)


async def connect() -> Redis:
    redis = open_redis(REDIS_URL)
    try:
        await redis.ping()
    except (RedisConnectionError, OSError) as exc:
        await redis.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc!r}); CI starts it")
    return redis


async def redis_with_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """Body of an async fixture: a connected client and a fresh prefix, cleaned up afterwards."""
    redis = await connect()
    prefix = new_prefix()
    try:
        yield redis, prefix
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
