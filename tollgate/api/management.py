"""The management API (errors in the ``{error, code, message, details, docs_url}`` shape):

- ``GET /v1/keys`` · ``POST /v1/keys`` (the secret is returned once) · ``DELETE /v1/keys/{id}`` (revoke)
- ``GET /v1/balance``: balance, spent, grace buffer, free tokens left this month
- ``GET /v1/usage?start=&end=&group_by=day|model|key``: totals over a range (dates or Unix times)
- ``GET /v1/logs?limit=&before=``: request logs, newest first; bodies only where the key logged them

Key settings: ``name``, ``tier``, ``rate_limits`` ({requests_per_minute, tokens_per_minute,
concurrent_requests}: overrides of the tier), ``allowed_models`` (enforced at admission; null: every model),
``priority`` (low / normal / high: stored and reported; nothing schedules by it yet), ``cache``,
``log_inputs`` / ``log_outputs`` (both off by default) and ``retention_days`` of the logged bodies.

A key sees only its own account. The admin key (``server.admin_key``) sees every account; it names one
with ``?account=<name or id>`` (required to create a key or read a balance). What a key may create and
revoke is ``accounts/key_scope.py``'s: a plain key only keys at most as permissive as itself, and it
revokes only itself and the keys it created; the admin and manager keys (``manager: true``) any key of the
account. A revoked key stops working at once on this process, within ``server.key_cache_ttl`` on others.

Every input is bounded: integers to what the database columns hold, strings in length and free of control
characters; a value out of bounds is a 400 naming the field and its bounds.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate.accounts.key_scope import PRIORITIES, may_revoke, scoped
from tollgate.accounts.keys import PREFIX_LEN, Authenticator, generate_key, key_from_headers
from tollgate.api.http import json_response, read_request_body
from tollgate.errors import NotFoundError, PermissionDeniedError, ValidationError
from tollgate.services.billing import Billing
from tollgate.settings import Settings
from tollgate.storage.base import KeyRecord, LogEntry, Storage, UsageTotal

DAY = 86_400
MAX_PAGE = 200
GROUPS = {"day": "day", "model": "model", "key": "key_id"}
INT32 = 2**31 - 1  # PostgreSQL INTEGER columns: rpm, concurrency, retention_days
INT64 = 2**63 - 1  # BIGINT: tpm; SQLite integers
MAX_NAME = 200
MAX_MODELS = 1000
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str | None  # None: the admin, over every account
    key_id: str | None = None
    record: KeyRecord | None = None  # the calling key's own record (None: the admin)

    @property
    def admin(self) -> bool:
        return self.account_id is None


def _money(d: Decimal) -> str:
    """Money as an exact decimal string ("0.0000125", "3"), never a float."""
    return f"{d.normalize():f}"


async def _caller(request: Request) -> Caller:
    state = request.app.state
    key = key_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
    settings: Settings = state.settings
    admin = settings.server.admin_key
    if admin and hmac.compare_digest(key.encode(), admin.encode()):
        return Caller(None)
    auth: Authenticator = state.completions.auth
    principal = await auth.authenticate(key)
    store: Storage = state.storage
    record = await store.key_by_prefix(key[:PREFIX_LEN])
    if record is None or record.id != principal.key_id:
        raise NotFoundError("The key was removed while the request ran.")
    return Caller(principal.account_id, principal.key_id, record)


def _echo(v: object, at_most: int = 60) -> str:
    """A client's value quoted in a message, cut to ``at_most`` characters."""
    text = repr(v)
    return text if len(text) <= at_most else text[: at_most - 1] + "…"


def _text(v: object, name: str, at_most: int = MAX_NAME) -> str:
    """A string a client sends to be stored or matched: non-empty, at most ``at_most`` characters, and
    free of control characters (PostgreSQL refuses NUL in text)."""
    if not isinstance(v, str) or not v.strip() or len(v) > at_most or not v.isprintable():
        raise ValidationError(
            f"'{name}' must be a non-empty string of at most {at_most} printable characters "
            f"(no control characters); got {_echo(v)}.",
            param=name,
        )
    return v


