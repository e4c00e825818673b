"""API keys: generated once, stored as a SHA-256 hash with a short visible prefix, checked in constant time.

Keys are 32 bytes of randomness, so a fast hash is the right tool (slow password hashes exist for guessable
secrets). Lookup goes by the prefix; the hash comparison is ``hmac.compare_digest``.

``Authenticator`` keeps three in-memory caches, each entry trusted for ``ttl`` seconds
(``server.key_cache_ttl``):

- the records of real keys, by prefix (bounded by the number of keys);
- the keys verified, so a known key skips the hash;
- a bounded negative cache of prefixes presented with a key that matched nothing (no such prefix, or a wrong
  secret for a real one): a repeat within ``ttl`` is refused from memory, with no database lookup.

A refusal does the same work whatever the prefix: the presented key is hashed and compared (against a dummy
hash when no key has that prefix), and the first presentation of a prefix within ``ttl`` costs one lookup
whether or not a key has it. Lookups of one prefix share one query, and at most ``lookup_concurrency`` run at
once, so a flood of random keys cannot take the database's connections from other work. Refusals are
counted in ``invalid_attempts`` (a refused request leaves no usage row).

Revocation through this process (``forget``) takes effect at once; a key revoked elsewhere (another
replica, the CLI) stops working within ``ttl``, and a key created elsewhere is accepted within ``ttl`` of a
refused attempt with its prefix (at once otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from tollgate.errors import AuthenticationError
from tollgate.storage.base import KeyRecord, Storage

KEY_PREFIX = "tg-"
PREFIX_LEN = len(KEY_PREFIX) + 8
# What a Tollgate key can look like (they are 46 characters); anything else is refused without a lookup.
KEY_SHAPE = re.compile(r"tg-[A-Za-z0-9_-]{9,200}")


@dataclass(frozen=True, slots=True)
class NewKey:
    record: KeyRecord
    secret: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(
    account_id: str,
    name: str,
    *,
    tier: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    concurrency: int | None = None,
    cache: bool = True,
    log_inputs: bool = False,
    log_outputs: bool = False,
    retention_days: int | None = None,
    allowed_models: tuple[str, ...] | None = None,
    priority: str = "normal",
    manager: bool = False,
    created_by: str | None = None,
) -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = KeyRecord(
        id="key_" + secrets.token_hex(8),
        account_id=account_id,
        name=name,
        prefix=secret[:PREFIX_LEN],
        key_hash=hash_key(secret),
        created_at=time.time(),
        revoked_at=None,
        tier=tier,
        rpm=rpm,
        tpm=tpm,
        concurrency=concurrency,
        cache=cache,
        log_inputs=log_inputs,
        log_outputs=log_outputs,
        retention_days=retention_days,
        allowed_models=allowed_models,
        priority=priority,
        manager=manager,
        created_by=created_by,
    )
    return NewKey(record, secret)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key and the account it belongs to."""

    key_id: str
    account_id: str
    key_name: str
    # Rate limits: the key's tier (``None``: the server default) and per-key overrides.
    tier: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    cache: bool = True  # False: this key's requests are never served from or stored in the cache
    # Request logging: bodies are kept only when allowed, for ``retention_days`` (None: server default).
    log_inputs: bool = False
    log_outputs: bool = False
    retention_days: int | None = None
    allowed_models: frozenset[str] | None = None  # None: every model


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    raise AuthenticationError(
        "Missing API key: send it as 'Authorization: Bearer <key>' or in the 'X-API-Key' header."
    )


_DUMMY_HASH = hash_key(KEY_PREFIX + "0" * 43)
NO_MATCH = "Invalid API key: no active key matches the one provided."


def _matches(record: KeyRecord | None, digest: str) -> bool:
    """One constant-time comparison whether or not there is a record (against a dummy hash without one)."""
    same = hmac.compare_digest(record.key_hash if record is not None else _DUMMY_HASH, digest)
    return same and record is not None


def _principal(record: KeyRecord) -> Principal:
    return Principal(
        record.id,
        record.account_id,
        record.name,
        tier=record.tier,
        rpm=record.rpm,
        tpm=record.tpm,
        concurrency=record.concurrency,
        cache=record.cache,
        log_inputs=record.log_inputs,
        log_outputs=record.log_outputs,
        retention_days=record.retention_days,
        allowed_models=None if record.allowed_models is None else frozenset(record.allowed_models),
    )


