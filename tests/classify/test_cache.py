"""tollgate/classify/cache.py: the result cache's key, LRU order and TTL."""

from __future__ import annotations

import time

from tollgate.classify.cache import ResultCache, cache_key


def test_the_key_ignores_field_order_and_sees_every_value() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert len(cache_key({})) == 64


def test_least_recently_used_entries_go_first() -> None:
    cache = ResultCache(capacity=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") is not None
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None


def test_entries_expire_after_the_ttl() -> None:
    cache = ResultCache(ttl=0.01)
    cache.put("a", {"label": "x"})
    hit = cache.get("a")
    assert hit is not None and hit[0] == {"label": "x"} and hit[1] >= 0
    time.sleep(0.02)
    assert cache.get("a") is None and len(cache) == 0


def test_zero_capacity_stores_nothing() -> None:
    cache = ResultCache(capacity=0)
    cache.put("a", 1)
    assert cache.get("a") is None