async def _account_id(request: Request, caller: Caller, *, required: bool) -> str | None:
    """The account the request is about: the caller's own, or for the admin ``?account=``."""
    wanted = request.query_params.get("account")
    if not caller.admin:
        return caller.account_id
    if wanted:
        _text(wanted, "account")
    if not wanted:
        if required:
            raise ValidationError(
                "The admin key must name an account: add ?account=<name or id>.", param="account"
            )
        return None
    store: Storage = request.app.state.storage
    acct = await store.get_account(wanted) or await store.find_account(wanted)
    if acct is None:
        raise NotFoundError(f"No account {wanted!r}.", param="account")
    return acct.id


def _key_json(k: KeyRecord) -> dict[str, Any]:
    return {
        "id": k.id,
        "object": "api_key",
        "name": k.name,
        "prefix": k.prefix,
        "account_id": k.account_id,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
        "tier": k.tier,
        "rate_limits": {
            "requests_per_minute": k.rpm,
            "tokens_per_minute": k.tpm,
            "concurrent_requests": k.concurrency,
        },
        "cache": k.cache,
        "log_inputs": k.log_inputs,
        "log_outputs": k.log_outputs,
        "retention_days": k.retention_days,
        "allowed_models": None if k.allowed_models is None else list(k.allowed_models),
        "priority": k.priority,
        "manager": k.manager,
        "created_by": k.created_by,
    }


async def list_keys(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=False)
    store: Storage = request.app.state.storage
    keys = await store.list_keys(account_id)
    return json_response(orjson.dumps({"object": "list", "data": [_key_json(k) for k in keys]}))


