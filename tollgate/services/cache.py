"""The response cache: exact match of the normalized request, for deterministic requests only.

What is cached
    A request is deterministic, and so cacheable, when it asks for ``temperature: 0`` or pins a ``seed``
    (the client asked for reproducible output), and wants one choice (``n`` absent or 1). Everything else
    always goes upstream.

The key
    SHA-256 over the account, the reply kind (JSON or stream: a stream is replayed as a stream, a JSON
    reply as JSON) and the request body with its keys sorted, minus fields that do not change the answer
    (``stream``, ``stream_options``, ``user``, ``metadata``, ``store``, ``cache``). Entries are scoped
    to the account: one account never sees another's answers.

Opting out
    Per request: ``"cache": false`` in the body (removed before the request goes upstream), or
    ``Cache-Control: no-cache`` (skip the lookup; the fresh answer replaces the entry) / ``no-store``
    (neither look up nor store). Per key: ``api_keys.cache = false``. Globally: ``server.cache: false``.

TTL
    From the key's tier (``server.tiers.<tier>.cache_ttl``: 5 min / 1 h / 24 h by default), else
    ``server.cache_ttl``.

A hit costs nothing (``X-Tokens-Used: 0``), is not counted against rate limits (it carries the key's
``X-RateLimit-*`` headers as they stand) and still leaves a usage row, marked cached. Only complete,
successful answers are stored. Headers: ``X-Cache: HIT|MISS``, ``X-Cache-Key`` (first 16 characters of the
key), ``X-Cache-Age`` (seconds, hits only).

Stores: ``LocalCacheStore`` (in-process LRU with TTL, the default) and ``RedisCacheStore`` (shared by
replicas; selected when ``redis_url`` is configured).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from tollgate.accounts.keys import Principal
from tollgate.protocol.chat import ChatRequest
from tollgate.services.context import JsonReply, RequestContext, StreamReply
from tollgate.settings import ServerConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("tollgate.cache")

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store", "cache"})
_ERROR_FRAME = b'data: {"error"'


@dataclass(frozen=True, slots=True)
class Entry:
    created_at: float
    stream: bool
    body: bytes  # the chat.completion JSON, or every SSE frame of the stream


class CacheStore(Protocol):
    async def get(self, key: str) -> Entry | None: ...
    async def put(self, key: str, entry: Entry, ttl: float) -> None: ...
    async def close(self) -> None: ...


class LocalCacheStore:
    """One process: least recently used entries go first once ``max_entries`` is reached."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, Entry]] = OrderedDict()

    async def get(self, key: str) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= time.time():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return found[1]

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (time.time() + ttl, entry)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


_HEADER = struct.Struct("!dB")


class RedisCacheStore:
    """Shared by replicas: one Redis string per entry, expiring with the entry's TTL."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "cache:"

    async def get(self, key: str) -> Entry | None:
        raw = await self._redis.get(self._prefix + key)
        if not isinstance(raw, bytes):  # None: a miss (the client never decodes responses)
            return None
        created, stream = _HEADER.unpack_from(raw)
        return Entry(created, bool(stream), bytes(raw[_HEADER.size :]))

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        if ttl <= 0:
            return
        value = _HEADER.pack(entry.created_at, int(entry.stream)) + entry.body
        await self._redis.set(self._prefix + key, value, px=int(ttl * 1000))

    async def close(self) -> None:
        """The Redis client belongs to whoever opened it."""


def deterministic(body: dict[str, Any]) -> bool:
    if body.get("n") not in (None, 1):
        return False
    temperature = body.get("temperature")
    seed = body.get("seed")
    return (temperature is not None and not isinstance(temperature, bool) and temperature == 0) or (
        isinstance(seed, int) and not isinstance(seed, bool)
    )


def cache_key(account_id: str, body: dict[str, Any], stream: bool) -> str:
    normalized = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    digest = hashlib.sha256()
    digest.update(f"{account_id}\n{'stream' if stream else 'json'}\n".encode())
    digest.update(orjson.dumps(normalized, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


@dataclass(slots=True)
class Lookup:
    """The cache's verdict on one request: a hit to replay, or what to do with the fresh answer."""

    key: str | None = None
    hit: Entry | None = None
    store: bool = False
    ttl: float = 0.0


