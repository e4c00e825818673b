"""Telling a database outage from a defect.

When the database cannot be reached (refused or reset connections, a pool or connect timeout, a connection
that dropped mid-query), every request that needs it fails the same way. Those failures become one
``DatabaseUnavailableError`` (503 with ``Retry-After``), logged in one line per request rather than a
traceback each; every other exception is left as it is, a defect to be logged in full::

    with database_errors():
        record = await storage.key_by_prefix(prefix)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa

from tollgate.errors import DatabaseUnavailableError, TollgateError

log = logging.getLogger("tollgate.storage")

_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # a connect timeout (asyncio's TimeoutError is this one)
    sa.OperationalError,
    sa.InterfaceError,
    sa.DisconnectionError,
    sa.TimeoutError,  # the connection pool's
)
try:
    import asyncpg  # type: ignore[import-untyped]

    _OUTAGES += (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)
except ImportError:  # SQLite-only installs
    pass


def outage(exc: BaseException) -> DatabaseUnavailableError | None:
    """The 503 for ``exc`` (or for what caused it) when it is the database being unreachable, else ``None``."""
    seen: BaseException | None = exc
    for _ in range(5):  # the exception, the driver's error it wraps, and their causes
        if seen is None:
            return None
        invalidated = isinstance(seen, sa.DBAPIError) and seen.connection_invalidated
        if invalidated or isinstance(seen, _OUTAGES):
            detail = str(seen).strip().splitlines()[0][:200] if str(seen).strip() else ""
            log.warning("database unavailable: %s%s", type(seen).__name__, f": {detail}" if detail else "")
            return DatabaseUnavailableError(
                f"The gateway's database is unavailable; retry shortly. ({type(seen).__name__})"
            )
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return None


@contextmanager
def database_errors() -> Iterator[None]:
    """Re-raise a database outage inside the block as ``DatabaseUnavailableError``."""
    try:
        yield
    except TollgateError:
        raise
    except Exception as exc:
        err = outage(exc)
        if err is None:
            raise
        raise err from None
