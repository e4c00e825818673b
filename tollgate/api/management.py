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
with ``?account=<name or id>`` (required to create a key or read a balance).
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

from tollgate.accounts.keys import Authenticator, generate_key, key_from_headers
from tollgate.api.http import json_response, read_request_body
from tollgate.errors import NotFoundError, ValidationError
from tollgate.services.billing import Billing
from tollgate.settings import Settings
from tollgate.storage.base import KeyRecord, LogEntry, Storage, UsageTotal

DAY = 86_400
MAX_PAGE = 200
GROUPS = {"day": "day", "model": "model", "key": "key_id"}


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str | None  # None: the admin, over every account
    key_id: str | None = None

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
    return Caller(principal.account_id, principal.key_id)


async def _account_id(request: Request, caller: Caller, *, required: bool) -> str | None:
    """The account the request is about: the caller's own, or for the admin ``?account=``."""
    wanted = request.query_params.get("account")
    if not caller.admin:
        return caller.account_id
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
    }


async def list_keys(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=False)
    store: Storage = request.app.state.storage
    keys = await store.list_keys(account_id)
    return json_response(orjson.dumps({"object": "list", "data": [_key_json(k) for k in keys]}))


def _opt_int(body: dict[str, Any], name: str, lo: int = 1) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValidationError(f"'{name}' must be an integer of at least {lo}; got {v!r}.", param=name)
    return v


def _opt_bool(body: dict[str, Any], name: str, default: bool) -> bool:
    v = body.get(name, default)
    if not isinstance(v, bool):
        raise ValidationError(f"'{name}' must be true or false; got {v!r}.", param=name)
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
}
PRIORITIES = ("low", "normal", "high")
LIMIT_FIELDS = {"requests_per_minute", "tokens_per_minute", "concurrent_requests"}


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
            f"Unknown field {unknown[0]!r}; a key takes {', '.join(sorted(KEY_FIELDS))}.", param=unknown[0]
        )
    name = body.get("name", "default")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationError("'name' must be a non-empty string of at most 200 characters.", param="name")
    tier = body.get("tier")
    if tier is not None and tier not in settings.server.tiers:
        raise ValidationError(
            f"'tier' must be one of {', '.join(sorted(settings.server.tiers))}; got {tier!r}.", param="tier"
        )
    limits = body.get("rate_limits") or {}
    if not isinstance(limits, dict) or set(limits) - LIMIT_FIELDS:
        raise ValidationError(
            f"'rate_limits' takes {', '.join(sorted(LIMIT_FIELDS))} (integers, or null for the tier's).",
            param="rate_limits",
        )
    models = body.get("allowed_models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise ValidationError(
            "'allowed_models' must be a list of model ids, or null for every model.", param="allowed_models"
        )
    priority = body.get("priority", "normal")
    if priority not in PRIORITIES:
        raise ValidationError(
            f"'priority' must be one of {', '.join(PRIORITIES)}; got {priority!r}.", param="priority"
        )
    new = generate_key(
        account_id,
        name.strip(),
        tier=tier,
        rpm=_opt_int(limits, "requests_per_minute"),
        tpm=_opt_int(limits, "tokens_per_minute"),
        concurrency=_opt_int(limits, "concurrent_requests"),
        cache=_opt_bool(body, "cache", True),
        log_inputs=_opt_bool(body, "log_inputs", False),
        log_outputs=_opt_bool(body, "log_outputs", False),
        retention_days=_opt_int(body, "retention_days", lo=0),
        allowed_models=None if models is None else tuple(dict.fromkeys(models)),
        priority=priority,
    )
    store: Storage = request.app.state.storage
    await store.insert_key(new.record)
    return json_response(orjson.dumps({**_key_json(new.record), "key": new.secret}), status=201)


async def revoke_key(request: Request) -> Response:
    caller = await _caller(request)
    key_id = request.path_params["key_id"]
    store: Storage = request.app.state.storage
    account_id = await _account_id(request, caller, required=False)
    if not any(k.id == key_id for k in await store.list_keys(account_id)):
        raise NotFoundError(f"No key {key_id!r} on this account.", param="key_id")
    revoked = await store.revoke_key(key_id, time.time())
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
    """A Unix time or an ISO date (``YYYY-MM-DD``, midnight UTC)."""
    v = request.query_params.get(name)
    if not v:
        return default
    try:
        return float(v)
    except ValueError:
        pass
    try:
        day = dt.date.fromisoformat(v)
    except ValueError:
        raise ValidationError(
            f"'{name}' must be a date (YYYY-MM-DD) or a Unix time; got {v!r}.", param=name
        ) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


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
        raise ValidationError(f"'group_by' must be one of {', '.join(GROUPS)}; got {by!r}.", param="group_by")
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


def _query_int(request: Request, name: str, default: int | None, hi: int | None = None) -> int | None:
    v = request.query_params.get(name)
    if v is None or v == "":
        return default
    if not v.isdigit() or int(v) < 1 or (hi is not None and int(v) > hi):
        bound = f" between 1 and {hi}" if hi else ""
        raise ValidationError(f"'{name}' must be a positive integer{bound}; got {v!r}.", param=name)
    return int(v)


async def get_logs(request: Request) -> Response:
    caller = await _caller(request)
    account_id = await _account_id(request, caller, required=False)
    limit = _query_int(request, "limit", 50, MAX_PAGE)
    assert limit is not None
    before = _query_int(request, "before", None)
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
