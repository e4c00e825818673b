"""tollgate/accounts/key_scope.py: what a key may create and revoke."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tollgate.accounts.key_scope import KeySettings, descendants, excess, may_revoke, scoped
from tollgate.accounts.keys import generate_key
from tollgate.errors import PermissionDeniedError
from tollgate.settings import ServerConfig, TierConfig
from tollgate.storage.base import KeyRecord

SERVER = ServerConfig(tiers={"custom": TierConfig(rpm=100)})


def key(**settings: Any) -> KeyRecord:
    return generate_key("acct_1", "k", **settings).record


@pytest.mark.parametrize(
    ("mine", "theirs", "allowed"),
    [
        ("public", "public", True),
        ("developer", "public", True),
        ("public", "developer", False),
        ("production", "developer", True),
        ("enterprise", "production", True),  # null limits: unlimited
        ("production", "enterprise", False),
        ("custom", "public", True),  # 100 rpm, unlimited tokens and concurrency: more than public's
        ("custom", "production", False),  # 1000 rpm
        ("public", "custom", False),
        (None, "enterprise", True),  # no tier and no default tier: unlimited
        ("public", None, False),
    ],
)
def test_tiers_are_ordered_by_their_limits(mine: str | None, theirs: str | None, allowed: bool) -> None:
    gaps = excess(KeySettings(tier=theirs), KeySettings(tier=mine), SERVER)
    assert (not gaps) is allowed, gaps


def test_the_default_tier_counts_for_keys_without_one() -> None:
    server = ServerConfig(default_tier="public")
    assert excess(KeySettings(), KeySettings(tier="public"), server) == {}
    assert "rate_limits" in excess(KeySettings(tier="developer"), KeySettings(), server)


def test_overrides_narrow_a_tier_and_are_compared_per_dimension() -> None:
    parent = KeySettings(tier="public")  # 30 rpm, 150,000 tpm, 2 concurrent
    assert excess(KeySettings(tier="developer", rpm=30, tpm=150_000, concurrency=2), parent, SERVER) == {}
    gaps = excess(KeySettings(tier="public", rpm=31), parent, SERVER)
    assert "requests_per_minute 31 > 30" in gaps["rate_limits"]


@pytest.mark.parametrize(
    ("child", "field"),
    [
        (KeySettings(allowed_models=None), "allowed_models"),
        (KeySettings(allowed_models=("a", "c")), "allowed_models"),
        (KeySettings(log_inputs=True), "log_inputs"),
        (KeySettings(log_outputs=True), "log_outputs"),
        (KeySettings(cache=True), "cache"),
        (KeySettings(priority="high"), "priority"),
        (KeySettings(manager=True), "manager"),
    ],
)
def test_each_field_is_no_broader_than_the_creators(child: KeySettings, field: str) -> None:
    parent = KeySettings(allowed_models=("a", "b"), cache=False, priority="normal")
    child = dataclasses.replace(child, cache=child.cache and field == "cache")
    assert field in excess(child, parent, SERVER)


def test_retention_counts_only_when_the_new_key_logs() -> None:
    parent = KeySettings(log_inputs=True, retention_days=3)
    assert excess(KeySettings(retention_days=90), parent, SERVER) == {}
    assert "retention_days" in excess(KeySettings(log_inputs=True, retention_days=4), parent, SERVER)
    assert "retention_days" in excess(KeySettings(log_inputs=True), parent, SERVER), "server default is 30"


def test_a_plain_key_fills_left_out_fields_from_its_own_scope() -> None:
    creator = key(tier="public", allowed_models=("sim-small",), cache=False, priority="low")
    made = scoped({}, creator, SERVER)
    assert made == KeySettings(tier="public", allowed_models=("sim-small",), cache=False, priority="low")
    narrower = scoped({"rpm": 10}, creator, SERVER)
    assert (narrower.tier, narrower.rpm) == ("public", 10)


def test_a_left_out_tier_becomes_an_override_where_only_overrides_limit_the_creator() -> None:
    creator = key(rpm=5)  # no tier: unlimited but for 5 requests a minute
    made = scoped({}, creator, SERVER)
    assert (made.tier, made.rpm, made.tpm, made.concurrency) == (None, 5, None, None)


def test_a_plain_key_asking_for_more_is_refused_naming_each_field() -> None:
    creator = key(tier="public", allowed_models=("sim-small",))
    with pytest.raises(PermissionDeniedError) as info:
        scoped({"tier": "enterprise", "allowed_models": None, "log_inputs": True}, creator, SERVER)
    message = info.value.message
    assert "'rate_limits'" in message and "'allowed_models'" in message and "'log_inputs'" in message
    assert "requests_per_minute unlimited > 30" in message and "sim-small" in message
    assert info.value.status == 403 and info.value.param == "rate_limits"


def test_the_admin_and_managers_create_any_key() -> None:
    wanted = {"tier": "enterprise", "manager": True, "log_inputs": True}
    assert scoped(wanted, None, SERVER).manager
    assert scoped(wanted, key(tier="public", manager=True), SERVER).tier == "enterprise"
    assert scoped({}, key(tier="public", manager=True), SERVER) == KeySettings(), "defaults, not inherited"


def test_a_plain_key_revokes_itself_and_its_descendants_only() -> None:
    owner = key()
    child = dataclasses.replace(key(), created_by=owner.id)
    grandchild = dataclasses.replace(key(), created_by=child.id)
    sibling = key()
    manager = key(manager=True)
    keys = [owner, child, grandchild, sibling, manager]
    assert descendants(owner.id, keys) == {child.id, grandchild.id}
    assert may_revoke(owner, owner, keys) and may_revoke(owner, grandchild, keys)
    assert not may_revoke(owner, sibling, keys) and not may_revoke(child, owner, keys)
    assert may_revoke(manager, owner, keys) and may_revoke(None, manager, keys)
