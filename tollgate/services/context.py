"""Per-request context and the result types the route layer renders."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tollgate.accounts.keys import Principal
from tollgate.accounts.ratelimit import Grant
from tollgate.storage.base import UsageRow

_PROCESS = secrets.token_hex(6)
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique per process by counter and across processes by a random per-process prefix; cheap."""
    return f"req_{_PROCESS}{next(_COUNTER):012x}"


@dataclass(slots=True)
class UsageCollector:
    """The usage rows of one client request's model calls, gathered instead of written: a batch that makes
    one call per text leaves one merged row (``Billing.finish_collected``). ``pending`` holds the settles
    still counting against the free allowance; their rows arrive when they end."""

    rows: list[UsageRow] = field(default_factory=list)
    pending: set[asyncio.Task[Any]] = field(default_factory=set)

    async def complete(self) -> list[UsageRow]:
        """Every row, once the pending settles have ended."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
        return self.rows


@dataclass(slots=True)
class RequestContext:
    endpoint: str
    authorization: str | None = None
    x_api_key: str | None = None
    cache_control: str | None = None  # the request's Cache-Control header (response cache opt-out)
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    principal: Principal | None = None
    grant: Grant | None = None  # the rate-limit admission, released when the request settles
    rows: UsageCollector | None = None  # set: this is one call of a larger request, whose row it joins
    settled: bool = False  # its usage row has been made (``Billing.finish``)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


@dataclass(slots=True)
class JsonReply:
    body: bytes
    headers: dict[str, str]
    status: int = 200


def _not_known() -> bool:
    return False


@dataclass(slots=True)
class StreamReply:
    """Frames to relay. ``abandon`` must be awaited if the frames are never iterated (client gone before
    the response started), so the request is still settled. ``last()``, asked right after a frame came,
    says it is the last one (so it can end the response in the same write); a wrapper that yields only
    what it is given, frame for frame, passes it on."""

    frames: AsyncIterator[bytes]
    headers: dict[str, str]
    abandon: Callable[[], Awaitable[None]]
    last: Callable[[], bool] = _not_known
