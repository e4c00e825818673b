"""The classification pipeline (``/v1/classify``, ``/v1/tag`` and their batch forms):
authenticate → validate → resolve the saved classifier → cache lookup → admit → read the document → score →
settle.

A ``file`` (PDF or DOCX) is read only once the request is admitted, in a bounded worker process
(``classify/worker.py``, limits in ``classification.documents``), so a document nobody pays for is never
parsed. Its cache key is the file's hash, not its text. The local backend admits it for the most the
model can read of one text (``LOCAL_TOKEN_BOUND``, its ``max_seq_length``) and settles the tokens it read.
The LLM backend's calls are admitted with their text, which needs the document read first: before reading
it, the account must be able to pay for the most text it can hold (``documents.max_text_chars`` as tokens,
less for a DOCX whose ``document.xml`` is smaller) at the model's prompt price; that hold is released once
the document is read.

Two backends, chosen per saved classifier or by the operator's default (``classification.backend``):

- ``local``: the bundled sentence-embedding model (``tollgate.local.embedder``), zero-shot scoring and
  calibration in ``tollgate.classify.scoring``. Billed per input token (the model's own tokenizer) at the
  configured price of the request's priority, one usage row per request (batch included).
- ``llm``: the configured chat model through ``CompletionService.handle``, so routing, fallbacks, rate limits
  and billing are exactly chat's. A batch makes one call per text, each admitted (rate limits, balance
  reservation) and settled on its own, but the calls' rows are collected (``UsageCollector``) and the batch
  leaves one usage row under its own request id: the calls' summed tokens and cost (see
  ``billing.merged_row`` for its status and model when calls fail or differ). The calls' request logs keep
  their own ids, ``<request id>-<n>``.

Results are cached in the gateway's response cache (``services/cache.py``: in-process LRU, or Redis when
configured; TTL by the key's tier) under a key of the normalised request (``classify/cache.py``). Cache hits
cost nothing, leave a usage row marked cached, and skip rate limiting; they still carry the key's
``X-RateLimit-*`` headers as they stand (``Billing.limit_headers``, which counts nothing).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from tollgate.accounts.balances import Reservation
from tollgate.accounts.pricing import max_cost
from tollgate.classify import llm, scoring
from tollgate.classify.bounds import docx_text_bound
from tollgate.classify.cache import cache_key
from tollgate.classify.documents import PDF_MAGIC, ZIP_MAGIC
from tollgate.classify.local import LocalClassifier, multi_result
from tollgate.classify.request import (
    ClassifyRequest,
    Mode,
    Spec,
    invalid,
    parse_definition,
    parse_ref,
    parse_request,
)
from tollgate.classify.worker import DocumentWorker
from tollgate.errors import NotFoundError, TollgateError, UpstreamUnavailableError
from tollgate.local.embedder import MODEL_NAME, Embedder
from tollgate.providers.usage import Usage
from tollgate.routing.router import Router
from tollgate.services.cache import Entry, ResponseCache
from tollgate.services.completions import CompletionService, parse_json
from tollgate.services.context import JsonReply, RequestContext, UsageCollector
from tollgate.services.pipeline import Pipeline
from tollgate.settings import ClassificationConfig, Pricing
from tollgate.storage.base import ClassifierRecord, Storage
from tollgate.storage.outage import database_errors
from tollgate.tokens import count_messages

LLM_CONCURRENCY = 8
# The most tokens the local model reads of one text (all-MiniLM-L6-v2's ``max_seq_length``): what a document
# is admitted for while the model is not loaded yet.
LOCAL_TOKEN_BOUND = 256

log = logging.getLogger("tollgate.classify")


@dataclass(slots=True)
class Item:
    """One text's outcome: the wire fields (``label``/``confidence`` or ``labels``) and its counters."""

    result: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    visual_tokens: int = 0
    error: dict[str, str] | None = None
    hit: bool = False
    age: float = 0.0


def classifier_json(record: ClassifierRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "ref": f"{record.name}@v{record.version}",
        **record.definition,
        "created_at": int(record.created_at),
    }


