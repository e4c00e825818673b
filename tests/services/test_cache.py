"""tollgate/services/cache.py: which requests are cacheable, the key, both stores (in-process and the real
Redis), and the cache through the gateway with the openai SDK."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.redis import REDIS_URL, connect, delete_prefix, new_prefix, redis_with_prefix
from tests.support.servers import run
from tollgate.services.cache import (
    CacheStore,
    Entry,
    LocalCacheStore,
    RedisCacheStore,
    cache_key,
    deterministic,
)
from tollgate.simulator import SimServer

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}

# which requests, which key ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "cacheable"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"seed": 7}, True),
        ({"temperature": 0.7, "seed": 7}, True),
        ({}, False),
        ({"temperature": 0.7}, False),
        ({"temperature": 0, "n": 3}, False),
        ({"temperature": False}, False),
        ({"seed": True}, False),
    ],
)
def test_only_deterministic_requests_are_cacheable(extra: dict[str, Any], cacheable: bool) -> None:
    assert deterministic({"model": "m", **extra}) is cacheable


def test_key_ignores_field_order_and_fields_that_do_not_change_the_answer() -> None:
    a = cache_key("acct", BODY, stream=False)
    reordered = dict(reversed(list(BODY.items())))
    assert cache_key("acct", reordered, stream=False) == a
    assert cache_key("acct", {**BODY, "user": "u1", "stream_options": {"include_usage": True}}, False) == a


def test_key_differs_by_account_kind_and_content() -> None:
    a = cache_key("acct", BODY, stream=False)
    assert cache_key("other", BODY, stream=False) != a
    assert cache_key("acct", BODY, stream=True) != a
    assert cache_key("acct", {**BODY, "max_tokens": 5}, stream=False) != a


# stores ---------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStore]:
    if request.param == "local":
        yield LocalCacheStore(max_entries=3)
        return
    async for redis, prefix in redis_with_prefix():
        yield RedisCacheStore(redis, prefix)


async def test_store_returns_what_was_put_until_it_expires(store: CacheStore) -> None:
    entry = Entry(1_700_000_000.25, True, b"data: {}\n\ndata: [DONE]\n\n")
    await store.put("k", entry, ttl=0.2)
    assert await store.get("k") == entry
    assert await store.get("missing") is None
    time.sleep(0.25)
    assert await store.get("k") is None


async def test_zero_ttl_stores_nothing(store: CacheStore) -> None:
    await store.put("k", Entry(1.0, False, b"{}"), ttl=0)
    assert await store.get("k") is None


async def test_local_store_evicts_the_least_recently_used() -> None:
    store = LocalCacheStore(max_entries=2)
    for k in ("a", "b"):
        await store.put(k, Entry(1.0, False, k.encode()), ttl=60)
    await store.get("a")
    await store.put("c", Entry(1.0, False, b"c"), ttl=60)
    assert await store.get("b") is None
    assert await store.get("a") is not None and await store.get("c") is not None


# through the gateway ------------------------------------------------------------------------------------------


def ask(client: openai.OpenAI, marker: str, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": marker}], max_tokens=8, **kw
    )


def upstream_calls(sim: SimServer, marker: str) -> int:
    return sum(1 for r in sim.requests() if marker in str(r.get("body")))


def test_a_repeated_deterministic_request_is_served_from_cache_at_no_cost(
    gateway: Gateway, sim: SimServer
) -> None:
    key = gateway.create_key()
    client = gateway.client(key)
    marker = "cache-" + secrets.token_hex(4)
    first = ask(client, marker, temperature=0)
    second = ask(client, marker, temperature=0)
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert len(second.headers["x-cache-key"]) == 16
    assert int(second.headers["x-cache-age"]) >= 0
    assert second.headers["x-tokens-used"] == "0"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert upstream_calls(sim, marker) == 1
    rows = gateway.usage_rows(expect=2)
    assert [r.cached for r in rows] == [False, True]
    assert rows[1].status == 200 and rows[1].cost == 0 and rows[1].prompt_tokens == 0
    assert gateway.balance() == 10 - rows[0].cost


def test_non_deterministic_requests_always_go_upstream(gateway: Gateway, sim: SimServer) -> None:
    client = gateway.client(gateway.create_key())
    marker = "nocache-" + secrets.token_hex(4)
    for _ in range(2):
        raw = ask(client, marker, temperature=0.7)
        assert raw.headers["x-cache"] == "MISS" and "x-cache-key" not in raw.headers
    assert upstream_calls(sim, marker) == 2


def test_cache_false_in_the_body_opts_out_and_is_not_sent_upstream(gateway: Gateway, sim: SimServer) -> None:
    client = gateway.client(gateway.create_key())
    marker = "optout-" + secrets.token_hex(4)
    ask(client, marker, temperature=0)
    raw = ask(client, marker, temperature=0, extra_body={"cache": False})
    assert raw.headers["x-cache"] == "MISS"
    assert upstream_calls(sim, marker) == 2
    assert all("cache" not in r["body"] for r in sim.requests() if marker in str(r.get("body")))


def test_cache_control_no_cache_skips_the_lookup(gateway: Gateway, sim: SimServer) -> None:
    client = gateway.client(gateway.create_key())
    marker = "nocachehdr-" + secrets.token_hex(4)
    ask(client, marker, temperature=0)
    raw = ask(client, marker, temperature=0, extra_headers={"Cache-Control": "no-cache"})
    assert raw.headers["x-cache"] == "MISS"
    assert upstream_calls(sim, marker) == 2


def test_a_key_can_opt_out_of_the_cache(gateway: Gateway, sim: SimServer) -> None:
    client = gateway.client(gateway.create_key(cache=False))
    marker = "keyoptout-" + secrets.token_hex(4)
    ask(client, marker, temperature=0)
    assert ask(client, marker, temperature=0).headers["x-cache"] == "MISS"
    assert upstream_calls(sim, marker) == 2


def test_a_cached_stream_is_replayed_as_a_stream(gateway: Gateway, sim: SimServer) -> None:
    client = gateway.client(gateway.create_key())
    marker = "stream-" + secrets.token_hex(4)

    def text(stream: Any) -> str:
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    first = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": marker}], temperature=0, stream=True
    )
    original = text(first.parse())
    gateway.usage_rows(expect=1)
    second = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": marker}], temperature=0, stream=True
    )
    assert second.headers["x-cache"] == "HIT"
    assert text(second.parse()) == original and original
    assert upstream_calls(sim, marker) == 1


def test_cache_hits_do_not_count_against_rate_limits(tmp_path: Any, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, tiers={"one": {"rpm": 1}}) as gw:
        client = gw.client(gw.create_key(tier="one"))
        marker = "limits-" + secrets.token_hex(4)
        ask(client, marker, temperature=0)
        for _ in range(3):
            assert ask(client, marker, temperature=0).headers["x-cache"] == "HIT"
        with pytest.raises(openai.RateLimitError):
            ask(client, marker + "-other", temperature=0)


def test_a_failed_answer_is_not_cached(gateway: Gateway) -> None:
    key = gateway.create_key()
    marker = "fail-" + secrets.token_hex(4)
    body = {
        "model": "sim-small",
        "messages": [{"role": "user", "content": marker}],
        "temperature": 0,
        "sim": {"fail_first": 1, "error": 400, "scenario": marker},  # the same body fails once, then works
    }
    url = gateway.base_url + "/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 400
    ok = httpx.post(url, json=body, headers=headers, timeout=30)
    assert ok.status_code == 200 and ok.headers["x-cache"] == "MISS"
    again = httpx.post(url, json=body, headers=headers, timeout=30)
    assert again.status_code == 200 and again.headers["x-cache"] == "HIT"


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_cache_hits_carry_the_rate_limit_headers_as_they_stand(
    tmp_path: Any, sim: SimServer, backend: str
) -> None:
    shared: dict[str, Any] = {}
    if backend == "redis":
        shared = {"sections": {"redis_url": REDIS_URL}, "redis_prefix": new_prefix()}
        run(ping())  # fails, not skips, when Redis is down
    try:
        with Gateway(tmp_path, sim.base_url, tiers={"five": {"rpm": 5, "tpm": 100_000}}, **shared) as gw:
            client = gw.client(gw.create_key(tier="five"))
            marker = "hdr-" + secrets.token_hex(4)
            miss = ask(client, marker, temperature=0)
            used = int(miss.headers["x-tokens-used"])
            assert used == miss.parse().usage.total_tokens > 0
            gw.usage_rows(expect=1)  # settled: the token count is corrected to the actual usage
            for _ in range(2):
                hit = ask(client, marker, temperature=0)
                assert hit.headers["x-cache"] == "HIT" and hit.headers["x-tokens-used"] == "0"
                assert hit.headers["x-ratelimit-limit-requests"] == "5"
                assert hit.headers["x-ratelimit-remaining-requests"] == "4"
                assert hit.headers["x-ratelimit-limit-tokens"] == "100000"
                assert hit.headers["x-ratelimit-remaining-tokens"] == str(100_000 - used)
                assert int(hit.headers["x-ratelimit-reset"]) > time.time()
            other = ask(client, marker + "-other", temperature=0)
            assert other.headers["x-ratelimit-remaining-requests"] == "3"
    finally:
        if backend == "redis":
            run(clean(shared["redis_prefix"]))


def test_unlimited_keys_get_no_rate_limit_headers_on_a_hit(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key())
    marker = "nolimits-" + secrets.token_hex(4)
    ask(client, marker, temperature=0)
    hit = ask(client, marker, temperature=0)
    assert hit.headers["x-cache"] == "HIT"
    assert not [h for h in hit.headers if h.lower().startswith("x-ratelimit")]


async def ping() -> None:
    await (await connect()).aclose()


async def clean(prefix: str) -> None:
    redis = await connect()
    await delete_prefix(redis, prefix)
    await redis.aclose()
