"""API keys: generated once, stored as a SHA-256 hash with a short visible prefix, checked in constant time.

Keys are 32 bytes of randomness, so a fast hash is the right tool (slow password hashes exist for guessable
secrets). Lookup goes by the prefix; the hash comparison is ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from tollgate.errors import AuthenticationError
from tollgate.storage.base import KeyRecord, Storage

KEY_PREFIX = "tg-"
PREFIX_LEN = len(KEY_PREFIX) + 8


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


class Authenticator:
    """Resolves a presented key to a ``Principal``, with a short-lived in-memory cache of key records.

    A cached record is re-read from storage after ``ttl`` seconds, so keys created or revoked by the CLI
    while the server runs take effect within that window.
    """

    def __init__(self, storage: Storage, ttl: float = 5.0) -> None:
        self._storage = storage
        self._ttl = ttl
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        # Keys verified within ``ttl``: a hit skips the hash and the comparison.
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, key: str) -> Principal:
        hit = self._verified.get(key)
        if hit is not None and time.monotonic() - hit[0] <= self._ttl:
            return hit[1]
        principal = await self._check(key)
        if len(self._verified) > 100_000:
            self._verified.clear()
        self._verified[key] = (time.monotonic(), principal)
        return principal

    async def _check(self, key: str) -> Principal:
        if not key.startswith(KEY_PREFIX) or len(key) <= PREFIX_LEN:
            raise AuthenticationError("Invalid API key: the key is not a Tollgate key (they start 'tg-').")
        prefix = key[:PREFIX_LEN]
        now = time.monotonic()
        cached = self._cache.get(prefix)
        if cached is None or now - cached[0] > self._ttl:
            record = await self._storage.key_by_prefix(prefix)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[prefix] = (now, record)
        else:
            record = cached[1]
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(key)):
            raise AuthenticationError("Invalid API key: no active key matches the one provided.")
        if record.revoked_at is not None:
            raise AuthenticationError("Invalid API key: this key has been revoked.")
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