class ResponseCache:
    def __init__(
        self, store: CacheStore, ttl_for: Callable[[Principal], float], *, enabled: bool = True
    ) -> None:
        self.store = store
        self.ttl_for = ttl_for
        self.enabled = enabled
        self._tasks: set[asyncio.Task[Any]] = set()

    async def lookup(self, ctx: RequestContext, req: ChatRequest) -> Lookup:
        """Decide for one request (and drop the ``cache`` field so it never goes upstream)."""
        wanted = req.body.pop("cache", None) is not False
        principal = ctx.principal
        if not (self.enabled and wanted and principal is not None and principal.cache):
            return Lookup()
        if principal.allowed_models is not None and req.model not in principal.allowed_models:
            return Lookup()  # admission refuses it; a cached answer must not slip past
        if not deterministic(req.body):
            return Lookup()
        control = (ctx.cache_control or "").lower()
        if "no-store" in control:
            return Lookup()
        key = cache_key(principal.account_id, req.body, req.stream)
        ttl = self.ttl_for(principal)
        hit = None
        if "no-cache" not in control:
            try:
                hit = await self.store.get(key)
            except Exception:
                log.exception("cache lookup failed; going upstream")
        return Lookup(key, hit, store=ttl > 0, ttl=ttl)

    def replay(self, ctx: RequestContext, lookup: Lookup) -> JsonReply | StreamReply:
        """The reply for a hit: the stored answer, at no cost."""
        assert lookup.key is not None and lookup.hit is not None
        entry = lookup.hit
        headers = {
            "X-Request-ID": ctx.request_id,
            "X-Cache": "HIT",
            "X-Cache-Key": lookup.key[:16],
            "X-Cache-Age": str(max(0, int(time.time() - entry.created_at))),
            "X-Tokens-Used": "0",
        }
        if not entry.stream:
            return JsonReply(entry.body, headers)

        async def frames() -> AsyncIterator[bytes]:
            yield entry.body

        async def abandon() -> None:
            return None

        return StreamReply(frames(), headers, abandon)

    def keep(self, lookup: Lookup, reply: JsonReply | StreamReply) -> JsonReply | StreamReply:
        """A fresh answer: mark it a miss and store it once it is complete and successful."""
        reply.headers["X-Cache"] = "MISS"
        if lookup.key is None:
            return reply
        reply.headers["X-Cache-Key"] = lookup.key[:16]
        if not lookup.store:
            return reply
        if isinstance(reply, JsonReply):
            if reply.status == 200:
                self._put(lookup, Entry(time.time(), False, reply.body))
            return reply
        return StreamReply(self._collect(lookup, reply.frames), reply.headers, reply.abandon, reply.last)

    async def _collect(self, lookup: Lookup, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        parts: list[bytes] = []
        failed = False
        try:
            async for frame in frames:
                failed = failed or frame.startswith(_ERROR_FRAME)
                parts.append(frame)
                yield frame
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
        if not failed and parts and parts[-1].endswith(b"data: [DONE]\n\n"):
            self._put(lookup, Entry(time.time(), True, b"".join(parts)))

    def _put(self, lookup: Lookup, entry: Entry) -> None:
        assert lookup.key is not None
        task = asyncio.get_running_loop().create_task(self.store.put(lookup.key, entry, lookup.ttl))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cache store failed", exc_info=task.exception())

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()


def ttl_by_tier(server: ServerConfig) -> Callable[[Principal], float]:
    """The key's tier's ``cache_ttl`` (its own tier, else the default tier), else ``server.cache_ttl``."""

    def ttl(principal: Principal) -> float:
        name = principal.tier if principal.tier in server.tiers else server.default_tier
        tier = server.tiers.get(name) if name else None
        return tier.cache_ttl if tier is not None else server.cache_ttl

    return ttl


def open_cache(server: ServerConfig, redis: Redis | None) -> ResponseCache:
    """In-process LRU by default; Redis (shared by replicas) when one is configured."""
    store: CacheStore = (
        RedisCacheStore(redis, server.redis_prefix)
        if redis is not None
        else LocalCacheStore(server.cache_max_entries)
    )
    return ResponseCache(store, ttl_by_tier(server), enabled=server.cache)
