"""Balances shared by several replicas: the reservation ledger lives in Redis.

Per account, one Redis hash holds integer money units:

- ``credit``: everything ever credited, read from the database as ``balance + spent``. Debits move units
  from ``balance`` to ``spent`` in one transaction, so this sum only changes with top-ups; re-reading it
  any time (before or after another replica's flush) gives the same answer.
- ``charged``: ``spent`` when the hash was created, plus every settled cost since, flushed or not.
- ``reserved``: the sum of open reservations on every replica.

``available = credit - charged - reserved``; a Lua script checks it against the grace buffer and reserves
atomically, another settles (releases the reservation, adds the cost). Nothing here waits on the usage
writer: a row's debit is counted in ``charged`` from the moment it settles, on whichever replica.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from tollgate.accounts.balances import BalanceLedger, Reservation
from tollgate.accounts.ratelimit import shared_state_unavailable
from tollgate.errors import InsufficientBalanceError
from tollgate.storage.base import Storage
from tollgate.storage.money import from_units, to_units

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("tollgate.balances")

# KEYS: account hash. ARGV: amount, grace. Returns {admitted 1/0, available before, or -1: no hash yet}.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local v = redis.call('HMGET', KEYS[1], 'credit', 'charged', 'reserved')
local available = tonumber(v[1]) - tonumber(v[2]) - tonumber(v[3])
local amount, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
if available < -grace or available - amount < -grace then return {0, available} end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
return {1, available}
"""

# KEYS: account hash. ARGV: credit, spent. Creates the hash unless another replica did first.
_INIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'credit', ARGV[1], 'charged', ARGV[2], 'reserved', 0)
end
return 1
"""

# KEYS: account hash. ARGV: reserved amount to release, actual cost.
_SETTLE = """
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'charged', tonumber(ARGV[2]))
return 1
"""

# KEYS: account hash. ARGV: credit.
_CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'credit', ARGV[1]) end
return 1
"""


class RedisBalanceLedger(BalanceLedger):
    """``BalanceLedger``'s interface with the state in Redis, so limits hold across replicas."""

    def __init__(self, storage: Storage, grace: Decimal, redis: Redis, prefix: str) -> None:
        super().__init__(storage, grace)
        self._redis = redis
        self._prefix = prefix + "bal:"
        self._grace_units = to_units(grace)
        self._reserve = redis.register_script(_RESERVE)
        self._init = redis.register_script(_INIT)
        self._settle = redis.register_script(_SETTLE)
        self._credit = redis.register_script(_CREDIT)
        self._known: dict[str, Decimal] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _key(self, account_id: str) -> str:
        return self._prefix + account_id

    async def _create(self, account_id: str) -> None:
        acct = await self._storage.get_account(account_id)
        credit, spent = (acct.balance + acct.spent, acct.spent) if acct else (Decimal(0), Decimal(0))
        await self._init(keys=[self._key(account_id)], args=[to_units(credit), to_units(spent)])

    async def reserve(self, account_id: str, amount: Decimal) -> Reservation:
        units = to_units(amount)
        key = self._key(account_id)
        try:
            admitted, available = (
                int(x) for x in await self._reserve(keys=[key], args=[units, self._grace_units])
            )
            if admitted == -1:
                await self._create(account_id)
                admitted, available = (
                    int(x) for x in await self._reserve(keys=[key], args=[units, self._grace_units])
                )
        except RedisError as exc:
            raise shared_state_unavailable(exc) from exc
        self._known[account_id] = from_units(available - (units if admitted == 1 else 0))
        if admitted != 1:
            have = from_units(available)
            raise InsufficientBalanceError(
                f"Insufficient balance: this request may cost up to {amount.normalize():f}, and the account "
                f"has {have.normalize():f} available (grace buffer {self._grace.normalize():f}). "
                "Add credit with 'tollgate balance add', or lower max_tokens."
            )
        return Reservation(account_id, amount)

    def settle(self, reservation: Reservation, cost: Decimal) -> None:
        if not reservation.open:
            return
        reservation.open = False
        task = asyncio.get_running_loop().create_task(
            self._settle(
                keys=[self._key(reservation.account_id)], args=[to_units(reservation.amount), to_units(cost)]
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("balance settle failed", exc_info=task.exception())

    def flushed(self, debits: dict[str, Decimal]) -> None:
        """Debits are counted in ``charged`` when they settle; the flush changes nothing here."""

    async def refresh(self) -> None:
        """Pick up top-ups (``credit``) for the accounts this replica has seen."""
        for account_id in list(self._known):
            acct = await self._storage.get_account(account_id)
            if acct is not None:
                await self._credit(keys=[self._key(account_id)], args=[to_units(acct.balance + acct.spent)])

    def available(self, account_id: str) -> Decimal | None:
        """As of this replica's last reservation for the account."""
        return self._known.get(account_id)

    async def drain(self) -> None:
        """Wait for settles still on their way to Redis (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
