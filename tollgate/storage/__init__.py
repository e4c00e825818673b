"""Persistent state behind one interface (``Storage``); SQLite by default, PostgreSQL by URL."""

from tollgate.storage.base import AccountRecord, ClassifierRecord, KeyRecord, Storage, UsageRow
from tollgate.storage.sql import SqlStorage, open_storage

__all__ = [
    "AccountRecord",
    "ClassifierRecord",
    "KeyRecord",
    "SqlStorage",
    "Storage",
    "UsageRow",
    "open_storage",
]
