"""What an invalid API key costs Tollgate, in-process: time per refusal, database lookups, usage rows.

    .venv/bin/python bench/auth.py [--requests 1000] [--database-url postgresql+asyncpg://...]

Drives the real ASGI app (``create_app``) with in-memory ``receive``/``send``, like ``bench/pipeline.py``,
and sends ``--requests`` chat requests of each kind:

- ``valid``: the right key (for comparison);
- ``wrong secret``: a real key's prefix with a wrong secret (the prefix cached by the valid requests);
- ``unknown, repeated``: one key whose prefix matches no key, sent again and again;
- ``unknown, fresh``: a new unknown prefix every request (nothing cached can answer it);
- ``wrong secret, fresh``: real prefixes never presented before, with wrong secrets.

For each it prints the median and p90 wall time of one request, the database key lookups it caused
(``key_by_prefix`` calls) and the usage rows it left in the database. The two "fresh" rows and the
"wrong secret" vs "unknown, repeated" rows are the timing oracle: a key's prefix should not change the
work a refusal takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tollgate.accounts.keys import PREFIX_LEN, generate_key  # noqa: E402
from tollgate.app import create_app  # noqa: E402
from tollgate.settings import load_settings  # noqa: E402
from tollgate.storage import open_storage  # noqa: E402

BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def run(n: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        url = database_url or f"sqlite+aiosqlite:///{d}/bench.db"
        cfg = {
            "database_url": url,
            "server": {"usage_flush_interval": 0.02},
            "providers": [
                {"name": "sim", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}
            ],
            "models": [
                {
                    "id": "bench",
                    "pricing": {"prompt": "0.0000001", "completion": "0.0000002"},
                    "deployments": [{"provider": "sim", "model": "bench"}],
                }
            ],
        }
        path = Path(d) / "bench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        settings = load_settings(str(path), environ={})
        store = open_storage(url)
        await store.migrate()
        account = await store.ensure_account("bench-auth-" + secrets.token_hex(4))
        await store.add_balance(account.id, Decimal(1_000_000))
        main = generate_key(account.id, "bench")
        await store.insert_key(main.record)
        spares = [generate_key(account.id, f"spare{i}") for i in range(n)]
        for s in spares:
            await store.insert_key(s.record)
        await store.close()

        app = create_app(settings)
        lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = asyncio.create_task(app({"type": "lifespan"}, lifespan_in.get, lifespan_out.put))  # type: ignore[arg-type]
        await lifespan_in.put({"type": "lifespan.startup"})
        assert (await lifespan_out.get())["type"] == "lifespan.startup.complete"
        storage = app.state.storage
        lookups = 0
        real_lookup = storage.key_by_prefix

        async def counted(prefix: str) -> Any:
            nonlocal lookups
            lookups += 1
            return await real_lookup(prefix)

        storage.key_by_prefix = counted

        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def one(key: str) -> float:
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v1/chat/completions",
                "headers": [
                    (b"authorization", f"Bearer {key}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode()),
                ],
            }
            t = time.perf_counter()
            await app(scope, receive, send)  # type: ignore[arg-type]
            return time.perf_counter() - t

        def fresh_unknown() -> str:
            return "tg-" + secrets.token_urlsafe(32)

        tail = "x" * (len(main.secret) - PREFIX_LEN)
        spare_iter = iter(spares)
        kinds: list[tuple[str, Any, int | None]] = [
            ("valid", lambda: main.secret, None),
            ("wrong secret", lambda: main.record.prefix + tail, 401),
            ("unknown, repeated", (lambda k: lambda: k)(fresh_unknown()), 401),
            ("unknown, fresh", fresh_unknown, 401),
            ("wrong secret, fresh", lambda: next(spare_iter).record.prefix + tail, 401),
        ]
        rows_before = await usage_count(url)
        print(f"{n} requests of each kind, database {url.split(':', 1)[0]}")
        print(f"{'kind':22} {'median':>9} {'p90':>9} {'lookups':>8} {'status':>7}")
        for name, make, want in kinds:
            statuses.clear()
            lookups = 0
            times = [await one(make()) for _ in range(n)]
            got = set(statuses)
            assert want is None or got == {want}, (name, got)
            times.sort()
            print(
                f"{name:22} {statistics.median(times) * 1e3:7.3f}ms {times[int(n * 0.9)] * 1e3:7.3f}ms "
                f"{lookups:8d} {','.join(map(str, sorted(got))):>7}"
            )
        auth = app.state.completions.auth
        await lifespan_in.put({"type": "lifespan.shutdown"})
        await task
        rows = await usage_count(url) - rows_before
        print(f"usage rows written for {5 * n} requests ({n} valid): {rows}")
        print(f"invalid attempts counted: {getattr(auth, 'invalid_attempts', 'n/a')}")


async def usage_count(url: str) -> int:
    store = open_storage(url)
    try:
        return len(await store.list_usage(1_000_000))
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args.requests, args.database_url))


if __name__ == "__main__":
    main()