class ClassificationService(Pipeline):
    def __init__(
        self,
        router: Router,
        completions: CompletionService,
        storage: Storage,
        config: ClassificationConfig,
        embedder: Embedder,
    ) -> None:
        super().__init__(router, completions.auth, completions.billing, completions.upstream_timeout)
        self.completions = completions
        self.storage = storage
        self.config = config
        self.embedder = embedder
        self.local = LocalClassifier(embedder)
        self.documents = DocumentWorker(config.documents)
        self._preload: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Load the local model in the background now (``classification.preload``), so the first request
        does not wait for it (≈10 s on 2 cores)."""
        if self.config.preload and self.config.backend == "local":
            self._preload = asyncio.get_running_loop().create_task(
                self._load_model(), name="classify-preload"
            )

    async def _load_model(self) -> None:
        try:
            await self.embedder.aload()
            log.info("local classification model loaded")
        except Exception:
            log.exception("could not preload the local classification model; it loads on first use")

    # saved classifiers ------------------------------------------------------------------------------------
    async def save_classifier(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        await self._authenticate(ctx)
        assert ctx.principal is not None
        name, spec = parse_definition(parse_json(raw))
        if spec.backend == "llm" and not self.config.llm_model:
            raise invalid("This server has no LLM classification model configured", "backend")
        record = await self.storage.save_classifier(
            ctx.principal.account_id, name, spec.to_json(), time.time()
        )
        return classifier_json(record)

    async def list_classifiers(self, ctx: RequestContext) -> dict[str, Any]:
        await self._authenticate(ctx)
        assert ctx.principal is not None
        records = await self.storage.list_classifiers(ctx.principal.account_id)
        return {"classifiers": [classifier_json(r) for r in records]}

    async def get_classifier(self, ctx: RequestContext, ref: str) -> dict[str, Any]:
        await self._authenticate(ctx)
        assert ctx.principal is not None
        return classifier_json(await self._load(ctx.principal.account_id, ref))

    async def _load(self, account_id: str, ref: str) -> ClassifierRecord:
        name, version = parse_ref(ref)
        with database_errors():
            record = await self.storage.get_classifier(account_id, name, version)
        if record is None:
            raise NotFoundError(f"No saved classifier '{ref}'", param="classifier")
        return record

    # classification ---------------------------------------------------------------------------------------
    async def classify(self, ctx: RequestContext, raw: bytes, *, multi: bool, batch: bool) -> JsonReply:
        settled = False
        held: list[Reservation | None] = []
        try:
            await self._authenticate(ctx)
            assert ctx.principal is not None
            req = parse_request(parse_json(raw), multi=multi, batch=batch)
            spec = await self._spec(ctx.principal.account_id, req, multi)
            backend = spec.backend or self.config.backend
            if backend == "llm" and not self.config.llm_model:
                raise UpstreamUnavailableError("This server has no LLM classification model configured")
            texts = req.texts if req.texts else [""]
            if req.file is not None:  # the document is read once admitted; until then, the request's text
                texts = ["\n\n".join(req.texts)]
            keys = [self._key(ctx, backend, spec, t, req) for t in texts]
            items: list[Item | None] = [None] * len(texts)
            for i, message in req.item_errors.items():
                items[i] = Item(error={"code": "VALIDATION_ERROR", "message": message})
            cache = self._cache(ctx) if req.cache else None
            if cache is not None:
                for i, key in enumerate(keys):
                    if items[i] is None and (entry := await cache.store.get(key)) is not None:
                        age = max(0.0, time.time() - entry.created_at)
                        items[i] = Item(result=orjson.loads(entry.body), hit=True, age=age)
            todo = [i for i, item in enumerate(items) if item is None]
            if todo and backend == "llm":
                images = list(req.images)
                if req.file is not None:
                    texts, images = await self._read_for_llm(ctx, req)
                settled = True  # the model calls settle the row (one call) or are merged into it (several)
                done = await self._llm(ctx, spec, [texts[i] for i in todo], images, batch=req.batch)
            elif todo:
                done = await self._local(ctx, req, spec, [texts[i] for i in todo], held)
                settled = True
            else:
                done = []
            for i, item in zip(todo, done, strict=True):
                items[i] = item
                if item.error is None and cache is not None:
                    entry = Entry(time.time(), False, orjson.dumps(item.result))
                    await cache.store.put(keys[i], entry, cache.ttl_for(ctx.principal))
            final = [item for item in items if item is not None]
            if not todo and not settled:
                # Served wholly from the cache: free, not rate limited, one row marked cached.
                self.billing.finish(ctx, None, status=200, cached=True, provider=backend)
                settled = True
            # A hit (or a batch admitted call by call) has no grant of its own: the headers as they stand.
            limits = ctx.grant.headers() if ctx.grant is not None else await self.billing.limit_headers(ctx)
            return self._reply(ctx, req, final, keys, limits)
        except TollgateError as err:
            if not settled:
                self._failed(ctx, held[0] if held else None, None, err)
            raise
        except asyncio.CancelledError:
            if not settled:
                self._cancelled(ctx, held[0] if held else None, None)
            raise
        except Exception as exc:
            if settled:
                raise
            raise self._unexpected(ctx, held[0] if held else None, None, exc) from None

    async def _spec(self, account_id: str, req: ClassifyRequest, multi: bool) -> Spec:
        if req.spec is not None:
            spec = req.spec
        else:
            assert req.classifier is not None
            spec = Spec.from_json((await self._load(account_id, req.classifier)).definition)
        mode: Mode = "multi" if multi else "single"
        threshold = req.threshold if req.threshold is not None else spec.threshold
        return Spec(
            spec.labels, spec.descriptions, spec.examples, spec.text_type, mode, threshold, spec.backend
        )

    async def _document_text(self, req: ClassifyRequest) -> str:
        """The request's text followed by the document's, page by page (read in a bounded worker)."""
        assert req.file is not None
        pages = await self.documents.pages(req.file)
        return "\n\n".join([*req.texts, *(p for p in pages if p)])

    async def _read_for_llm(self, ctx: RequestContext, req: ClassifyRequest) -> tuple[list[str], list[str]]:
        """The text and images of a request with a document, for the LLM backend: the request's images plus
        each page rendered, when the model takes images. Read only while the account holds, reserved, what
        the document's text could cost at most (see the module docstring)."""
        assert req.file is not None and ctx.principal is not None and self.config.llm_model is not None
        limits = self.config.documents
        chars = docx_text_bound(req.file, limits) if req.file.startswith(ZIP_MAGIC) else limits.max_text_chars
        tokens = chars + sum(len(t) for t in req.texts)
        targets = self.router.catalog.targets(self.config.llm_model)
        amount = max((max_cost(tokens, 0, t.pricing) for t in targets), default=Decimal(0))
        hold = await self.billing.ledger.reserve(ctx.principal.account_id, amount)
        try:
            texts = [await self._document_text(req)]
            images = list(req.images)
            if self._vision() and req.file.startswith((PDF_MAGIC, ZIP_MAGIC)):
                pages = await self.documents.render(req.file)
                images += ["data:image/png;base64," + base64.b64encode(p).decode() for p in pages]
        finally:
            self.billing.ledger.settle(hold, Decimal(0))
        return texts, images

    def _vision(self) -> bool:
        model = self.router.catalog.models.get(self.config.llm_model or "")
        return model is not None and "image" in model.input_modalities

    def _cache(self, ctx: RequestContext) -> ResponseCache | None:
        """The gateway's response cache (in-process, or Redis shared by replicas), when this key may use it."""
        cache = self.completions.cache
        principal = ctx.principal
        if cache is None or not cache.enabled or principal is None or not principal.cache:
            return None
        return cache

    def _key(self, ctx: RequestContext, backend: str, spec: Spec, text: str, req: ClassifyRequest) -> str:
        assert ctx.principal is not None
        return cache_key(
            {
                "kind": "classification",
                "account": ctx.principal.account_id,
                "backend": backend,
                "spec": spec.to_json(),
                "text": text,
                "images": req.images,
                "file": hashlib.sha256(req.file).hexdigest() if req.file is not None else None,
            }
        )

    # local backend ----------------------------------------------------------------------------------------
    def _price(self, req: ClassifyRequest) -> Pricing:
        return Pricing(prompt=getattr(self.config.prices, req.priority))

    async def _local(
        self,
        ctx: RequestContext,
        req: ClassifyRequest,
        spec: Spec,
        texts: list[str],
        held: list[Reservation | None],
    ) -> list[Item]:
        """Score ``texts`` and settle; the reservation is put in ``held`` so a failure can release it."""
        if req.images:
            raise invalid(
                "Images need the LLM classification backend; this server classifies locally", "image"
            )
        pricing = self._price(req)
        if req.file is not None:
            # Admitted for the most the model reads of one text, before the document is read (and before
            # the model is loaded, so a request that cannot pay never loads it).
            bound = self.embedder.max_seq_length if self.embedder.loaded else LOCAL_TOKEN_BOUND
            held.append(await self.billing.admit(ctx, [], bound, 0, pricing=pricing))
            texts = [await self._document_text(req)]
        if any(not t.strip() for t in texts):
            raise invalid("The document has no text to classify", "file")
        tokens = await self.local.count_tokens(texts)
        usage = Usage(prompt_tokens=sum(tokens))
        if req.file is not None:
            reservation = held[0]
        else:
            reservation = await self.billing.admit(ctx, [], usage.prompt_tokens, 0, pricing=pricing)
            held.append(reservation)
        results = await self.local.classify(spec, texts)
        self.billing.finish(
            ctx, reservation, status=200, model=MODEL_NAME, usage=usage, pricing=pricing, provider="local"
        )
        return [Item(result=r, tokens=n) for r, n in zip(results, tokens, strict=True)]

    # llm backend ------------------------------------------------------------------------------------------
    async def _llm(
        self, ctx: RequestContext, spec: Spec, texts: list[str], images: list[str], *, batch: bool
    ) -> list[Item]:
        """One model call per text. A lone call runs on the request's own context (its row is the
        request's); several run on child contexts whose rows are merged into one when all have settled.
        In a batch a failed call is its item's error; otherwise it is the request's."""
        model = self.config.llm_model
        assert model is not None
        # At most LLM_CONCURRENCY calls at once, and never more than the key's concurrency limit allows,
        # so a batch does not refuse its own texts with 429s.
        allowed = self.billing.limits(ctx).concurrency
        gate = asyncio.Semaphore(min(LLM_CONCURRENCY, allowed) if allowed else LLM_CONCURRENCY)
        rows = UsageCollector() if len(texts) > 1 else None

        async def one(i: int, text: str) -> Item:
            child = (
                ctx
                if rows is None
                else RequestContext(
                    endpoint=ctx.endpoint,
                    authorization=ctx.authorization,
                    x_api_key=ctx.x_api_key,
                    request_id=f"{ctx.request_id}-{i}",
                    rows=rows,
                )
            )
            body = orjson.dumps(llm.chat_body(model, spec, text, images))
            async with gate:
                reply = await self.completions.handle(child, body, parse_json)
            assert isinstance(reply, JsonReply)
            data = orjson.loads(reply.body)
            usage = data.get("usage") or {}
            tokens = int(usage.get("total_tokens") or 0)
            # Upstreams report one prompt count: what the text alone does not explain is the images' (an estimate).
            text_tokens = count_messages(orjson.loads(body)["messages"])
            visual = max(0, int(usage.get("prompt_tokens") or 0) - text_tokens) if images else 0
            if spec.mode == "single":
                label, p = llm.read_single(data, spec)
                return Item(
                    result={"label": label, "confidence": scoring.confidence(p)},
                    tokens=tokens,
                    visual_tokens=visual,
                )
            probs = llm.read_multi(data, spec)
            return Item(
                result=multi_result(spec, np.array([probs[label] for label in spec.labels])),
                tokens=tokens,
                visual_tokens=visual,
            )

        async def guarded(i: int, text: str) -> Item:
            try:
                return await one(i, text)
            except TollgateError as err:
                return Item(error={"code": err.code, "message": err.message})

        if not batch:
            return [await one(0, texts[0])]
        try:
            return list(await asyncio.gather(*(guarded(i, t) for i, t in enumerate(texts))))
        finally:
            if rows is not None:
                await self.billing.finish_collected(ctx, rows)

    # reply ------------------------------------------------------------------------------------------------
    def _reply(
        self,
        ctx: RequestContext,
        req: ClassifyRequest,
        items: list[Item],
        keys: list[str],
        limits: dict[str, str],
    ) -> JsonReply:
        latency = int(round(ctx.elapsed_ms()))
        hit = all(item.hit for item in items)
        tokens = sum(item.tokens for item in items if not item.hit)
        visual = bool(req.images or req.file is not None)
        if req.batch:
            body: dict[str, Any] = {
                "results": [
                    {
                        **(item.result if item.error is None else {}),
                        "tokens": 0 if item.hit else item.tokens,
                        "visual_tokens": 0 if item.hit else item.visual_tokens,
                        "error": item.error,
                        "cache": {"hit": item.hit},
                    }
                    for item in items
                ],
                "total_tokens": tokens,
                "latency_ms": latency,
            }
            key = hashlib.sha256("".join(keys).encode()).hexdigest()
        else:
            item = items[0]
            if item.error is not None:
                raise UpstreamUnavailableError(item.error["message"])
            body = {**item.result, "tokens": tokens}
            if visual:
                body["visual_tokens"] = 0 if item.hit else item.visual_tokens
            body.update(latency_ms=latency, cached=item.hit)
            key = keys[0]
        headers = {
            "X-Request-ID": ctx.request_id,
            "X-Cache": "HIT" if hit else "MISS",
            "X-Cache-Key": key[:16],
            "X-Tokens-Used": str(tokens),
        }
        if hit:
            headers["X-Cache-Age"] = str(int(max(item.age for item in items)))
        headers.update(limits)
        return JsonReply(orjson.dumps(body), headers)
