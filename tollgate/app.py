"""``create_app(settings)``: builds every component and hangs it on ``app.state``. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from tollgate.accounts.backends import open_account_state
from tollgate.accounts.journal import Journal
from tollgate.accounts.keys import Authenticator
from tollgate.accounts.retention import RetentionPurger
from tollgate.accounts.usage import UsageWriter
from tollgate.api.asgi import GatewayApp
from tollgate.api.errors import handle_http_exception, handle_tollgate_error, handle_unexpected
from tollgate.api.routes import routes
from tollgate.errors import TollgateError
from tollgate.jobs.runtime import WorkerPool, open_objects
from tollgate.jobs.service import BatchService
from tollgate.jobs.store import JobStore
from tollgate.jobs.worker import Worker
from tollgate.local.embedder import get_embedder
from tollgate.providers.registry import build_provider
from tollgate.routing.auto.chooser import load_auto_router
from tollgate.routing.catalog import Catalog
from tollgate.routing.router import Router
from tollgate.services.billing import Billing
from tollgate.services.cache import open_cache
from tollgate.services.classification import ClassificationService
from tollgate.services.completions import CompletionService
from tollgate.services.embeddings import EmbeddingsService
from tollgate.services.request_log import RequestLogger
from tollgate.settings import Settings
from tollgate.storage import SqlStorage, Storage, open_storage
from tollgate.tokens import warm_up

log = logging.getLogger("tollgate")


def create_app(settings: Settings, storage: Storage | None = None) -> GatewayApp:
    server = settings.server

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = storage or open_storage(settings.database_url)
        await store.migrate()
        providers = {
            p.name: build_provider(p, settings.provider_keys.get(p.name)) for p in settings.config.providers
        }
        shared = open_account_state(settings, store)
        ledger = shared.ledger
        journal_dir = settings.journal_dir
        journal = None
        if journal_dir is not None:
            journal = Journal(journal_dir, settings.database_url, server.journal_fsync_interval)
            journal.open()
        writer = UsageWriter(
            store,
            ledger,
            interval=server.usage_flush_interval,
            batch_size=server.usage_batch_size,
            limit=server.usage_queue_limit,
            refresh_every=server.balance_refresh_interval,
            journal=journal,
        )
        # Rows of processes that died before writing them (kill -9, power loss): in before serving.
        await writer.recover()
        catalog = Catalog(settings.config.models, providers)
        auth = Authenticator(store, ttl=server.key_cache_ttl)
        app.state.settings = settings
        app.state.storage = store
        app.state.catalog = catalog
        app.state.writer = writer
        app.state.ledger = ledger
        billing = app.state.billing = Billing(
            ledger, writer, shared.limiter, server.tiers, server.default_tier, shared.allowance
        )
        router = Router(catalog, settings.config.routing)
        routing = settings.config.routing
        router.auto = load_auto_router(routing.auto_profile, catalog, routing.auto_cost_bias)
        app.state.completions = CompletionService(router, auth, billing, server.upstream_timeout)
        cache = app.state.completions.cache = open_cache(server, shared.redis)
        app.state.completions.request_log = RequestLogger(writer, server.log_retention_days)
        purger = app.state.purger = RetentionPurger(store, server.log_purge_interval)
        app.state.embeddings = EmbeddingsService(router, auth, billing, server.upstream_timeout)
        app.state.classification = ClassificationService(
            router, app.state.completions, store, settings.config.classification, get_embedder()
        )
        batch = settings.config.batch
        objects = open_objects(batch, settings.batch_dir())
        pool: WorkerPool | None = None
        if isinstance(store, SqlStorage):
            jobs = JobStore(store.engine)
            classification = app.state.classification
            app.state.batch = BatchService(classification, jobs, objects, batch)
            worker = Worker(jobs, objects, billing, classification.local, batch, app.state.batch.price)
            pool = WorkerPool(worker, batch.workers)
        await asyncio.to_thread(warm_up)
        writer.start()
        purger.start()
        app.state.classification.start()
        if pool is not None:
            pool.start()
        # What start-up built (modules, config, catalogs) lives as long as the process: move it out of the
        # collector's generations, so the full collections that requests' garbage triggers need not walk
        # it again (measured with bench/pipeline.py: ~15 µs a request on average).
        gc.collect()
        gc.freeze()
        log.info(
            "tollgate ready: %d models, %d providers, config %s",
            len(catalog.models),
            len(providers),
            settings.source,
        )
        try:
            yield
        finally:
            if pool is not None:
                await pool.stop()
            await objects.close()
            await purger.stop()
            await billing.drain()
            await writer.stop()
            await cache.close()
            await shared.close()
            for p in providers.values():
                await p.close()
            if storage is None:
                await store.close()

    return GatewayApp(
        Starlette(
            routes=routes(),
            lifespan=lifespan,
            exception_handlers={
                TollgateError: handle_tollgate_error,
                HTTPException: handle_http_exception,
                Exception: handle_unexpected,
            },
        ),
        settings.server.cors,
    )