def _opt_int(body: dict[str, Any], name: str, lo: int, hi: int, label: str | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        label = label or name
        raise ValidationError(
            f"'{label}' must be an integer from {lo} to {hi}, or null; got {_echo(v)}.", param=label
        )
    return v


def _opt_bool(body: dict[str, Any], name: str) -> bool:
    v = body[name]
    if not isinstance(v, bool):
        raise ValidationError(f"'{name}' must be true or false; got {_echo(v)}.", param=name)
    return v


KEY_FIELDS = {
    "name",
    "tier",
    "rate_limits",
    "cache",
    "log_inputs",
    "log_outputs",
    "retention_days",
    "allowed_models",
    "priority",
    "manager",
}
# ``rate_limits`` fields: the key setting each sets, and the largest value its column holds.
LIMIT_FIELDS = {
    "requests_per_minute": ("rpm", INT32),
    "tokens_per_minute": ("tpm", INT64),
    "concurrent_requests": ("concurrency", INT32),
}


def _key_settings(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The key settings the body sets (``KeySettings`` field names), each checked; fields left out are
    absent, so the caller's scope can fill them."""
    out: dict[str, Any] = {}
    if "tier" in body:
        tier = body["tier"]
        tiers = settings.server.tiers
        if tier is not None and (not isinstance(tier, str) or tier not in tiers):
            raise ValidationError(
                f"'tier' must be one of {', '.join(sorted(tiers))}, or null; got {_echo(tier)}.", param="tier"
            )
        out["tier"] = tier
    if "rate_limits" in body:
        limits = body["rate_limits"] if body["rate_limits"] is not None else {}
        if not isinstance(limits, dict) or set(limits) - set(LIMIT_FIELDS):
            raise ValidationError(
                f"'rate_limits' takes {', '.join(sorted(LIMIT_FIELDS))} (integers, or null for the tier's).",
                param="rate_limits",
            )
        for field, (setting, hi) in LIMIT_FIELDS.items():
            if field in limits:
                out[setting] = _opt_int(limits, field, 1, hi, f"rate_limits.{field}")
    for flag in ("cache", "log_inputs", "log_outputs", "manager"):
        if flag in body:
            out[flag] = _opt_bool(body, flag)
    if "retention_days" in body:
        out["retention_days"] = _opt_int(body, "retention_days", 0, 36_500)
    if "allowed_models" in body:
        models = body["allowed_models"]
        if models is not None:
            if not isinstance(models, list) or len(models) > MAX_MODELS:
                raise ValidationError(
                    f"'allowed_models' must be a list of at most {MAX_MODELS} model ids, or null for every "
                    "model.",
                    param="allowed_models",
                )
            models = tuple(dict.fromkeys(_text(m, "allowed_models") for m in models))
        out["allowed_models"] = models
    if "priority" in body:
        priority = body["priority"]
        if not isinstance(priority, str) or priority not in PRIORITIES:
            raise ValidationError(
                f"'priority' must be one of {', '.join(PRIORITIES)}; got {_echo(priority)}.", param="priority"
            )
        out["priority"] = priority
    return out


async def create_key(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=True)
    assert account_id is not None
    settings: Settings = request.app.state.settings
    raw = await read_request_body(request, settings.server.body_limit)
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    unknown = sorted(set(body) - KEY_FIELDS)
    if unknown:
        raise ValidationError(
            f"Unknown field {_echo(unknown[0])}; a key takes {', '.join(sorted(KEY_FIELDS))}.",
            param=unknown[0][:100],
        )
    name = _text(body.get("name", "default"), "name")
    chosen = scoped(_key_settings(body, settings), caller.record, settings.server)
    new = generate_key(
        account_id,
        name.strip(),
        tier=chosen.tier,
        rpm=chosen.rpm,
        tpm=chosen.tpm,
        concurrency=chosen.concurrency,
        cache=chosen.cache,
        log_inputs=chosen.log_inputs,
        log_outputs=chosen.log_outputs,
        retention_days=chosen.retention_days,
        allowed_models=chosen.allowed_models,
        priority=chosen.priority,
        manager=chosen.manager,
        created_by=caller.key_id,
    )
    store: Storage = request.app.state.storage
    await store.insert_key(new.record)
    return json_response(orjson.dumps({**_key_json(new.record), "key": new.secret}), status=201)


async def revoke_key(request: Request) -> Response:
    caller = await _caller(request)
    key_id = request.path_params["key_id"]
    store: Storage = request.app.state.storage
    account_id = await _account_id(request, caller, required=False)
    keys = await store.list_keys(account_id)
    target = next((k for k in keys if k.id == key_id), None)
    if target is None:
        raise NotFoundError(f"No key {_echo(key_id)} on this account.", param="key_id")
    if not may_revoke(caller.record, target, keys):
        raise PermissionDeniedError(
            f"This key may revoke only itself and the keys it created; revoke {key_id} with a manager key "
            "or the admin key.",
            param="key_id",
        )
    revoked = await store.revoke_key(key_id, time.time())
    auth: Authenticator = request.app.state.completions.auth
    auth.forget(target.prefix)  # at once here; other processes within their key cache TTL
    return json_response(
        orjson.dumps({"id": key_id, "object": "api_key", "revoked": True, "changed": revoked})
    )


async def get_balance(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=True)
    assert account_id is not None
    store: Storage = request.app.state.storage
    acct = await store.get_account(account_id)
    if acct is None:
        raise NotFoundError("The account no longer exists.")
    settings: Settings = request.app.state.settings
    billing: Billing = request.app.state.billing
    return json_response(
        orjson.dumps(
            {
                "object": "balance",
                "account_id": acct.id,
                "account": acct.name,
                "balance": _money(acct.balance),
                "spent": _money(acct.spent),
                "grace_buffer": _money(settings.server.grace_buffer),
                # ``null`` when no monthly free allowance is configured (``server.free_tokens_per_month``)
                "free_tokens_per_month": settings.server.free_tokens_per_month or None,
                "free_tokens_remaining": await billing.free_tokens_remaining(acct.id, time.time()),
            }
        )
    )


def _time(request: Request, name: str, default: float) -> float:
    """A Unix time or an ISO date (``YYYY-MM-DD``, midnight UTC), from 1970 to 9999."""
    v = request.query_params.get(name)
    if not v:
        return default
    when: float | None = None
    if len(v) <= 40:
        try:
            when = float(v)
        except ValueError:
            try:
                day = dt.date.fromisoformat(v)
                when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
            except ValueError:
                pass
    if when is None or not 0 <= when <= MAX_TIME:  # also NaN
        raise ValidationError(
            f"'{name}' must be a date (YYYY-MM-DD) or a Unix time from 0 to {MAX_TIME:.0f}; got {_echo(v)}.",
            param=name,
        )
    return when


def _total_json(t: UsageTotal, field: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {field: t.group} if field else {}
    out.update(
        requests=t.requests,
        cached_requests=t.cached_requests,
        prompt_tokens=t.prompt_tokens,
        completion_tokens=t.completion_tokens,
        total_tokens=t.prompt_tokens + t.completion_tokens,
        cost=_money(t.cost),
    )
    return out


async def get_usage(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=False)
    now = time.time()
    until = _time(request, "end", now)
    since = _time(request, "start", until - 30 * DAY)
    if since >= until:
        raise ValidationError("'start' must be before 'end'.", param="start")
    by = request.query_params.get("group_by", "day")
    if by not in GROUPS:
        raise ValidationError(
            f"'group_by' must be one of {', '.join(GROUPS)}; got {_echo(by)}.", param="group_by"
        )
    store: Storage = request.app.state.storage
    groups = await store.usage_totals(account_id, since, until, by)
    overall = UsageTotal(
        None,
        sum(g.requests for g in groups),
        sum(g.cached_requests for g in groups),
        sum(g.prompt_tokens for g in groups),
        sum(g.completion_tokens for g in groups),
        sum((g.cost for g in groups), Decimal(0)),
    )
    return json_response(
        orjson.dumps(
            {
                "object": "usage",
                "start": since,
                "end": until,
                "group_by": by,
                "totals": _total_json(overall, None),
                "data": [_total_json(g, GROUPS[by]) for g in groups],
            }
        )
    )


def _log_json(e: LogEntry) -> dict[str, Any]:
    u = e.usage
    return {
        "id": e.id,
        "request_id": u.request_id,
        "created_at": u.created_at,
        "account_id": u.account_id,
        "key_id": u.key_id,
        "endpoint": u.endpoint,
        "model": u.model,
        "provider": u.provider,
        "status": u.status,
        "error_code": u.error_code,
        "stream": u.stream,
        "cached": u.cached,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "cost": _money(u.cost),
        "latency_ms": round(u.latency_ms, 3),
        "input": e.input,
        "output": e.output,
    }


def _query_int(request: Request, name: str, default: int | None, hi: int) -> int | None:
    v = request.query_params.get(name)
    if v is None or v == "":
        return default
    if not (v.isascii() and v.isdigit() and len(v) <= 19) or not 1 <= int(v) <= hi:
        raise ValidationError(f"'{name}' must be an integer from 1 to {hi}; got {_echo(v)}.", param=name)
    return int(v)


async def get_logs(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=False)
    limit = _query_int(request, "limit", 50, MAX_PAGE)
    assert limit is not None
    before = _query_int(request, "before", None, INT64)
    store: Storage = request.app.state.storage
    entries = await store.list_logs(account_id, limit + 1, before)
    page = entries[:limit]
    has_more = len(entries) > limit
    return json_response(
        orjson.dumps(
            {
                "object": "list",
                "data": [_log_json(e) for e in page],
                "has_more": has_more,
                "next_before": page[-1].id if has_more else None,
            }
        )
    )
