"""The thinnest possible pass-through proxy (raw ASGI on uvicorn + one aiohttp session): the floor that
bench/gateway.py measures Tollgate against. No auth, no validation, no accounting.

    python bench/min_proxy.py UPSTREAM_URL PORT
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

UPSTREAM = sys.argv[1]
session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global session
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                session = aiohttp.ClientSession()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await session.close()  # type: ignore[union-attr]
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    assert session is not None
    async with session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"}) as r:
        ctype = r.headers.get("Content-Type", "application/json").encode()
        await send({"type": "http.response.start", "status": r.status, "headers": [(b"content-type", ctype)]})
        if ctype.startswith(b"text/event-stream"):
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": await r.read()})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[2]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
