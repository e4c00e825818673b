"""Tollgate's own cost per chat request, in-process: no HTTP server, no upstream socket.

    .venv/bin/python bench/pipeline.py [--requests 20000] [--stream] [--profile]

Drives the real ASGI app (``create_app``: auth, validation, routing, rate limits, reservation, settle, usage
writer on SQLite) with in-memory ``receive``/``send`` and an upstream client that answers a canned chat
completion at once (``--stream``: a 20-chunk stream, in one read), and prints CPU microseconds per request.
What ``bench/gateway.py`` measures beyond this is the HTTP server, the upstream HTTP client and the event
loop's I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tollgate.accounts.keys import generate_key  # noqa: E402
from tollgate.app import create_app  # noqa: E402
from tollgate.providers.http import HttpClient, RawResponse  # noqa: E402
from tollgate.settings import load_settings  # noqa: E402
from tollgate.storage import open_storage  # noqa: E402

BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Write one sentence about toll roads."}]}
).encode()
ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Tolls pay for roads."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 20, "total_tokens": 34},
    }
).encode()


CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "bench",
    "choices": [{"index": 0, "delta": {"content": "toll "}, "finish_reason": None}],
}
STREAM = (
    b"".join(b"data: " + json.dumps(CHUNK).encode() + b"\n\n" for _ in range(20))
    + b"data: "
    + json.dumps({**CHUNK, "choices": [], "usage": {"prompt_tokens": 14, "completion_tokens": 20}}).encode()
    + b"\n\ndata: [DONE]\n\n"
)


async def canned_post(*_: Any) -> RawResponse:
    return RawResponse(200, {"Content-Type": "application/json"}, ANSWER)


class CannedStream:
    """Stands in for an upstream streamed response: the whole 20-chunk stream in one read."""

    status = 200
    headers: dict[str, str] = {"Content-Type": "text/event-stream"}

    def __init__(self) -> None:
        self._sent = False

    def iter_any(self) -> CannedStream:
        return self

    def __aiter__(self) -> CannedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._sent:
            raise StopAsyncIteration
        self._sent = True
        return STREAM

    def close(self) -> None:
        pass


async def canned_open_stream(*_: Any) -> CannedStream:
    return CannedStream()


async def run(n: int, stream: bool, profile: bool, args_callees: list[str]) -> None:
    HttpClient.post = canned_post  # type: ignore[method-assign]
    HttpClient.open_stream = canned_open_stream  # type: ignore[method-assign, assignment]
    body = json.dumps({**json.loads(BODY), "stream": True}).encode() if stream else BODY
    with tempfile.TemporaryDirectory() as d:
        cfg = {
            "database_url": f"sqlite+aiosqlite:///{d}/bench.db",
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
        store = open_storage(settings.database_url)
        await store.migrate()
        account = await store.ensure_account("default")
        await store.add_balance(account.id, Decimal(1_000_000))
        new = generate_key(account.id, "bench")
        key = new.secret
        await store.insert_key(new.record)
        await store.close()

        app = create_app(settings)
        lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = asyncio.create_task(app({"type": "lifespan"}, lifespan_in.get, lifespan_out.put))  # type: ignore[arg-type]
        await lifespan_in.put({"type": "lifespan.startup"})
        assert (await lifespan_out.get())["type"] == "lifespan.startup.complete"

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [
                (b"authorization", f"Bearer {key}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        tails: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif message.get("body"):
                tails.append(message["body"][-14:])

        async def one() -> None:
            await app(scope, receive, send)  # type: ignore[arg-type]

        for _ in range(500):
            await one()
        profiler = cProfile.Profile() if profile else None
        c0, w0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(n):
            await one()
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        await lifespan_in.put({"type": "lifespan.shutdown"})
        await task
        assert set(statuses) == {200}, set(statuses)
        if stream:
            assert tails[-1] == b"data: [DONE]\n\n", tails[-1]
        print(f"{n} requests: {cpu / n * 1e6:.1f} us CPU, {wall / n * 1e6:.1f} us wall per request")
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats(os.environ.get("SORT", "tottime")).print_stats(30)
            for name in args_callees:
                stats.print_callees(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--stream", action="store_true", help="streamed requests (20 chunks) instead of JSON")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the measured requests")
    ap.add_argument(
        "--callees", action="append", default=[], help="with --profile: what these functions call"
    )
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args.requests, args.stream, args.profile, args.callees))


if __name__ == "__main__":
    main()
