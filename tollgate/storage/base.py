"""The storage interface every backend implements; callers never branch on the backend."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


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

    async def write_usage(self, rows: list[UsageRow]) -> None:
        """Insert rows and debit each account by their cost, atomically, in one transaction."""
        ...

    async def list_usage(self, limit: int = 100) -> list[UsageRow]: ...
