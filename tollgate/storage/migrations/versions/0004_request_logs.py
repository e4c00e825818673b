"""Request logs: the bodies a key's logging allows (inputs, outputs), purged after its retention window.

Revision ID: 0004_request_logs
Revises: 0002_key_limits
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_request_logs"
down_revision = "0002_key_limits"


def upgrade() -> None:
    op.create_table(
        "request_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("account_id", sa.String(40), nullable=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("input", sa.Text, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
    )
    op.create_index("ix_request_logs_expires", "request_logs", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_request_logs_expires", "request_logs")
    op.drop_table("request_logs")
