"""Per-key settings: rate-limit tier and overrides, response cache opt-out, request logging (inputs and
outputs, both off by default) and its retention.

Revision ID: 0002_key_limits
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_key_limits"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("tier", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rpm", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tpm", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("concurrency", sa.Integer, nullable=True))
        batch.add_column(sa.Column("cache", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("log_inputs", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("log_outputs", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("retention_days", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("retention_days")
        batch.drop_column("log_outputs")
        batch.drop_column("log_inputs")
        batch.drop_column("cache")
        batch.drop_column("concurrency")
        batch.drop_column("tpm")
        batch.drop_column("rpm")
        batch.drop_column("tier")
