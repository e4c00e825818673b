"""Least privilege for keys: a key creates only keys at most as permissive as itself.

The admin key (``server.admin_key``) and manager keys (``manager: true``) may create any key on their account
(only they may create manager keys) and revoke any of its keys. Any other key is a *plain* key: what it
creates stays within its own scope, field by field, and it may revoke only itself and the keys it created
(and theirs, down the line).

A plain key's new key is within its scope when

- its rate limits are no higher in any dimension: requests per minute, tokens per minute and requests in
  flight, each the key's tier (or the server's ``default_tier``) with its own overrides on top, unlimited
  where neither sets one. Tiers are ordered by these limits, nothing else: a custom tier whose limits are
  null is unlimited, so only a key unlimited in that dimension may hand it out;
- ``allowed_models`` is a subset of the creator's (a creator limited to some models cannot create a key for
  every model);
- it logs nothing the creator does not (``log_inputs``, ``log_outputs``), and when it logs, it keeps the
  bodies no longer than the creator (``retention_days``, the server's ``log_retention_days`` when null);
- it uses the response cache only if the creator does (``cache``);
- its ``priority`` is no higher (low < normal < high);
- it is not a manager.

Fields a plain key leaves out of the request get the default when that is within its scope, and the
creator's own value where the default would exceed it (a key limited to one model creates keys limited to
that model; without a ``tier``, the creator's tier and limits). A field it sets beyond its scope is refused
with a 403 that names each field and its bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tollgate.accounts.keys import Principal
from tollgate.accounts.ratelimit import Limits, limits_for
from tollgate.errors import PermissionDeniedError
from tollgate.settings import ServerConfig
from tollgate.storage.base import KeyRecord

PRIORITIES = ("low", "normal", "high")
LIMIT_NAMES = {"rpm": "requests_per_minute", "tpm": "tokens_per_minute", "concurrency": "concurrent_requests"}


@dataclass(frozen=True, slots=True)
class KeySettings:
    """What a new key may be given (``POST /v1/keys``); the defaults are a new key's."""

    tier: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    cache: bool = True
    log_inputs: bool = False
    log_outputs: bool = False
    retention_days: int | None = None
    allowed_models: tuple[str, ...] | None = None
    priority: str = "normal"
    manager: bool = False


def settings_of(record: KeyRecord) -> KeySettings:
    return KeySettings(
        tier=record.tier,
        rpm=record.rpm,
        tpm=record.tpm,
        concurrency=record.concurrency,
        cache=record.cache,
        log_inputs=record.log_inputs,
        log_outputs=record.log_outputs,
        retention_days=record.retention_days,
        allowed_models=record.allowed_models,
        priority=record.priority,
        manager=record.manager,
    )


def privileged(record: KeyRecord | None) -> bool:
    """The admin (no key record) or a manager key."""
    return record is None or record.manager


def limits(s: KeySettings, server: ServerConfig) -> Limits:
    principal = Principal("", "", "", tier=s.tier, rpm=s.rpm, tpm=s.tpm, concurrency=s.concurrency)
    return limits_for(principal, server.tiers, server.default_tier)


def _at_most(value: int | None, bound: int | None) -> bool:
    """``None`` is unlimited."""
    return bound is None or (value is not None and value <= bound)


def _shown(v: int | None) -> str:
    return "unlimited" if v is None else str(v)


def excess(child: KeySettings, parent: KeySettings, server: ServerConfig) -> dict[str, str]:
    """Where ``child`` is more permissive than ``parent``: field -> what to fix (empty: within scope)."""
    out: dict[str, str] = {}
    have, want = limits(parent, server), limits(child, server)
    over = [
        f"{name} {_shown(getattr(want, dim))} > {_shown(getattr(have, dim))}"
        for dim, name in LIMIT_NAMES.items()
        if not _at_most(getattr(want, dim), getattr(have, dim))
    ]
    if over:
        out["rate_limits"] = (
            f"its limits exceed this key's own ({'; '.join(over)}): choose a tier and 'rate_limits' no "
            "higher than this key's"
        )
    if parent.allowed_models is not None:
        mine = set(parent.allowed_models)
        extra = sorted(set(child.allowed_models or ()) - mine)
        if child.allowed_models is None or extra:
            named = "every model" if child.allowed_models is None else ", ".join(extra[:20])
            out["allowed_models"] = (
                f"it would allow {named}: 'allowed_models' must list only models this key may use "
                f"({', '.join(sorted(mine)[:20]) or 'none'}{' …' if len(mine) > 20 else ''})"
            )
    for flag in ("log_inputs", "log_outputs", "cache"):
        if getattr(child, flag) and not getattr(parent, flag):
            out[flag] = f"this key has '{flag}' false, so the new key must too"
    if child.log_inputs or child.log_outputs:
        days = server.log_retention_days
        mine_days = parent.retention_days if parent.retention_days is not None else days
        new_days = child.retention_days if child.retention_days is not None else days
        if new_days > mine_days:
            out["retention_days"] = f"the new key would keep logs {new_days} days: at most {mine_days}"
    if PRIORITIES.index(child.priority) > PRIORITIES.index(parent.priority):
        out["priority"] = f"'priority' may be at most {parent.priority!r}, this key's own"
    if child.manager and not parent.manager:
        out["manager"] = "only the admin key or a manager key may create a manager key"
    return out


def scoped(given: Mapping[str, Any], creator: KeyRecord | None, server: ServerConfig) -> KeySettings:
    """The new key's settings: ``given`` (the fields the request set) over the defaults, or for a plain
    creator over the defaults narrowed to its scope; raises ``PermissionDeniedError`` when a field it set
    exceeds that scope."""
    wanted = replace(KeySettings(), **given)
    if privileged(creator):
        return wanted
    assert creator is not None
    parent = settings_of(creator)
    # Fields left out: the creator's own value wherever the default would exceed its scope.
    # A tier the request names is taken as asked (and refused if it exceeds); without one, the creator's
    # tier, then its limits as overrides in the dimensions the request left out.
    if "tier" not in given and "rate_limits" in excess(wanted, parent, server):
        wanted = replace(wanted, tier=parent.tier)
        have, want = limits(parent, server), limits(wanted, server)
        for dim in LIMIT_NAMES:
            if dim not in given and not _at_most(getattr(want, dim), getattr(have, dim)):
                wanted = replace(wanted, **{dim: getattr(have, dim)})
    gaps = excess(wanted, parent, server)
    for name in ("allowed_models", "cache", "retention_days", "priority"):
        if name in gaps and name not in given:
            wanted = replace(wanted, **{name: getattr(parent, name)})
    refused = excess(wanted, parent, server)
    if refused:
        first = next(iter(refused))
        raise PermissionDeniedError(
            "This key may create only keys at most as permissive as itself (a manager key or the admin key "
            "may create any): " + "; ".join(f"'{f}': {why}" for f, why in refused.items()) + ".",
            param=first,
        )
    return wanted


def descendants(key_id: str, keys: list[KeyRecord]) -> set[str]:
    """The ids of the keys ``key_id`` created, and those they created, down the line."""
    children: dict[str, list[str]] = {}
    for k in keys:
        if k.created_by is not None:
            children.setdefault(k.created_by, []).append(k.id)
    out: set[str] = set()
    todo = [key_id]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def may_revoke(caller: KeyRecord | None, target: KeyRecord, keys: list[KeyRecord]) -> bool:
    """The admin and managers revoke any key of the account; a plain key itself and its descendants."""
    if privileged(caller):
        return True
    assert caller is not None
    return target.id == caller.id or target.id in descendants(caller.id, keys)
