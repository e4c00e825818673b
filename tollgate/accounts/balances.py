"""Balances on one process: reserve before the upstream call, settle after it.

The database holds each account's balance and is debited by the usage writer in the same transaction as
the usage rows. In memory we keep, per account, the last balance read from the database, the cost of
rows settled but not yet flushed, and the sum of open reservations. Everything runs on the event loop, so
each operation is atomic without locks.

``available = db_balance - unflushed - reserved``; a reservation is refused when it would take
``available`` below ``-grace``.

**Grace holds whatever the upstream reports.** Admission can only estimate a request's cost; an upstream
may report more (images, tools, or simply more tokens than sent). Settling charges the cost in full up to
what the request reserved (always possible: its reservation kept that much available), and beyond that only
as far as ``available`` stays at or above ``-grace``; the rest is not charged, the usage row's cost is what
was charged, and the shortfall is counted in ``uncharged`` (shown by ``/healthz``). So concurrent requests
of one account, whatever their upstreams report, never take it below ``-grace``.

Reservations live in memory: nothing survives a restart, and every path of a request (success, failure,
cancellation) settles its reservation exactly once (``Reservation.open``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from tollgate.errors import InsufficientBalanceError
from tollgate.storage.base import Storage

log = logging.getLogger("tollgate.balances")


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
    id: str = ""  # names the reservation in Redis (``RedisBalanceLedger``)


@dataclass(slots=True)
class Uncharged:
    """Costs reported by upstreams that the accounts could not cover within the grace buffer."""

    amount: Decimal = Decimal(0)
    requests: int = 0
    by_account: dict[str, Decimal] = field(default_factory=dict)

    def add(self, account_id: str, amount: Decimal) -> None:
        self.amount += amount
        self.requests += 1
        self.by_account[account_id] = self.by_account.get(account_id, Decimal(0)) + amount
        log.warning(
            "account %s: %s of a request's reported cost not charged (beyond its balance and grace buffer)",
            account_id,
            f"{amount.normalize():f}",
        )

    def to_json(self) -> dict[str, str | int]:
        return {"amount": f"{self.amount.normalize():f}", "requests": self.requests}


class BalanceLedger:
    def __init__(self, storage: Storage, grace: Decimal) -> None:
        self._storage = storage
        self._grace = grace
        self._accounts: dict[str, _Account] = {}
        self.uncharged = Uncharged()

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

    def settle(self, reservation: Reservation, cost: Decimal) -> Decimal | None:
        """Release the reservation and charge the cost, held until the usage writer flushes it; returns
        what was charged: ``cost``, or less when it would take the account below ``-grace`` (see the
        module's docstring). A reservation settles once; settling it again charges nothing.

        ``None`` only from a ledger whose state is shared (Redis): the cost exceeds the reservation and
        only the shared state can say how much of it the account covers; ``settle_excess`` says."""
        if not reservation.open:
            return Decimal(0)
        reservation.open = False
        acct = self._accounts[reservation.account_id]
        acct.reserved -= reservation.amount
        charged = cost
        if cost > reservation.amount:  # within it, the reservation kept the cost available
            charged = min(cost, max(acct.available + self._grace, Decimal(0)))
            if charged < cost:
                self.uncharged.add(reservation.account_id, cost - charged)
        acct.unflushed += charged
        return charged

    async def settle_excess(self, reservation: Reservation, cost: Decimal) -> Decimal:
        """``settle`` for a cost above the reservation, when ``settle`` returned ``None``."""
        charged = self.settle(reservation, cost)
        assert charged is not None
        return charged

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
