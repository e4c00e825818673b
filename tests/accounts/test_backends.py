"""tollgate/accounts/backends.py: in-process state by default, Redis when ``redis_url`` (or
``TOLLGATE_REDIS_URL``) is configured."""

from __future__ import annotations

from tests.support.memory_storage import MemoryStorage
from tests.support.redis import REDIS_URL
from tollgate.accounts.backends import open_account_state
from tollgate.accounts.balances import BalanceLedger
from tollgate.accounts.ratelimit import LocalRateLimiter, RedisRateLimiter
from tollgate.accounts.redis_balances import RedisBalanceLedger
from tollgate.settings import Settings, parse_config


def settings(text: str, environ: dict[str, str]) -> Settings:
    return Settings(parse_config(text, "<test>", environ), source="<test>", environ=environ)


async def test_without_redis_everything_stays_in_process() -> None:
    state = open_account_state(settings("server: {}", {}), MemoryStorage())
    assert type(state.ledger) is BalanceLedger and isinstance(state.limiter, LocalRateLimiter)
    assert state.redis is None
    await state.close()


async def test_redis_url_in_the_config_shares_balances_and_limits() -> None:
    state = open_account_state(settings(f"redis_url: {REDIS_URL}", {}), MemoryStorage())
    assert isinstance(state.ledger, RedisBalanceLedger) and isinstance(state.limiter, RedisRateLimiter)
    assert state.redis is not None and await state.redis.ping()
    await state.close()


async def test_the_environment_variable_overrides_the_config() -> None:
    s = settings("redis_url: redis://elsewhere:1/0", {"TOLLGATE_REDIS_URL": REDIS_URL})
    assert s.redis_url == REDIS_URL
    state = open_account_state(s, MemoryStorage())
    assert state.redis is not None and await state.redis.ping()
    await state.close()
