"""``tollgate``: serve, worker, batch, simulate, keys create|list|revoke, balance add|show.

Every command takes ``--config FILE`` (default: ``$TOLLGATE_CONFIG``, then the bundled example) and
``--json`` for machine-readable output.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import typer

from tollgate.accounts.keys import Principal, generate_key
from tollgate.accounts.ratelimit import limits_for
from tollgate.errors import ConfigError
from tollgate.jobs.cli import batch_app
from tollgate.settings import ServerConfig, Settings, load_settings
from tollgate.storage import AccountRecord, SqlStorage, open_storage
from tollgate.storage.base import KeyRecord

T = TypeVar("T")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Tollgate, an OpenAI-compatible LLM gateway."
)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
balance_app = typer.Typer(no_args_is_help=True, help="Show and top up account balances.")
app.add_typer(keys_app, name="keys")
app.add_typer(balance_app, name="balance")
app.add_typer(batch_app, name="batch")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AccountOpt = Annotated[
    str | None, typer.Option("--account", help="Account name (default: the default account).")
]


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _emit(as_json: bool, data: Any, text: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else text)


def _key_limits(k: KeyRecord, server: ServerConfig) -> dict[str, Any]:
    """The key's own tier and overrides (as ``GET /v1/keys`` shows them) and the limits they add up to
    under this server's tiers and ``default_tier`` (``null``: unlimited)."""
    principal = Principal(
        k.id, k.account_id, k.name, tier=k.tier, rpm=k.rpm, tpm=k.tpm, concurrency=k.concurrency
    )
    limits = limits_for(principal, server.tiers, server.default_tier)
    return {
        "tier": k.tier,
        "rate_limits": {
            "requests_per_minute": k.rpm,
            "tokens_per_minute": k.tpm,
            "concurrent_requests": k.concurrency,
        },
        "effective_tier": limits.tier,
        "effective_limits": {
            "requests_per_minute": limits.rpm,
            "tokens_per_minute": limits.tpm,
            "concurrent_requests": limits.concurrency,
        },
    }


def _limits_text(row: dict[str, Any]) -> str:
    """``tier developer: 60 rpm, 500000 tpm, 5 concurrent`` (``unlimited`` for a missing dimension)."""
    eff = row["effective_limits"]
    parts = [
        f"{eff['requests_per_minute'] or 'unlimited'} rpm",
        f"{eff['tokens_per_minute'] or 'unlimited'} tpm",
        f"{eff['concurrent_requests'] or 'unlimited'} concurrent",
    ]
    tier = row["effective_tier"]
    name = "no tier" if tier is None else f"tier {tier}{'' if row['tier'] == tier else ' (default)'}"
    return f"{name}: {', '.join(parts)}"


def _with_storage(settings: Settings, fn: Callable[[SqlStorage], Awaitable[T]]) -> T:
    async def run() -> T:
        store = open_storage(settings.database_url)
        try:
            await store.migrate()
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _account(store: SqlStorage, settings: Settings, name: str | None) -> AccountRecord:
    return await store.ensure_account(name or settings.server.default_account)


