"""tollgate/classify/cache.py: the cache key."""

from __future__ import annotations

from tollgate.classify.cache import cache_key


def test_the_key_ignores_field_order_and_sees_every_value() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert cache_key({"text": "x", "labels": ["a", "b"]}) != cache_key({"text": "x", "labels": ["b", "a"]})
    assert len(cache_key({})) == 64
