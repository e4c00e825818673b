"""tollgate/accounts/keys.py: key generation, header parsing and the caching authenticator."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import secrets
import time

import pytest

from tests.support.memory_storage import MemoryStorage
from tollgate.accounts import keys
from tollgate.accounts.keys import (
    KEY_PREFIX,
    PREFIX_LEN,
    Authenticator,
    NewKey,
    Principal,
    generate_key,
    hash_key,
    key_from_headers,
)
from tollgate.errors import AuthenticationError
from tollgate.storage.base import KeyRecord


class FakeClock:
    """Stands in for the ``time`` module inside ``tollgate.accounts.keys``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(keys, "time", fake)
    return fake


@pytest.fixture
async def storage() -> MemoryStorage:
    store = MemoryStorage()
    await store.ensure_account("default")
    return store


async def stored_key(storage: MemoryStorage, name: str = "laptop") -> NewKey:
    acct = await storage.ensure_account("default")
    new = generate_key(acct.id, name)
    await storage.insert_key(new.record)
    return new


# generate_key -------------------------------------------------------------------------------------------


def test_generated_key_format() -> None:
    new = generate_key("acct_1", "ci")
    assert re.fullmatch(r"tg-[A-Za-z0-9_-]{43}", new.secret), new.secret
    assert new.record.prefix == new.secret[:PREFIX_LEN]
    assert len(new.record.prefix) == len(KEY_PREFIX) + 8
    assert re.fullmatch(r"key_[0-9a-f]{16}", new.record.id)
    assert new.record.account_id == "acct_1" and new.record.name == "ci"
    assert new.record.revoked_at is None
    assert new.record.created_at == pytest.approx(time.time(), abs=60)


def test_generated_key_stores_only_the_sha256_of_the_secret() -> None:
    new = generate_key("acct_1", "ci")
    assert new.record.key_hash == hashlib.sha256(new.secret.encode()).hexdigest()
    assert new.record.key_hash == hash_key(new.secret)
    assert new.secret not in dataclasses.astuple(new.record)


def test_generated_keys_are_distinct() -> None:
    made = [generate_key("acct_1", "k") for _ in range(50)]
    assert len({k.secret for k in made}) == 50
    assert len({k.record.prefix for k in made}) == 50
    assert len({k.record.id for k in made}) == 50


# key_from_headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "x_api_key"),
    [
        ("Bearer tg-secret", None),
        ("bearer tg-secret", None),
        ("BEARER   tg-secret  ", None),
        (None, "tg-secret"),
        (None, "  tg-secret "),
        ("Basic dXNlcjpwYXNz", "tg-secret"),
        ("Bearer ", "tg-secret"),
        ("Bearer", "tg-secret"),
        ("", "tg-secret"),
        ("Bearer tg-secret", "tg-other"),
    ],
)
def test_key_from_headers_finds_the_key(authorization: str | None, x_api_key: str | None) -> None:
    assert key_from_headers(authorization, x_api_key) == "tg-secret"


@pytest.mark.parametrize(
    ("authorization", "x_api_key"),
    [(None, None), ("", ""), ("Bearer   ", "  "), ("Basic abc", None), ("tg-secret", None)],
)
def test_key_from_headers_without_a_key_is_401(authorization: str | None, x_api_key: str | None) -> None:
    with pytest.raises(AuthenticationError) as info:
        key_from_headers(authorization, x_api_key)
    assert info.value.status == 401
    assert "Missing API key" in info.value.message


# Authenticator ------------------------------------------------------------------------------------------


async def test_valid_key_authenticates_to_its_principal(storage: MemoryStorage) -> None:
    new = await stored_key(storage, "laptop")
    principal = await Authenticator(storage).authenticate(new.secret)
    assert principal == Principal(new.record.id, new.record.account_id, "laptop")


async def test_wrong_secret_with_a_known_prefix_is_refused(storage: MemoryStorage) -> None:
    new = await stored_key(storage)
    forged = new.record.prefix + "x" * (len(new.secret) - PREFIX_LEN)
    assert forged != new.secret
    with pytest.raises(AuthenticationError, match="no active key matches"):
        await Authenticator(storage).authenticate(forged)


async def test_unknown_prefix_is_refused(storage: MemoryStorage) -> None:
    with pytest.raises(AuthenticationError, match="no active key matches"):
        await Authenticator(storage).authenticate("tg-unknown0" + "y" * 40)


async def test_revoked_key_is_refused(storage: MemoryStorage) -> None:
    new = await stored_key(storage)
    await storage.revoke_key(new.record.id, 1.0)
    with pytest.raises(AuthenticationError, match="revoked"):
        await Authenticator(storage).authenticate(new.secret)


async def test_wrong_secret_for_a_revoked_key_does_not_say_revoked(storage: MemoryStorage) -> None:
    new = await stored_key(storage)
    await storage.revoke_key(new.record.id, 1.0)
    with pytest.raises(AuthenticationError, match="no active key matches"):
        await Authenticator(storage).authenticate(new.record.prefix + "z" * 40)