def _money(d: Decimal) -> str:
    return f"{d.normalize():f}"


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the gateway."""
    import uvicorn

    from tollgate.api.server import uvicorn_options
    from tollgate.app import create_app

    settings = _settings(config)
    typer.echo(f"tollgate: config {settings.source}, database {settings.database_url}", err=True)
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        loop="uvloop",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
        **uvicorn_options(settings.server),  # httptools, with the server's header, body and connection limits
    )


@app.command()
def worker(
    config: ConfigOpt = None,
    count: Annotated[int, typer.Option(help="Worker tasks (default: batch.workers, at least 1).")] = 0,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run batch workers alone (no HTTP): they share the jobs of the configured database with every other
    worker and gateway, on any number of machines (PostgreSQL), until interrupted."""
    import logging

    from tollgate.jobs.runtime import run_workers

    settings = _settings(config)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    n = count or max(1, settings.config.batch.workers)
    typer.echo(
        f"tollgate worker: {n} task(s), config {settings.source}, database {settings.database_url}", err=True
    )
    asyncio.run(run_workers(settings, n))


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9999,
    latency_ms: Annotated[float, typer.Option(help="Delay before each response.")] = 0,
    chunk_delay_ms: Annotated[float, typer.Option(help="Delay between stream chunks.")] = 0,
    completion_tokens: Annotated[int, typer.Option(help="Tokens per completion.")] = 20,
) -> None:
    """Run the provider simulator (an OpenAI-compatible upstream for trying Tollgate without a key)."""
    from tollgate.simulator import serve as sim_serve

    sim_serve(
        host,
        port,
        {"latency_ms": latency_ms, "chunk_delay_ms": chunk_delay_ms, "completion_tokens": completion_tokens},
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    tier: Annotated[
        str | None, typer.Option(help="Rate-limit tier (default: the server's default_tier).")
    ] = None,
    rpm: Annotated[
        int | None, typer.Option(min=1, max=2**31 - 1, help="Override: requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option(min=1, max=2**63 - 1, help="Override: tokens per minute.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=2**31 - 1, help="Override: requests in flight.")
    ] = None,
    manager: Annotated[
        bool,
        typer.Option(
            "--manager",
            help="A manager key: it may create any key on its account (other keys create only keys at most "
            "as permissive as themselves) and revoke any of the account's keys.",
        ),
    ] = False,
    account: AccountOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key. The key is printed once and stored only as a hash."""
    settings = _settings(config)
    if tier is not None and tier not in settings.server.tiers:
        raise typer.BadParameter(f"unknown tier {tier!r} (declared: {sorted(settings.server.tiers)})")

    async def run(store: SqlStorage) -> dict[str, Any]:
        acct = await _account(store, settings, account)
        new = generate_key(
            acct.id, name, tier=tier, rpm=rpm, tpm=tpm, concurrency=concurrency, manager=manager
        )
        await store.insert_key(new.record)
        return {
            "id": new.record.id,
            "key": new.secret,
            "prefix": new.record.prefix,
            "account": acct.name,
            "manager": manager,
        }

    out = _with_storage(settings, run)
    kind = "manager key" if manager else "key"
    _emit(
        as_json,
        out,
        f"Created {kind} {out['id']} ({name}) on account {out['account']}:\n\n    {out['key']}\n\n"
        "Copy it now: it is not stored and cannot be shown again.",
    )


@keys_app.command("list")
def keys_list(account: AccountOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List keys (prefix only; the secret is never stored)."""
    settings = _settings(config)

    async def run(store: SqlStorage) -> list[dict[str, Any]]:
        acct_id = None
        if account:
            found = await store.find_account(account)
            if found is None:
                return []
            acct_id = found.id
        return [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "account_id": k.account_id,
                "created_at": k.created_at,
                "revoked": k.revoked_at is not None,
                "manager": k.manager,
                **_key_limits(k, settings.server),
            }
            for k in await store.list_keys(acct_id)
        ]

    rows = _with_storage(settings, run)
    lines = [
        f"{r['id']}  {r['prefix']}…  {r['name']}  {_limits_text(r)}"
        f"{'  (manager)' if r['manager'] else ''}{'  (revoked)' if r['revoked'] else ''}"
        for r in rows
    ]
    _emit(as_json, rows, "\n".join(lines) or "no keys")


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key by id; it stops working within the server's key cache TTL (5 s by default)."""
    settings = _settings(config)
    ok = _with_storage(settings, lambda store: store.revoke_key(key_id, time.time()))
    _emit(as_json, {"id": key_id, "revoked": ok}, f"revoked {key_id}" if ok else f"no active key {key_id}")
    if not ok:
        raise typer.Exit(1)


@balance_app.command("add")
def balance_add(
    amount: str, account: AccountOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Add AMOUNT (a decimal, may be negative for a correction) to an account's balance."""
    settings = _settings(config)
    try:
        value = Decimal(amount)
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        typer.echo(f"AMOUNT must be a decimal number, e.g. 10 or 2.50; got {amount!r}", err=True)
        raise typer.Exit(2) from None

    async def run(store: SqlStorage) -> AccountRecord:
        acct = await _account(store, settings, account)
        return await store.add_balance(acct.id, value, note="cli")

    rec = _with_storage(settings, run)
    _emit(
        as_json,
        {"account": rec.name, "balance": _money(rec.balance), "spent": _money(rec.spent)},
        f"{rec.name}: balance {_money(rec.balance)} (spent {_money(rec.spent)})",
    )


@balance_app.command("show")
def balance_show(account: AccountOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show an account's balance and spend."""
    settings = _settings(config)
    rec = _with_storage(settings, lambda store: _account(store, settings, account))
    _emit(
        as_json,
        {
            "account": rec.name,
            "balance": _money(rec.balance),
            "spent": _money(rec.spent),
            "grace_buffer": _money(settings.server.grace_buffer),
        },
        f"{rec.name}: balance {_money(rec.balance)} (spent {_money(rec.spent)}, "
        f"grace buffer {_money(settings.server.grace_buffer)})",
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
