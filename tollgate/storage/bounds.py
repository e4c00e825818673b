"""What a usage row may hold: the one place where every field is bounded to its column.

A row carries values a client chose (the model name it asked for, at least): before the row is journaled or
stored, strings lose NUL bytes and unpaired surrogates (PostgreSQL and UTF-8 refuse both) and are cut to their
column's width; integers are clamped to their column type's range (``Integer`` is int32 on PostgreSQL); the
cost to what ``cost_units`` (int64) holds. No value a client sends can then make the database refuse a row.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer, String

from tollgate.storage.base import UsageRow
from tollgate.storage.money import SCALE, from_units
from tollgate.storage.tables import usage

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

_FIELDS = {f.name for f in dataclasses.fields(UsageRow)}
_STRINGS: list[tuple[str, int]] = []
_INTEGERS: list[tuple[str, int, int]] = []
for _column in usage.columns:
    if _column.name not in _FIELDS:
        continue
    if isinstance(_column.type, String) and _column.type.length is not None:
        _STRINGS.append((_column.name, _column.type.length))
    elif isinstance(_column.type, BigInteger):
        _INTEGERS.append((_column.name, *INT64))
    elif isinstance(_column.type, Integer):
        _INTEGERS.append((_column.name, *INT32))
MAX_COST = from_units(INT64[1]) - Decimal(1)  # leaves room for a few rows' sum in an account's debit
assert MAX_COST * SCALE < INT64[1]


def bounded_text(value: str, width: int) -> str:
    """``value`` without NUL bytes or unpaired surrogates, at most ``width`` characters."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode(errors="replace").decode()
    return value[:width]


def bound_row(row: UsageRow) -> UsageRow:
    """``row`` itself when every field fits its column (the usual case: no copy), else a bounded copy."""
    changes: dict[str, Any] = {}
    for name, width in _STRINGS:
        value = getattr(row, name)
        if value is not None and (len(value) > width or "\x00" in value or not value.isascii()):
            fitted = bounded_text(value, width)
            if fitted != value:
                changes[name] = fitted
    for name, low, high in _INTEGERS:
        number = getattr(row, name)
        if not low <= number <= high:
            changes[name] = min(max(number, low), high)
    if not -MAX_COST <= row.cost <= MAX_COST:
        changes["cost"] = min(max(row.cost, -MAX_COST), MAX_COST)
    return dataclasses.replace(row, **changes) if changes else row