@pytest.mark.parametrize(
    "presented", ["sk-proj-abcdefghijklmnopqrstuvwxyz", "TG-abcdefgh12345", "tg-short", "tg-abcdefgh", ""]
)
async def test_non_tollgate_key_is_refused_without_a_lookup(storage: MemoryStorage, presented: str) -> None:
    with pytest.raises(AuthenticationError, match="not a Tollgate key") as info:
        await Authenticator(storage).authenticate(presented)
    assert info.value.status == 401
    assert storage.calls.get("key_by_prefix", 0) == 0


async def test_key_records_are_cached_within_the_ttl(storage: MemoryStorage, clock: FakeClock) -> None:
    new = await stored_key(storage)
    auth = Authenticator(storage, ttl=5.0)
    for _ in range(3):
        await auth.authenticate(new.secret)
        clock.now += 1.0
    assert storage.calls["key_by_prefix"] == 1


async def test_revocation_is_seen_after_the_ttl(storage: MemoryStorage, clock: FakeClock) -> None:
    new = await stored_key(storage)
    auth = Authenticator(storage, ttl=5.0)
    await auth.authenticate(new.secret)
    await storage.revoke_key(new.record.id, 1.0)

    clock.now += 5.0
    assert (await auth.authenticate(new.secret)).key_id == new.record.id, "still cached at exactly ttl"
    clock.now += 0.01
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.authenticate(new.secret)
    assert storage.calls["key_by_prefix"] == 2


async def test_a_key_created_after_a_miss_is_found_after_the_ttl(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    acct = await storage.ensure_account("default")
    new = generate_key(acct.id, "late")
    auth = Authenticator(storage, ttl=2.0)
    with pytest.raises(AuthenticationError):
        await auth.authenticate(new.secret)
    await storage.insert_key(new.record)
    with pytest.raises(AuthenticationError):
        await auth.authenticate(new.secret)  # the miss is cached too
    clock.now += 2.5
    assert (await auth.authenticate(new.secret)).key_name == "late"


async def test_zero_ttl_reads_storage_every_time(storage: MemoryStorage, clock: FakeClock) -> None:
    new = await stored_key(storage)
    auth = Authenticator(storage, ttl=0)
    for _ in range(3):
        clock.now += 0.001
        await auth.authenticate(new.secret)
    assert storage.calls["key_by_prefix"] == 3


# Authenticator: invalid keys -----------------------------------------------------------------------------


class SlowStorage(MemoryStorage):
    """Key lookups that take a while, counting how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most_running = 0

    async def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0.01)
            return await super().key_by_prefix(prefix)
        finally:
            self.running -= 1


def unknown_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def refused(auth: Authenticator, key: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(key)
    return info.value.message


async def test_a_repeated_unknown_key_is_refused_from_memory_and_counted(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    auth = Authenticator(storage, ttl=5.0)
    key = unknown_key()
    for _ in range(1000):
        assert "no active key matches" in await refused(auth, key)
    assert storage.calls["key_by_prefix"] == 1
    assert auth.invalid_attempts == 1000 and auth.key_lookups == 1
    clock.now += 5.01
    await refused(auth, key)
    assert storage.calls["key_by_prefix"] == 2, "the negative cache lasts the key cache TTL"


class Work:
    """Counts what a refusal does: database lookups, hashes and constant-time comparisons, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, storage: MemoryStorage) -> None:
        self.steps: list[str] = []
        real_hash, real_compare, real_lookup = keys.hash_key, keys.hmac.compare_digest, storage.key_by_prefix

        def hash_key(key: str) -> str:
            self.steps.append("hash")
            return real_hash(key)

        def compare_digest(a: str, b: str) -> bool:
            self.steps.append("compare")
            return real_compare(a, b)

        async def key_by_prefix(prefix: str) -> KeyRecord | None:
            self.steps.append("lookup")
            return await real_lookup(prefix)

        monkeypatch.setattr(keys, "hash_key", hash_key)
        monkeypatch.setattr(keys.hmac, "compare_digest", compare_digest)
        monkeypatch.setattr(storage, "key_by_prefix", key_by_prefix)

    def take(self) -> list[str]:
        steps, self.steps = self.steps, []
        return steps