class Authenticator:
    """Resolves a presented key to a ``Principal`` through the caches described in the module docstring."""

    def __init__(
        self,
        storage: Storage,
        ttl: float = 5.0,
        *,
        max_refused: int = 100_000,
        lookup_concurrency: int = 8,
    ) -> None:
        self._storage = storage
        self._ttl = ttl
        self._max_refused = max_refused
        self._records: dict[str, tuple[float, KeyRecord]] = {}
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._verified_key: dict[str, str] = {}  # prefix -> the verified key with it, for ``forget``
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[tuple[float, KeyRecord | None]]] = {}
        self._lookups = asyncio.Semaphore(lookup_concurrency)
        self._epoch = 0  # bumped by ``forget``: a lookup begun before it does not refill the cache
        self.invalid_attempts = 0  # keys refused (missing, malformed, unknown, wrong, revoked)
        self.key_lookups = 0  # database lookups made

    async def from_headers(self, authorization: str | None, x_api_key: str | None) -> Principal:
        """``authenticate`` the key of a request's headers; a missing key counts as an invalid attempt."""
        try:
            key = key_from_headers(authorization, x_api_key)
        except AuthenticationError:
            self.invalid_attempts += 1
            raise
        return await self.authenticate(key)

    async def authenticate(self, key: str) -> Principal:
        now = time.monotonic()
        hit = self._verified.get(key)
        if hit is not None and now - hit[0] <= self._ttl:
            return hit[1]
        try:
            fetched, principal = await self._check(key, now)
        except AuthenticationError:
            self.invalid_attempts += 1
            raise
        if len(self._verified) > 100_000:
            self._verified.clear()
            self._verified_key.clear()
        # Trusted until the record it came from is ``ttl`` old, so a revocation elsewhere shows within ttl.
        self._verified[key] = (fetched, principal)
        self._verified_key[key[:PREFIX_LEN]] = key
        return principal

    def forget(self, prefix: str) -> None:
        """Drop what is cached about the key with this prefix (it was just revoked): its next use is looked up."""
        self._epoch += 1
        self._records.pop(prefix, None)
        self._refused.pop(prefix, None)
        self._inflight.pop(prefix, None)
        key = self._verified_key.pop(prefix, None)
        if key is not None:
            self._verified.pop(key, None)

    async def _check(self, key: str, now: float) -> tuple[float, Principal]:
        if not KEY_SHAPE.fullmatch(key):
            raise AuthenticationError("Invalid API key: the key is not a Tollgate key (they start 'tg-').")
        prefix = key[:PREFIX_LEN]
        digest = hash_key(key)
        cached = self._records.get(prefix)
        fetched, record = cached if cached is not None and now - cached[0] <= self._ttl else (now, None)
        if not _matches(record, digest):
            refused = self._refused.get(prefix)
            if refused is not None and now - refused <= self._ttl:
                raise AuthenticationError(NO_MATCH)
            fetched, record = await self._lookup(prefix)
            if not _matches(record, digest):
                # Remembered only with the record it was checked against (not one a ``forget`` kept out of
                # the cache), so a remembered refusal never shuts out the key's owner.
                if record is None or prefix in self._records:
                    self._refuse(prefix, now)
                raise AuthenticationError(NO_MATCH)
        assert record is not None
        if record.revoked_at is not None:
            raise AuthenticationError("Invalid API key: this key has been revoked.")
        return fetched, _principal(record)

    def _refuse(self, prefix: str, now: float) -> None:
        self._refused[prefix] = now
        self._refused.move_to_end(prefix)
        while len(self._refused) > self._max_refused:
            self._refused.popitem(last=False)

    async def _lookup(self, prefix: str) -> tuple[float, KeyRecord | None]:
        """The stored record with this prefix; concurrent lookups of one prefix share one query."""
        future = self._inflight.get(prefix)
        if future is None:
            future = asyncio.ensure_future(self._fetch(prefix))
            self._inflight[prefix] = future
            future.add_done_callback(lambda f: self._fetched(prefix, f))
        return await asyncio.shield(future)

    def _fetched(self, prefix: str, future: asyncio.Future[tuple[float, KeyRecord | None]]) -> None:
        if self._inflight.get(prefix) is future:
            del self._inflight[prefix]
        if not future.cancelled():
            future.exception()  # retrieved here: a waiter may have been cancelled

    async def _fetch(self, prefix: str) -> tuple[float, KeyRecord | None]:
        async with self._lookups:
            started, epoch = time.monotonic(), self._epoch
            self.key_lookups += 1
            record = await self._storage.key_by_prefix(prefix)
        if record is not None and epoch == self._epoch:
            if len(self._records) > 100_000:
                self._records.clear()
                self._refused.clear()
            self._records[prefix] = (started, record)
        return started, record
