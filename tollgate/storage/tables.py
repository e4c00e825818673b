"""SQLAlchemy Core tables; the migrations in ``migrations/versions`` create exactly these."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("balance_units", BigInteger, nullable=False, default=0),
    Column("spent_units", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("key_hash", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    # 0002: rate-limit tier and per-key overrides (NULL: from the tier)
    Column("tier", String(64), nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", BigInteger, nullable=True),
    Column("concurrency", Integer, nullable=True),
    # 0002: response cache opt-out; request logging (bodies only when allowed) and its retention
    Column("cache", Boolean, nullable=False, server_default=true()),
    Column("log_inputs", Boolean, nullable=False, server_default=false()),
    Column("log_outputs", Boolean, nullable=False, server_default=false()),
    Column("retention_days", Integer, nullable=True),
    # 0005: the models the key may use (NULL: all) and its priority label
    Column("allowed_models", JSON, nullable=True),
    Column("priority", String(16), nullable=False, server_default="normal"),
    # 0006: manager keys (create and revoke any key of the account) and the key that created each key
    Column("manager", Boolean, nullable=False, server_default=false()),
    Column("created_by", String(40), nullable=True),
)

balance_events = Table(
    "balance_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("amount_units", BigInteger, nullable=False),
    Column("note", String(200), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("account_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(200), nullable=True),
    Column("provider", String(100), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cost_units", BigInteger, nullable=False, default=0),
    Column("estimated", Boolean, nullable=False, default=False),
    Column("cached", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)
Index("ix_usage_account_created", usage.c.account_id, usage.c.created_at)

# 0003: saved classifiers, one row per version
classifiers = Table(
    "classifiers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("account_id", "name", "version", name="uq_classifiers_account_name_version"),
)

request_logs = Table(
    "request_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("account_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("input", Text, nullable=True),
    Column("output", Text, nullable=True),
)
Index("ix_request_logs_expires", request_logs.c.expires_at)

# 0007: async batch jobs (``tollgate/jobs``): one row per job, one per newline-aligned chunk of its input
batch_jobs = Table(
    "batch_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("input_key", String(200), nullable=False),
    Column("input_bytes", BigInteger, nullable=True),
    Column("requests_total", Integer, nullable=True),
    Column("requests_completed", Integer, nullable=False, default=0),
    Column("requests_failed", Integer, nullable=False, default=0),
    Column("estimated_tokens", BigInteger, nullable=True),
    Column("actual_tokens", BigInteger, nullable=False, default=0),
    Column("cost_units", BigInteger, nullable=False, default=0),
    Column("chunks_total", Integer, nullable=True),  # NULL until the input has been split
    Column("chunks_done", Integer, nullable=False, default=0),
    Column("lease_token", String(40), nullable=True),  # who is splitting the input
    Column("lease_until", Float, nullable=True),
    Column("error", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("completed_at", Float, nullable=True),
)
Index("ix_batch_jobs_account_created", batch_jobs.c.account_id, batch_jobs.c.created_at)
Index("ix_batch_jobs_status", batch_jobs.c.status)

batch_chunks = Table(
    "batch_chunks",
    metadata,
    Column("job_id", String(40), ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("start_offset", BigInteger, nullable=False),
    Column("end_offset", BigInteger, nullable=False),
    Column("first_line", BigInteger, nullable=False),  # 1-based number of the chunk's first line
    Column("lines", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | running | done
    Column("lease_token", String(40), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("completed", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("tokens", BigInteger, nullable=False, default=0),
)
Index("ix_batch_chunks_status", batch_chunks.c.status, batch_chunks.c.lease_until)
