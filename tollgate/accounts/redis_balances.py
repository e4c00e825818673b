"""Balances shared by several replicas: the reservation ledger lives in Redis.

Per account, one Redis hash holds integer money units:

- ``credit``: everything ever credited, read from the database as ``balance + spent``. Debits move units
  from ``balance`` to ``spent`` in one transaction, so this sum only changes with top-ups; re-reading it
  any time (before or after another replica's flush) gives the same answer.
- ``charged``: ``spent`` when the hash was created, plus every settled cost since, flushed or not.
- ``reserved``: the sum of open reservations on every replica.

``available = credit - charged - reserved``; a Lua script (``balance_scripts.py``) checks it against the
grace buffer and reserves atomically, another settles (releases the reservation, adds the cost).

**Reservations that heal.** Each reservation is an entry of its own with a deadline: Redis ``TIME`` +
``hold`` (``upstream_timeout`` + ``reservation_margin``), longer than any request may run. Every script
first releases the entries past their deadline, so what a killed replica or a lost call held comes back
within ``hold``. A reserve call that fails or is cancelled on the replica is released at once (retried
until Redis answers; a tombstone keeps a late-arriving reserve from taking the money again); a settle that
fails is retried for a while, and is idempotent (it releases its entry once). The client has a socket
timeout (``redis_timeout``): a stalled Redis refuses requests with 503 instead of holding them.

**Grace holds whatever the upstream reports.** A cost within the reservation is charged in full without
waiting (the reservation kept that much available); a cost above it is settled with a cap in the script
(``available`` stays >= ``-grace``) and the caller waits for the answer: ``settle`` returns ``None``, then
``settle_excess`` says what was charged, which is the usage row's cost.

**Reconciliation.** ``charged`` can drift from the database (a settle that never reached Redis, rows lost
in a crash). Each replica publishes, with its heartbeat and in every settle, its *in-flight* units per
account: costs settled and not yet flushed, exact from its own memory, newest value winning. Every
``reconcile_interval`` one replica (a ``SET NX PX`` lock) sets, for each account that reserved in the last
``ACTIVE_WINDOW`` seconds, ``charged`` = database ``spent`` + Σ in-flight of live replicas; the in-flight
values are read *before* the database, so a flush in between is counted twice for one interval rather than
not at all, and the correction is applied as a difference so settles in between are kept. ``reserved`` is
set to the reservations actually held. A replica silent for ``DEAD_AFTER`` seconds counts as gone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from tollgate.accounts import balance_scripts as lua
from tollgate.accounts.balances import BalanceLedger, Reservation
from tollgate.accounts.ratelimit import shared_state_unavailable
from tollgate.errors import InsufficientBalanceError
from tollgate.storage.base import Storage
from tollgate.storage.money import from_units, to_units

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("tollgate.balances")

HEARTBEAT = 1.0  # seconds between a replica's heartbeats (its in-flight units)
DEAD_AFTER = 15.0  # a replica silent this long no longer counts in reconciliation
ACTIVE_WINDOW = 600  # seconds: reconciliation looks at the accounts that reserved within it (the
# others are looked at again from their next reservation on)


class RedisBalanceLedger(BalanceLedger):
    """``BalanceLedger``'s interface with the state in Redis, so limits hold across replicas."""

    def __init__(
        self,
        storage: Storage,
        grace: Decimal,
        redis: Redis,
        prefix: str,
        *,
        hold: float = 210.0,
        retry_window: float = 15.0,
        reconcile_interval: float = 10.0,
    ) -> None:
        super().__init__(storage, grace)
        self._redis = redis
        self._root = prefix
        self._prefix = prefix + "bal:"
        self._grace_units = to_units(grace)
        self._hold_ms = int(hold * 1000)
        self._retry_window = retry_window
        self._tomb_ms = int(max(retry_window * 2, 10.0) * 1000)
        self._reconcile_interval = reconcile_interval
        self._reserve = redis.register_script(lua.RESERVE)
        self._init = redis.register_script(lua.INIT)
        self._settle = redis.register_script(lua.SETTLE)
        self._release = redis.register_script(lua.RELEASE)
        self._credit = redis.register_script(lua.CREDIT)
        self._heartbeat = redis.register_script(lua.HEARTBEAT)
        self._snapshot = redis.register_script(lua.SNAPSHOT)
        self._correct = redis.register_script(lua.CORRECT)
        self.replica = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._known: dict[str, Decimal] = {}
        self._in_flight: dict[str, int] = {}  # units settled here and not flushed yet, per account
        self._dirty: set[str] = set()  # accounts whose in-flight units changed since the last heartbeat
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: asyncio.Task[None] | None = None

    def _keys(self, account_id: str) -> list[str]:
        """The account's hash, reservations and deadlines."""
        key = self._prefix + account_id
        return [key, key + ":res", key + ":exp"]

    def _fly(self, account_id: str) -> str:
        return self._prefix + account_id + ":fly"

    async def _create(self, account_id: str) -> None:
        acct = await self._storage.get_account(account_id)
        credit, spent = (acct.balance + acct.spent, acct.spent) if acct else (Decimal(0), Decimal(0))
        bal, res, _ = self._keys(account_id)
        await self._init(
            keys=[bal, res, self._fly(account_id), self._root + "bal-accounts"],
            args=[to_units(credit), to_units(spent), account_id],
        )

    async def reserve(self, account_id: str, amount: Decimal) -> Reservation:
        if self._background is None:
            self._background = asyncio.get_running_loop().create_task(self._beat(), name="tollgate-balances")
        units = to_units(amount)
        keys = self._keys(account_id)
        rid = f"{self.replica}:{next(self._ids)}"
        args: list[int | str] = [units, self._grace_units, rid, self._hold_ms, account_id]
        try:
            call = [*keys, self._root + "bal-accounts"]
            admitted, available = (int(x) for x in await self._reserve(keys=call, args=args))
            if admitted == -1:
                await self._create(account_id)
                admitted, available = (int(x) for x in await self._reserve(keys=call, args=args))
            if admitted == 2:
                raise RedisError("the reservation was released before it was made")
        except RedisError as exc:
            self._spawn(self._retried(lambda: self._release(keys=keys, args=[rid, self._tomb_ms])))
            raise shared_state_unavailable(exc) from exc
        except BaseException:
            # Cancelled (or failed) while the call was out: it may still have reserved in Redis.
            self._spawn(self._retried(lambda: self._release(keys=keys, args=[rid, self._tomb_ms])))
            raise
        self._known[account_id] = from_units(available - (units if admitted == 1 else 0))
        if admitted != 1:
            have = from_units(available)
            raise InsufficientBalanceError(
                f"Insufficient balance: this request may cost up to {amount.normalize():f}, and the account "
                f"has {have.normalize():f} available (grace buffer {self._grace.normalize():f}). "
                "Add credit with 'tollgate balance add', or lower max_tokens."
            )
        return Reservation(account_id, amount, id=rid)

    def settle(self, reservation: Reservation, cost: Decimal) -> Decimal | None:
        if not reservation.open:
            return Decimal(0)
        if cost > reservation.amount:
            return None  # only Redis knows how much of the excess the account covers: settle_excess
        reservation.open = False
        units = to_units(cost)
        self._add_in_flight(reservation.account_id, units)
        self._spawn(self._retried(self._settle_call(reservation, units, cap=False)))
        return cost

    async def settle_excess(self, reservation: Reservation, cost: Decimal) -> Decimal:
        if not reservation.open:
            return Decimal(0)
        reservation.open = False
        account_id, units = reservation.account_id, to_units(cost)
        self._add_in_flight(account_id, units)  # the most it may charge, until Redis answers
        try:
            status, answer = (int(x) for x in await self._settle_call(reservation, units, cap=True)())
            # 1: Redis charged ``answer``; else it kept no account of it: what the reservation surely covers.
            charged = answer if status == 1 else min(units, to_units(reservation.amount))
        except RedisError:
            # Unknown: charge what the reservation surely covers; Redis gets it (or the first call) later.
            charged = to_units(min(cost, reservation.amount))
            log.warning("settle of %s failed; charging its reservation", reservation.id, exc_info=True)
            self._spawn(self._retried(self._settle_call(reservation, charged, cap=False)))
        self._add_in_flight(account_id, charged - units)
        if charged < units:
            self.uncharged.add(account_id, from_units(units - charged))
        return from_units(charged)

    def _settle_call(
        self, reservation: Reservation, units: int, *, cap: bool
    ) -> Callable[[], Awaitable[Any]]:
        account_id = reservation.account_id
        keys = [*self._keys(account_id), self._fly(account_id)]

        def call() -> Awaitable[Any]:
            args: list[int | str] = [reservation.id, units, int(cap), self._grace_units, self.replica]
            args.append(next(self._seq))
            return self._settle(keys=keys, args=[*args, self._in_flight.get(account_id, 0), self._tomb_ms])

        return call

    async def _retried(self, call: Callable[[], Awaitable[Any]]) -> None:
        """Run an idempotent script until Redis answers, for up to ``retry_window`` seconds."""
        give_up = time.monotonic() + self._retry_window
        for attempt in itertools.count():
            try:
                await call()
                return
            except RedisError:
                if time.monotonic() >= give_up:
                    log.error("Redis unreachable: gave up a balance update (its reservation expires)")
                    return
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("balance update failed", exc_info=task.exception())

    def _add_in_flight(self, account_id: str, units: int) -> None:
        self._in_flight[account_id] = max(self._in_flight.get(account_id, 0) + units, 0)
        self._dirty.add(account_id)

    def flushed(self, debits: dict[str, Decimal]) -> None:
        """The flushed costs are in the database now: no longer in flight (told Redis at the heartbeat).
        ``charged`` already counts them, from the moment they settled."""
        for account_id, amount in debits.items():
            if account_id in self._in_flight:
                self._add_in_flight(account_id, -to_units(amount))

    async def refresh(self) -> None:
        """Pick up top-ups (``credit``) for the accounts this replica has seen."""
        for account_id in list(self._known):
            acct = await self._storage.get_account(account_id)
            if acct is None:
                continue
            try:
                await self._credit(
                    keys=[self._prefix + account_id], args=[to_units(acct.balance + acct.spent)]
                )
            except RedisError:
                log.warning("Redis unreachable: top-ups not refreshed")
                return

    def available(self, account_id: str) -> Decimal | None:
        """As of this replica's last reservation for the account."""
        return self._known.get(account_id)

    async def _beat(self) -> None:
        """The heartbeat (every ``HEARTBEAT`` s) and, when this replica takes the lock, reconciliation."""
        next_reconcile = time.monotonic() + self._reconcile_interval
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.heartbeat()
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + self._reconcile_interval
                    await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "balance heartbeat or reconciliation failed; next try in %g s", HEARTBEAT, exc_info=True
                )

    async def heartbeat(self) -> None:
        """Tell Redis this replica is alive and what it holds in flight (accounts with any, or changed)."""
        accounts = sorted(self._dirty | {a for a, u in self._in_flight.items() if u})
        self._dirty.clear()
        try:
            await self._heartbeat(
                keys=[self._root + "bal-replicas", *(self._fly(a) for a in accounts)],
                args=[self.replica, next(self._seq), *(self._in_flight.get(a, 0) for a in accounts)],
            )
        except BaseException:
            self._dirty.update(accounts)
            raise
        for a in accounts:
            if not self._in_flight.get(a):
                self._in_flight.pop(a, None)

    async def reconcile(self, *, lock: bool = True) -> dict[str, Decimal]:
        """Set every account's ``charged`` to the database's ``spent`` plus what live replicas hold in
        flight; the corrections made, per account. With ``lock``, only when no other replica did within
        ``reconcile_interval``."""
        if lock:
            ms = int(self._reconcile_interval * 1000)
            if not await self._redis.set(self._root + "bal-reconcile", self.replica, nx=True, px=ms):
                return {}
        fixed: dict[str, Decimal] = {}
        seconds, _ = await self._redis.time()
        since = (seconds - ACTIVE_WINDOW) * 1000
        accounts = self._root + "bal-accounts"
        await self._redis.zremrangebyscore(accounts, "-inf", f"({since}")
        for raw in await self._redis.zrangebyscore(accounts, since, "+inf"):
            account_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            keys = [*self._keys(account_id), self._fly(account_id), self._root + "bal-replicas"]
            exists, charged, in_flight = await self._snapshot(keys=keys, args=[int(DEAD_AFTER * 1000)])
            acct = await self._storage.get_account(account_id)  # after the in-flight read: see the docstring
            if not int(exists) or acct is None:
                continue
            delta = to_units(acct.spent) + int(in_flight) - int(charged)
            await self._correct(keys=keys[:1], args=[delta, to_units(acct.balance + acct.spent)])
            if delta:
                fixed[account_id] = from_units(delta)
                log.info(
                    "account %s: charged corrected by %s", account_id, f"{from_units(delta).normalize():f}"
                )
        return fixed

    async def drain(self) -> None:
        """At shutdown, after the usage writer stopped: let updates reach Redis, say nothing is in flight."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._background is not None:
            self._background.cancel()
            self._background = None
            try:
                await self.heartbeat()
            except RedisError:
                log.warning("Redis unreachable at shutdown: this replica's in-flight costs expire with it")
