"""tollgate/accounts/keys.py: key generation, header parsing and the caching authenticator."""

from __future__ import annotations

import dataclasses
import hashlib
import re
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
