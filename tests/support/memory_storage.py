"""An in-memory ``Storage`` for unit tests of the accounts layer, with knobs to slow it down or make it fail."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from decimal import Decimal

from tollgate.storage.base import AccountRecord, KeyRecord, UsageRow


class MemoryStorage:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountRecord] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.usage: list[UsageRow] = []
        self.batches: list[list[UsageRow]] = []
        self.calls: dict[str, int] = {}
        # ``write_usage`` raises this, every call, while it is set.
        self.fail_writes: Exception | None = None
        # ``write_usage`` waits for this event before writing, when set.
        self.write_gate: asyncio.Event | None = None
        # ``balances`` yields to the event loop this many times first (to interleave concurrent callers).
        self.balance_delay: int = 0

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def migrate(self) -> None:
        self._count("migrate")

    async def close(self) -> None:
        self._count("close")

    # accounts
    async def ensure_account(self, name: str) -> AccountRecord:
        found = await self.find_account(name)
        if found:
            return found
        record = AccountRecord("acct_" + secrets.token_hex(8), name, Decimal(0), Decimal(0))
        self.accounts[record.id] = record
        return record

    async def get_account(self, account_id: str) -> AccountRecord | None:
        return self.accounts.get(account_id)

    async def find_account(self, name: str) -> AccountRecord | None:
        return next((a for a in self.accounts.values() if a.name == name), None)

    async def add_balance(self, account_id: str, amount: Decimal, note: str = "") -> AccountRecord:
        acct = self.accounts[account_id]
        acct = dataclasses.replace(acct, balance=acct.balance + amount)
        self.accounts[account_id] = acct
        return acct

    def set_balance(self, account_id: str, balance: Decimal) -> None:
        acct = self.accounts.get(account_id) or AccountRecord(account_id, account_id, Decimal(0), Decimal(0))
        self.accounts[account_id] = dataclasses.replace(acct, balance=balance)

    async def balances(self, account_ids: list[str]) -> dict[str, Decimal]:
        self._count("balances")
        for _ in range(self.balance_delay):
            await asyncio.sleep(0)
        return {i: self.accounts[i].balance for i in account_ids if i in self.accounts}

    # keys
    async def insert_key(self, record: KeyRecord) -> None:
        self.keys[record.id] = record

    async def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        self._count("key_by_prefix")
        return next((k for k in self.keys.values() if k.prefix == prefix), None)

    async def list_keys(self, account_id: str | None = None) -> list[KeyRecord]:
        return [k for k in self.keys.values() if account_id is None or k.account_id == account_id]

    async def revoke_key(self, key_id: str, when: float) -> bool:
        key = self.keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self.keys[key_id] = dataclasses.replace(key, revoked_at=when)
        return True

    # usage
    async def write_usage(self, rows: list[UsageRow], *, skip_committed: bool = False) -> int:
        self._count("write_usage")
        if self.write_gate is not None:
            await self.write_gate.wait()
        if self.fail_writes is not None:
            raise self.fail_writes
        stored = {r.request_id for r in self.usage} if skip_committed else set()
        batch = [r for r in rows if r.request_id not in stored]
        self.batches.append(batch)
        self.usage.extend(batch)
        for r in batch:
            if r.account_id and r.account_id in self.accounts and r.cost:
                acct = self.accounts[r.account_id]
                self.accounts[r.account_id] = dataclasses.replace(
                    acct, balance=acct.balance - r.cost, spent=acct.spent + r.cost
                )
        return len(batch)

    async def list_usage(self, limit: int = 100) -> list[UsageRow]:
        return list(reversed(self.usage))[:limit]
