"""Alembic environment: migrations always run on a connection handed over by ``storage.migrate``."""

from alembic import context

from tollgate.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tollgate (tollgate.storage.migrate.upgrade)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
