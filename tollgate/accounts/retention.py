"""The retention purge: request logs past their key's retention window are deleted on a schedule.

Every replica runs one; they do not step on each other because each batch claims its rows with
``FOR UPDATE SKIP LOCKED`` (``Storage.purge_logs``). A failed run is logged and retried next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from tollgate.storage.base import Storage

log = logging.getLogger("tollgate.retention")


class RetentionPurger:
    def __init__(self, storage: Storage, interval: float, batch: int = 1000) -> None:
        self._storage = storage
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.purged = 0

    async def run_once(self, now: float | None = None) -> int:
        """Purge everything expired by ``now``, batch by batch; the number of logs deleted."""
        at = time.time() if now is None else now
        total = 0
        while True:
            n = await self._storage.purge_logs(at, self._batch)
            total += n
            if n < self._batch:
                break
        self.purged += total
        return total

    async def _run(self) -> None:
        while True:
            try:
                n = await self.run_once()
                if n:
                    log.info("purged %d request logs past their retention", n)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention purge failed; retrying in %g s", self._interval)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tollgate-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
