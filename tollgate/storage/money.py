"""Money is ``Decimal`` in code and an integer count of 1e-10 units in the database (exact on every backend)."""

from decimal import ROUND_HALF_EVEN, Decimal

SCALE = 10**10
QUANTUM = Decimal(1).scaleb(-10)


def to_units(amount: Decimal) -> int:
    return int((amount * SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_units(units: int) -> Decimal:
    return (Decimal(units) / SCALE).quantize(QUANTUM)


def round_money(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
