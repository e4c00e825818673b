"""A small in-process LRU cache of classification results, with a TTL, and its key.

The key is a SHA-256 of the normalised request: the account, the endpoint, the backend, the label
configuration (labels, descriptions, examples, text type, threshold) and the input (text, images, file digest).
Results are per account, so one customer's traffic never answers another's. (A general response cache for chat
may replace this one; it is deliberately small.)
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any

import orjson


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ResultCache:
    def __init__(self, capacity: int = 10_000, ttl: float = 3600.0) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> tuple[Any, float] | None:
        """The stored value and its age in seconds, or ``None``."""
        item = self._items.get(key)
        if item is None:
            return None
        stored, value = item
        age = time.monotonic() - stored
        if age > self.ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value, age

    def put(self, key: str, value: Any) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
