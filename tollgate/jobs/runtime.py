"""Wiring of the batch engine: the object store the configuration names, and the worker tasks a process runs
(``tollgate serve`` runs ``batch.workers`` of them beside the API; ``tollgate worker`` runs them alone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from tollgate.accounts.backends import open_account_state
from tollgate.accounts.usage import UsageWriter
from tollgate.classify.local import LocalClassifier
from tollgate.jobs.objects import LocalObjectStore, ObjectStore
from tollgate.jobs.store import JobStore
from tollgate.jobs.worker import Worker
from tollgate.local.embedder import get_embedder
from tollgate.services.billing import Billing
from tollgate.settings import BatchConfig, Settings
from tollgate.storage import open_storage

log = logging.getLogger("tollgate.jobs")


def open_objects(config: BatchConfig, root: Path | None = None) -> ObjectStore:
    """The batch files' store; ``root``: the local directory (``Settings.batch_dir``)."""
    if config.storage == "s3":
        from tollgate.jobs.s3 import S3ObjectStore

        return S3ObjectStore(config)
    return LocalObjectStore(root or config.path or "tollgate-batch")


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


async def run_workers(settings: Settings, count: int, stop: asyncio.Event | None = None) -> None:
    """``tollgate worker``: ``count`` workers and nothing else (no HTTP), until ``stop`` is set."""
    server = settings.server
    store = open_storage(settings.database_url)
    await store.migrate()
    shared = open_account_state(settings, store)
    writer = UsageWriter(store, shared.ledger, refresh_every=server.balance_refresh_interval)
    billing = Billing(
        shared.ledger, writer, shared.limiter, server.tiers, server.default_tier, shared.allowance
    )
    batch = settings.config.batch
    objects = open_objects(batch, settings.batch_dir())
    worker = Worker(
        JobStore(store.engine),
        objects,
        billing,
        LocalClassifier(get_embedder()),
        batch,
        settings.config.classification.prices.batch,
    )
    pool = WorkerPool(worker, count)
    writer.start()
    pool.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await pool.stop()
        await billing.drain()
        await writer.stop()
        await objects.close()
        await shared.close()
        await store.close()
