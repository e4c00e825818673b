from __future__ import annotations

import pytest

from tests.routing.builders import catalog, dep, model
from tollgate.errors import UpstreamBadResponseError, UpstreamRateLimitError, UpstreamRejectedError
from tollgate.routing.attempts import Attempts, RetryPolicy, retry_after_seconds
from tollgate.routing.health import HealthBoard
from tollgate.settings import RoutingConfig

CAT = catalog(model("m", dep("a"), dep("b")))


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    when = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds({"Retry-After": when}, now=1445412480.0) == pytest.approx(10)
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = RetryPolicy(RoutingConfig(backoff_base=0.1, backoff_max=1.0), rng=lambda: 1.0)
    assert [policy.backoff(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert RetryPolicy(RoutingConfig(), rng=lambda: 0.0).backoff(3) == 0


def test_delay_honours_retry_after_within_the_cap_and_the_deadline() -> None:
    policy = RetryPolicy(RoutingConfig(retry_after_cap=5), rng=lambda: 0.0)
    limited = UpstreamRateLimitError("slow down", headers={"Retry-After": "2"})
    assert policy.delay(0, limited, remaining=10) == 2
    assert policy.delay(0, limited, remaining=1.5) is None, "never waits past the deadline"
    too_long = UpstreamRateLimitError("slow down", headers={"Retry-After": "60"})
    assert policy.delay(0, too_long, remaining=100) is None
    assert policy.delay(0, UpstreamRejectedError("bad"), remaining=100) is None


async def walk(
    config: RoutingConfig, outcomes: dict[str, list[Exception | None]]
) -> tuple[list[str], list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    health = HealthBoard(config)
    attempts = Attempts(CAT.targets("m"), RetryPolicy(config, rng=lambda: 1.0), health, lambda: 100.0, sleep)
    tried: list[str] = []
    async for target in attempts.targets():
        tried.append(target.provider.name)
        err = outcomes[target.provider.name].pop(0)
        if err is None:
            health.succeeded(target.key, 1)
            break
        assert isinstance(err, UpstreamBadResponseError | UpstreamRateLimitError | UpstreamRejectedError)
        attempts.failed(target, err)
    return tried, slept


async def test_moves_through_deployments_without_waiting_then_retries_with_backoff() -> None:
    config = RoutingConfig(retry_rounds=2, backoff_base=0.1)
    boom = UpstreamBadResponseError
    tried, slept = await walk(config, {"a": [boom("1"), boom("2"), None], "b": [boom("3"), boom("4")]})
    assert tried == ["a", "b", "a", "b", "a"]
    assert slept == pytest.approx([0.1, 0.1, 0.2])


async def test_a_rejected_request_is_not_retried_anywhere() -> None:
    tried, _ = await walk(RoutingConfig(), {"a": [UpstreamRejectedError("invalid")], "b": [None]})
    assert tried == ["a"]


async def test_max_attempts_bounds_the_walk() -> None:
    boom = UpstreamBadResponseError
    tried, _ = await walk(
        RoutingConfig(retry_rounds=5, max_attempts=3), {"a": [boom("x")] * 6, "b": [boom("y")] * 6}
    )
    assert tried == ["a", "b", "a"]
