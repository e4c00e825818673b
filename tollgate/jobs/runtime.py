"""Wiring of the batch engine: the object store the configuration names, and the worker tasks a process runs
(``tollgate serve`` runs ``batch.workers`` of them beside the API; ``tollgate worker`` runs them alone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tollgate.jobs.objects import LocalObjectStore, ObjectStore
from tollgate.jobs.worker import Worker
from tollgate.settings import BatchConfig

log = logging.getLogger("tollgate.jobs")


def open_objects(config: BatchConfig) -> ObjectStore:
    if config.storage == "s3":
        from tollgate.jobs.s3 import S3ObjectStore

        return S3ObjectStore(config)
    return LocalObjectStore(config.path)


class WorkerPool:
    """``count`` worker tasks sharing one ``Worker`` (each claims its own chunks)."""

    def __init__(self, worker: Worker, count: int) -> None:
        self.worker = worker
        self.count = count
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.worker.run(), name=f"batch-worker-{i}") for i in range(self.count)
        ]
        if self._tasks:
            log.info("%d batch worker(s) started", self.count)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
