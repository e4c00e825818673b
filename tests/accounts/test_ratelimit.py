"""tollgate/accounts/ratelimit.py: tiers and overrides, and both limiters (in-process and the real Redis)
held to the same behaviour; then the limits through the gateway with the openai SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.memory_storage import MemoryStorage
from tests.support.redis import redis_with_prefix
from tollgate.accounts.backends import open_redis
from tollgate.accounts.keys import Principal
from tollgate.accounts.ratelimit import (
    WINDOW,
    Limits,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    limits_for,
    reset_duration,
)
from tollgate.accounts.redis_balances import RedisBalanceLedger
from tollgate.errors import RateLimitError, TollgateError
from tollgate.settings import ServerConfig, default_tiers
from tollgate.simulator import SimServer

TIERS = default_tiers()


def principal(**kw: object) -> Principal:
    return Principal("key_1", "acct_1", "k", **kw)  # type: ignore[arg-type]


# tiers ----------------------------------------------------------------------------------------------------


def test_without_a_tier_anywhere_a_key_is_unlimited() -> None:
    assert limits_for(principal(), TIERS, None).unlimited


def test_a_key_gets_the_configured_default_tier() -> None:
    assert limits_for(principal(), TIERS, "public") == Limits(30, 150_000, 2, "public")


def test_the_key_tier_wins_over_the_default() -> None:
    assert limits_for(principal(tier="production"), TIERS, "public") == Limits(
        1000, 10_000_000, 50, "production"
    )


def test_per_key_overrides_apply_on_top_of_the_tier() -> None:
    got = limits_for(principal(tier="developer", rpm=5, concurrency=1), TIERS, None)
    assert got == Limits(5, 500_000, 1, "developer")


def test_overrides_alone_limit_a_key_without_tier() -> None:
    assert limits_for(principal(tpm=1000), TIERS, None) == Limits(None, 1000, None, None)


def test_enterprise_is_unlimited_unless_configured() -> None:
    assert limits_for(principal(tier="enterprise"), TIERS, None).unlimited


def test_configured_tiers_extend_and_override_the_builtin_ones() -> None:
    server = ServerConfig.model_validate(
        {"default_tier": "tiny", "tiers": {"tiny": {"rpm": 1}, "public": {"rpm": 3, "cache_ttl": 10}}}
    )
    assert server.tiers["tiny"].rpm == 1
    assert server.tiers["public"].rpm == 3 and server.tiers["public"].tpm is None
    assert server.tiers["developer"].rpm == 60


def test_an_undeclared_default_tier_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="default_tier"):
        ServerConfig.model_validate({"default_tier": "gold"})


# limiters (same behaviour in process and in Redis) ---------------------------------------------------------


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "local":
        local = LocalRateLimiter()
        yield local
        await local.close()
        return
    async for redis, prefix in redis_with_prefix():
        shared = RedisRateLimiter(redis, prefix)
        yield shared
        await shared.close()


async def settled(limiter: RateLimiter) -> None:
    await limiter.close()  # the Redis limiter settles in the background; close() waits for it


async def test_requests_per_minute_refuse_the_next_request_with_retry_after(limiter: RateLimiter) -> None:
    limits = Limits(rpm=2)
    first = await limiter.acquire("k", limits, 10)
    second = await limiter.acquire("k", limits, 10)
    assert first.headers()["X-RateLimit-Remaining-Requests"] == "1"
    assert second.headers()["X-RateLimit-Remaining-Requests"] == "0"
    with pytest.raises(RateLimitError) as info:
        await limiter.acquire("k", limits, 10)
    err = info.value
    assert err.status == 429 and err.code == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(err.headers["Retry-After"]) <= WINDOW
    assert err.headers["X-RateLimit-Limit-Requests"] == "2"
    assert int(err.headers["X-RateLimit-Reset"]) > time.time()


async def test_tokens_per_minute_count_the_estimate_and_correct_to_actual(limiter: RateLimiter) -> None:
    limits = Limits(tpm=1000)
    grant = await limiter.acquire("k", limits, 900)
    assert grant.headers()["X-RateLimit-Remaining-Tokens"] == "100"
    with pytest.raises(RateLimitError, match="1000 tokens per minute"):
        await limiter.acquire("k", limits, 200)
    limiter.settle(grant, 50)  # the request used far fewer tokens than estimated
    await settled(limiter)
    again = await limiter.acquire("k", limits, 200)
    assert again.headers()["X-RateLimit-Remaining-Tokens"] == "750"


async def test_concurrency_slot_is_released_when_the_request_settles(limiter: RateLimiter) -> None:
    limits = Limits(concurrency=1)
    grant = await limiter.acquire("k", limits, 1)
    with pytest.raises(RateLimitError) as info:
        await limiter.acquire("k", limits, 1)
    assert info.value.headers["Retry-After"] == "1"
    limiter.settle(grant, None)
    limiter.settle(grant, None)  # idempotent: the slot is released once
    await settled(limiter)
    await limiter.acquire("k", limits, 1)
    with pytest.raises(RateLimitError):
        await limiter.acquire("k", limits, 1)


async def test_keys_are_limited_independently(limiter: RateLimiter) -> None:
    await limiter.acquire("a", Limits(rpm=1), 1)
    await limiter.acquire("b", Limits(rpm=1), 1)
    with pytest.raises(RateLimitError):
        await limiter.acquire("a", Limits(rpm=1), 1)


async def test_unlimited_keys_are_never_counted_or_refused(limiter: RateLimiter) -> None:
    for _ in range(100):
        grant = await limiter.acquire("k", Limits(), 10**9)
        assert grant.headers() == {}
        limiter.settle(grant, 5)


async def test_concurrent_admissions_never_exceed_the_limit(limiter: RateLimiter) -> None:
    limits = Limits(rpm=25, concurrency=100)

    async def one() -> bool:
        try:
            await limiter.acquire("k", limits, 1)
        except RateLimitError:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(60)))
    assert sum(results) == 25


# through the gateway ----------------------------------------------------------------------------------------


@pytest.fixture
def limited_gateway(tmp_path: Path, sim: SimServer) -> AsyncIterator[Gateway]:
    with Gateway(tmp_path, sim.base_url, tiers={"tight": {"rpm": 3, "tpm": 100_000, "concurrency": 1}}) as gw:
        yield gw


def test_chat_responses_carry_rate_limit_headers(limited_gateway: Gateway) -> None:
    key = limited_gateway.create_key(tier="tight")
    raw = limited_gateway.client(key).chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": "hi"}], max_tokens=10
    )
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "2"
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert 0 < int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert int(h["x-ratelimit-reset"]) % WINDOW == 0


def test_over_the_limit_is_429_rate_limit_exceeded_with_retry_after(limited_gateway: Gateway) -> None:
    key = limited_gateway.create_key(tier="tight", rpm=1)
    client = limited_gateway.client(key)
    client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "hi"}])
    err = info.value
    assert err.status_code == 429
    assert err.body is not None and err.body["code"] == "RATE_LIMIT_EXCEEDED"  # type: ignore[index]
    assert int(err.response.headers["retry-after"]) >= 1
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    rows = limited_gateway.usage_rows(expect=2)
    assert [r.status for r in rows] == [200, 429]
    assert rows[1].error_code == "RATE_LIMIT_EXCEEDED" and rows[1].cost == 0


def test_a_finished_stream_frees_its_concurrency_slot(limited_gateway: Gateway) -> None:
    key = limited_gateway.create_key(tier="tight")
    client = limited_gateway.client(key)
    for _ in range(2):  # concurrency 1: the second would be refused if the first still held its slot
        stream = client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert list(stream)
    limited_gateway.usage_rows(expect=2)


def test_keys_without_a_tier_are_unlimited_and_get_no_limit_headers(gateway: Gateway) -> None:
    key = gateway.create_key()
    raw = gateway.client(key).chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": "hi"}]
    )
    assert "x-ratelimit-limit-requests" not in raw.headers


async def test_an_unreachable_redis_refuses_with_503_not_a_crash() -> None:
    redis = open_redis("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    try:
        with pytest.raises(TollgateError) as info:
            await RedisRateLimiter(redis, "x:").acquire("k", Limits(rpm=1), 1)
        assert info.value.status == 503 and info.value.code == "SHARED_STATE_UNAVAILABLE"
        assert info.value.headers["Retry-After"] == "1"
        ledger = RedisBalanceLedger(MemoryStorage(), Decimal(0), redis, "x:")
        with pytest.raises(TollgateError, match="Redis"):
            await ledger.reserve("acct", Decimal(1))
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.02, "20ms"), (12.5, "12.5s"), (59.0, "59s"), (60.0, "1m0s"), (-1.0, "0ms")]
)
def test_reset_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert reset_duration(seconds) == text
