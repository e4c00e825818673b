"""Per-key access: the models a key may use (NULL: all) and its priority label.

Revision ID: 0005_key_access
Revises: 0004_request_logs
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_key_access"
down_revision = "0004_request_logs"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("allowed_models", sa.JSON, nullable=True))
        batch.add_column(sa.Column("priority", sa.String(16), nullable=False, server_default="normal"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("priority")
        batch.drop_column("allowed_models")
