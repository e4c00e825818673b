"""Per-request context and the result types the route layer renders."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tollgate.accounts.keys import Principal


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass(slots=True)
class RequestContext:
    endpoint: str
    authorization: str | None = None
    x_api_key: str | None = None
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    principal: Principal | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


@dataclass(slots=True)
class JsonReply:
    body: bytes
    headers: dict[str, str]
    status: int = 200


@dataclass(slots=True)
class StreamReply:
    """Frames to relay. ``abandon`` must be awaited if the frames are never iterated (client gone before
    the response started), so the request is still settled."""

    frames: AsyncIterator[bytes]
    headers: dict[str, str]
    abandon: Callable[[], Awaitable[None]]
