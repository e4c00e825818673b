"""Test databases: emptying a migrated one between tests (PostgreSQL's session database, shared by tests)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine


async def empty(url: str) -> None:
    """Every table emptied (children first), the schema and its migration version kept."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            meta = sa.MetaData()
            await conn.run_sync(meta.reflect)
            for table in reversed(meta.sorted_tables):
                if table.name != "alembic_version":
                    await conn.execute(table.delete())
    finally:
        await engine.dispose()
