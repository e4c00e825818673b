"""tollgate/accounts/balances.py: reserve before the call, settle after, never overspend past the grace."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.support.memory_storage import MemoryStorage
from tollgate.accounts.balances import BalanceLedger
from tollgate.errors import InsufficientBalanceError

D = Decimal
ACCT = "acct_a"


def storage_with(balance: str, account_id: str = ACCT) -> MemoryStorage:
    storage = MemoryStorage()
    storage.set_balance(account_id, D(balance))
    return storage


async def test_reserve_holds_the_amount() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D(0))
    reservation = await ledger.reserve(ACCT, D("0.3"))
    assert reservation.account_id == ACCT and reservation.amount == D("0.3") and reservation.open
    assert ledger.available(ACCT) == D("0.7")


async def test_balance_is_read_once_then_kept_in_memory() -> None:
    storage = storage_with("1")
    ledger = BalanceLedger(storage, grace=D(0))
    for _ in range(5):
        await ledger.reserve(ACCT, D("0.1"))
    assert storage.calls["balances"] == 1


async def test_unknown_account_has_zero_balance() -> None:
    ledger = BalanceLedger(MemoryStorage(), grace=D(0))
    await ledger.reserve("acct_new", D(0))
    assert ledger.available("acct_new") == D(0)
    with pytest.raises(InsufficientBalanceError):
        await ledger.reserve("acct_new", D("0.0000000001"))


def test_available_of_an_account_never_seen_is_none() -> None:
    assert BalanceLedger(MemoryStorage(), grace=D(0)).available("acct_x") is None


async def test_reservation_up_to_the_whole_balance_is_allowed() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D(0))
    await ledger.reserve(ACCT, D(1))
    assert ledger.available(ACCT) == D(0)


async def test_reservation_beyond_the_balance_is_402_with_a_helpful_message() -> None:
    ledger = BalanceLedger(storage_with("0.5"), grace=D("0.1"))
    with pytest.raises(InsufficientBalanceError) as info:
        await ledger.reserve(ACCT, D("0.6000000001"))
    err = info.value
    assert err.status == 402
    assert err.code == "INSUFFICIENT_BALANCE"
    assert "may cost up to 0.6000000001" in err.message
    assert "has 0.5 available" in err.message
    assert "grace buffer 0.1" in err.message
    assert "tollgate balance add" in err.message
    assert ledger.available(ACCT) == D("0.5"), "a refused reservation holds nothing"


async def test_grace_buffer_lets_the_balance_go_slightly_negative() -> None:
    ledger = BalanceLedger(storage_with("0.5"), grace=D("0.1"))
    await ledger.reserve(ACCT, D("0.6"))
    assert ledger.available(ACCT) == D("-0.1")
    with pytest.raises(InsufficientBalanceError):
        await ledger.reserve(ACCT, D("0.0000000001"))
    await ledger.reserve(ACCT, D(0))  # exactly at -grace: a free request still passes


async def test_account_already_below_the_grace_is_refused_even_for_free_requests() -> None:
    ledger = BalanceLedger(storage_with("-2"), grace=D("1"))
    with pytest.raises(InsufficientBalanceError, match="has -2 available"):
        await ledger.reserve(ACCT, D(0))


async def test_settle_replaces_the_reservation_by_the_actual_cost() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D(0))
    reservation = await ledger.reserve(ACCT, D("0.5"))
    ledger.settle(reservation, D("0.1234567891"))
    assert not reservation.open
    assert ledger.available(ACCT) == D("0.8765432109")


async def test_settle_twice_counts_once() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D(0))
    reservation = await ledger.reserve(ACCT, D("0.5"))
    ledger.settle(reservation, D("0.2"))
    ledger.settle(reservation, D("0.2"))
    assert ledger.available(ACCT) == D("0.8")


async def test_a_cost_above_the_reservation_is_charged_while_the_balance_covers_it() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D(0))
    reservation = await ledger.reserve(ACCT, D("0.1"))
    assert ledger.settle(reservation, D("0.7")) == D("0.7")
    assert ledger.available(ACCT) == D("0.3")
    assert ledger.uncharged.amount == 0


async def test_a_cost_past_the_grace_is_charged_only_down_to_minus_the_grace() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D("0.2"))
    reservation = await ledger.reserve(ACCT, D("0.1"))
    assert ledger.settle(reservation, D("1.5")) == D("1.2")
    assert ledger.available(ACCT) == D("-0.2")
    assert (ledger.uncharged.amount, ledger.uncharged.requests) == (D("0.3"), 1)
    assert ledger.uncharged.by_account == {ACCT: D("0.3")}
    with pytest.raises(InsufficientBalanceError):
        await ledger.reserve(ACCT, D("0.0000000001"))


async def test_concurrent_over_reported_costs_never_pass_the_grace_and_spare_honest_requests() -> None:
    ledger = BalanceLedger(storage_with("1"), grace=D("0.1"))
    honest = await ledger.reserve(ACCT, D("0.3"))
    greedy = [await ledger.reserve(ACCT, D("0.1")) for _ in range(8)]
    charged = [ledger.settle(r, D("5")) for r in greedy]  # each upstream reports 50 x what was reserved
    # The honest request's reservation was never eaten into: it is charged in full.
    assert ledger.settle(honest, D("0.3")) == D("0.3")
    assert sum(c for c in charged if c is not None) == D("0.8")
    assert ledger.available(ACCT) == D("-0.1")


async def test_flushed_moves_cost_from_unflushed_into_the_balance() -> None:
    storage = storage_with("1")
    ledger = BalanceLedger(storage, grace=D(0))
    reservation = await ledger.reserve(ACCT, D("0.5"))
    ledger.settle(reservation, D("0.25"))
    # the writer commits the row (debiting the database) and then reports the debit
    storage.set_balance(ACCT, D("0.75"))
    ledger.flushed({ACCT: D("0.25")})
    assert ledger.available(ACCT) == D("0.75")
    await ledger.refresh()
    assert ledger.available(ACCT) == D("0.75"), "refresh after a flush counts the debit once"


def test_flushed_ignores_accounts_the_ledger_never_loaded() -> None:
    ledger = BalanceLedger(MemoryStorage(), grace=D(0))
    ledger.flushed({"acct_other": D(1)})
    assert ledger.available("acct_other") is None


async def test_refresh_picks_up_top_ups_and_keeps_open_reservations() -> None:
    storage = storage_with("1")
    ledger = BalanceLedger(storage, grace=D(0))
    open_res = await ledger.reserve(ACCT, D("0.4"))
    settled = await ledger.reserve(ACCT, D("0.4"))
    ledger.settle(settled, D("0.1"))  # not flushed yet: still unflushed after the refresh
    await storage.add_balance(ACCT, D(10))  # e.g. 'tollgate balance add' from another process
    await ledger.refresh()
    assert ledger.available(ACCT) == D("11") - D("0.4") - D("0.1")
    ledger.settle(open_res, D(0))
    assert ledger.available(ACCT) == D("10.9")


async def test_refresh_with_no_accounts_does_not_touch_storage() -> None:
    storage = MemoryStorage()
    await BalanceLedger(storage, grace=D(0)).refresh()
    assert storage.calls.get("balances", 0) == 0


async def test_concurrent_reservations_cannot_overspend() -> None:
    storage = storage_with("1")
    storage.balance_delay = 3  # every caller reaches storage before the first one has its answer
    ledger = BalanceLedger(storage, grace=D(0))
    results = await asyncio.gather(
        *(ledger.reserve(ACCT, D("0.03")) for _ in range(100)), return_exceptions=True
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 33
    assert all(isinstance(e, InsufficientBalanceError) for e in refused)
    assert ledger.available(ACCT) == D("0.01")


async def test_concurrent_reservations_stay_within_the_grace() -> None:
    storage = storage_with("0.5")
    storage.balance_delay = 3
    ledger = BalanceLedger(storage, grace=D("0.25"))
    results = await asyncio.gather(
        *(ledger.reserve(ACCT, D("0.1")) for _ in range(100)), return_exceptions=True
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    assert len(granted) == 7
    available = ledger.available(ACCT)
    assert available is not None and D("-0.25") <= available < D("-0.15")