async def test_an_unknown_prefix_and_a_wrong_secret_take_the_same_work(
    storage: MemoryStorage, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = await stored_key(storage)
    auth = Authenticator(storage, ttl=5.0)
    await auth.authenticate(real.secret)  # the real prefix is cached, as it is while its owner uses it
    work = Work(monkeypatch, storage)
    wrong = real.record.prefix + "w" * (len(real.secret) - PREFIX_LEN)
    unknown = unknown_key()
    first = [await refused(auth, k) for k in (wrong, unknown)]
    assert first[0] == first[1], "the same message"
    steps = work.take()
    half = len(steps) // 2
    assert steps[:half] == steps[half:] == ["hash", "compare", "lookup", "compare"]
    for _ in range(3):
        await refused(auth, wrong)
        on_wrong = work.take()
        await refused(auth, unknown)
        assert on_wrong == work.take() == ["hash", "compare"], "repeats: from memory, one comparison"


async def test_a_revoked_key_with_its_right_secret_says_revoked_and_is_counted(
    storage: MemoryStorage,
) -> None:
    new = await stored_key(storage)
    await storage.revoke_key(new.record.id, 1.0)
    auth = Authenticator(storage)
    assert "revoked" in await refused(auth, new.secret)
    assert auth.invalid_attempts == 1


async def test_a_missing_key_is_counted_as_an_invalid_attempt(storage: MemoryStorage) -> None:
    auth = Authenticator(storage)
    with pytest.raises(AuthenticationError, match="Missing API key"):
        await auth.from_headers(None, None)
    new = await stored_key(storage)
    assert (await auth.from_headers(f"Bearer {new.secret}", None)).key_id == new.record.id
    assert auth.invalid_attempts == 1


async def test_the_negative_cache_is_bounded_and_forgets_the_oldest(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    auth = Authenticator(storage, ttl=60.0, max_refused=10)
    presented = [unknown_key() for _ in range(50)]
    for key in presented:
        await refused(auth, key)
    assert storage.calls["key_by_prefix"] == 50
    await refused(auth, presented[-1])
    assert storage.calls["key_by_prefix"] == 50, "the newest are remembered"
    await refused(auth, presented[0])
    assert storage.calls["key_by_prefix"] == 51, "the oldest were dropped"


async def test_a_flood_of_unknown_keys_does_not_push_out_valid_keys(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    new = await stored_key(storage)
    auth = Authenticator(storage, ttl=60.0, max_refused=10)
    await auth.authenticate(new.secret)
    for _ in range(500):
        await refused(auth, unknown_key())
    lookups = storage.calls["key_by_prefix"]
    assert (await auth.authenticate(new.secret)).key_id == new.record.id
    assert storage.calls["key_by_prefix"] == lookups


async def test_concurrent_first_uses_of_a_key_share_one_lookup() -> None:
    storage = SlowStorage()
    new = await stored_key(storage)
    auth = Authenticator(storage)
    principals = await asyncio.gather(*(auth.authenticate(new.secret) for _ in range(20)))
    assert {p.key_id for p in principals} == {new.record.id}
    assert storage.calls["key_by_prefix"] == 1


async def test_lookups_of_a_flood_of_random_keys_run_a_few_at_a_time() -> None:
    storage = SlowStorage()
    auth = Authenticator(storage, lookup_concurrency=3)
    results = await asyncio.gather(
        *(auth.authenticate(unknown_key()) for _ in range(30)), return_exceptions=True
    )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert storage.calls["key_by_prefix"] == 30 and storage.most_running == 3


async def test_forget_makes_a_revocation_effective_at_once(storage: MemoryStorage, clock: FakeClock) -> None:
    new = await stored_key(storage)
    auth = Authenticator(storage, ttl=60.0)
    await auth.authenticate(new.secret)
    await storage.revoke_key(new.record.id, 1.0)
    assert (await auth.authenticate(new.secret)).key_id == new.record.id, "cached: not yet seen"
    auth.forget(new.record.prefix)
    assert "revoked" in await refused(auth, new.secret)


async def test_a_revocation_elsewhere_is_seen_within_one_ttl_of_the_record_read(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    """A key first verified late in its record's cache life is trusted only until that record is ttl old."""
    new = await stored_key(storage)
    auth = Authenticator(storage, ttl=5.0)
    await refused(auth, new.record.prefix + "w" * 43)  # reads and caches the record at t=0
    await storage.revoke_key(new.record.id, 1.0)
    clock.now += 4.9
    assert (await auth.authenticate(new.secret)).key_id == new.record.id
    clock.now += 0.2
    assert "revoked" in await refused(auth, new.secret)


@pytest.mark.parametrize(
    "presented", ["tg-" + "a" * 201, "tg-abcdefgh\x00" + "a" * 40, "tg-abcdéfgh" + "a" * 40]
)
async def test_overlong_or_foreign_characters_are_refused_without_a_lookup(
    storage: MemoryStorage, presented: str
) -> None:
    auth = Authenticator(storage)
    assert "not a Tollgate key" in await refused(auth, presented)
    assert storage.calls.get("key_by_prefix", 0) == 0 and auth.invalid_attempts == 1


async def test_a_wrong_secret_checked_while_another_key_is_revoked_does_not_shut_out_the_owner() -> None:
    storage = SlowStorage()
    owner, other = await stored_key(storage, "owner"), await stored_key(storage, "other")
    auth = Authenticator(storage, ttl=60.0)
    probe = asyncio.ensure_future(auth.authenticate(owner.record.prefix + "w" * 43))
    await asyncio.sleep(0.002)  # the probe's lookup is under way
    auth.forget(other.record.prefix)  # a revocation meanwhile keeps that lookup's record out of the cache
    with pytest.raises(AuthenticationError):
        await probe
    assert (await auth.authenticate(owner.secret)).key_id == owner.record.id
