"""Balances on one process: reserve before the upstream call, settle after it.

The database holds each account's balance and is debited by the usage writer in the same transaction as
the usage rows. In memory we keep, per account, the last balance read from the database, the cost of
rows settled but not yet flushed, and the sum of open reservations. Everything runs on the event loop, so
each operation is atomic without locks.

``available = db_balance - unflushed - reserved``; a reservation is refused when it would take
``available`` below ``-grace``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tollgate.errors import InsufficientBalanceError
from tollgate.storage.base import Storage


@dataclass(slots=True)
class _Account:
    db_balance: Decimal
    unflushed: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)

    @property
    def available(self) -> Decimal:
        return self.db_balance - self.unflushed - self.reserved


@dataclass(slots=True)
class Reservation:
    account_id: str
    amount: Decimal
    open: bool = True


class BalanceLedger:
    def __init__(self, storage: Storage, grace: Decimal) -> None:
        self._storage = storage
        self._grace = grace
        self._accounts: dict[str, _Account] = {}

    async def _load(self, account_id: str) -> _Account:
        acct = self._accounts.get(account_id)
        if acct is None:
            balances = await self._storage.balances([account_id])
            acct = self._accounts.setdefault(account_id, _Account(balances.get(account_id, Decimal(0))))
        return acct

    async def reserve(self, account_id: str, amount: Decimal) -> Reservation:
        acct = await self._load(account_id)
        if acct.available < -self._grace or acct.available - amount < -self._grace:
            raise InsufficientBalanceError(
                f"Insufficient balance: this request may cost up to {amount.normalize():f}, and the account "
                f"has {acct.available.normalize():f} available (grace buffer {self._grace.normalize():f}). "
                "Add credit with 'tollgate balance add', or lower max_tokens."
            )
        acct.reserved += amount
        return Reservation(account_id, amount)

    def settle(self, reservation: Reservation, cost: Decimal) -> None:
        """Release the reservation and hold the actual cost until the usage writer flushes it."""
        if not reservation.open:
            return
        reservation.open = False
        acct = self._accounts[reservation.account_id]
        acct.reserved -= reservation.amount
        acct.unflushed += cost

    def flushed(self, debits: dict[str, Decimal]) -> None:
        """The writer committed these debits: move them from ``unflushed`` into the known balance."""
        for account_id, amount in debits.items():
            acct = self._accounts.get(account_id)
            if acct is not None:
                acct.unflushed -= amount
                acct.db_balance -= amount

    async def refresh(self) -> None:
        """Re-read balances (top-ups made by the CLI or another process). Called by the writer between
        flushes, so no debit is ever in flight while the balance is read."""
        if not self._accounts:
            return
        fresh = await self._storage.balances(list(self._accounts))
        for account_id, balance in fresh.items():
            self._accounts[account_id].db_balance = balance

    def available(self, account_id: str) -> Decimal | None:
        acct = self._accounts.get(account_id)
        return None if acct is None else acct.available
