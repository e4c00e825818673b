"""The storage interface every backend implements; callers never branch on the backend."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    name: str
    balance: Decimal
    spent: Decimal


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    account_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: float
    revoked_at: float | None
    # Rate limits: the key's tier (``None``: the server's default tier) and overrides of its limits.
    tier: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    # Response cache opt-out; request logging (bodies only when allowed) kept ``retention_days`` days.
    cache: bool = True
    log_inputs: bool = False
    log_outputs: bool = False
    retention_days: int | None = None
    # Access: the public model ids the key may use (``None``: every model); a priority label.
    allowed_models: tuple[str, ...] | None = None
    priority: str = "normal"
    # A manager key may create and revoke any key of its account; ``created_by``: the key that created it.
    manager: bool = False
    created_by: str | None = None


@dataclass(slots=True)
class UsageRow:
    """One client request, whatever the number of upstream attempts."""

    request_id: str
    endpoint: str
    status: int
    latency_ms: float
    created_at: float
    account_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    estimated: bool = False
    cached: bool = False
    attempts: int = 0
    ttft_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ClassifierRecord:
    """One version of a saved classifier; ``definition`` is ``classify.request.Spec.to_json()``."""

    account_id: str
    name: str
    version: int
    definition: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class RequestLog:
    """The bodies of one request, as far as its key's logging allows; ``expires_at`` ends its retention."""

    request_id: str
    account_id: str | None
    key_id: str | None
    created_at: float
    expires_at: float | None
    input: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request for ``GET /v1/logs``: its usage row, and its bodies where they were logged."""

    id: int
    usage: UsageRow
    input: str | None
    output: str | None


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """Usage summed over one group (a UTC day ``YYYY-MM-DD``, a model or a key id)."""

    group: str | None
    requests: int
    cached_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


class Storage(Protocol):
    async def migrate(self) -> None: ...
    async def close(self) -> None: ...

    async def ensure_account(self, name: str) -> AccountRecord: ...
    async def get_account(self, account_id: str) -> AccountRecord | None: ...
    async def find_account(self, name: str) -> AccountRecord | None: ...
    async def add_balance(self, account_id: str, amount: Decimal, note: str = "") -> AccountRecord: ...
    async def balances(self, account_ids: list[str]) -> dict[str, Decimal]: ...

    async def insert_key(self, record: KeyRecord) -> None: ...
    async def key_by_prefix(self, prefix: str) -> KeyRecord | None: ...
    async def list_keys(self, account_id: str | None = None) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id: str, when: float) -> bool: ...

    async def write_usage(self, rows: list[UsageRow], *, skip_committed: bool = False) -> int:
        """Insert rows and debit each account by their cost, atomically, in one transaction; returns how many
        were inserted. The rows must fit their columns (``storage.bounds.bound_row``). ``skip_committed``:
        leave out (and do not debit) rows whose request id is already stored, for retried and replayed
        batches."""
        ...

    async def list_usage(self, limit: int = 100) -> list[UsageRow]: ...

    async def usage_totals(
        self, account_id: str | None, since: float, until: float, by: str
    ) -> list[UsageTotal]:
        """Totals of rows created in ``[since, until)``, grouped ``by`` "day", "model" or "key";
        ``account_id=None``: every account."""
        ...

    async def write_logs(self, logs: list[RequestLog]) -> None: ...

    async def list_logs(
        self, account_id: str | None, limit: int = 50, before: int | None = None
    ) -> list[LogEntry]:
        """Newest first; ``before``: only entries with a smaller id (the previous page's last id)."""
        ...

    async def purge_logs(self, now: float, batch: int = 1000) -> int:
        """Delete up to ``batch`` request logs past their retention; safe to run on many workers at once
        (rows are claimed with ``FOR UPDATE SKIP LOCKED`` where the database has it). Returns the count."""
        ...

    async def save_classifier(
        self, account_id: str, name: str, definition: dict[str, Any], when: float
    ) -> ClassifierRecord:
        """Store the next version of the account's classifier ``name`` (1 for a new name)."""
        ...

    async def get_classifier(
        self, account_id: str, name: str, version: int | None = None
    ) -> ClassifierRecord | None:
        """That version, or the latest when ``version`` is ``None``."""
        ...

    async def list_classifiers(self, account_id: str) -> list[ClassifierRecord]:
        """The latest version of each of the account's classifiers, by name."""
        ...
