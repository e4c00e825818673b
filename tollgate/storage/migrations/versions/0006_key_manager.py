"""Manager keys (they may create and revoke any key of their account) and the key that created each key.

Revision ID: 0006_key_manager
Revises: 0005_key_access
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_key_manager"
down_revision = "0005_key_access"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("manager", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("created_by", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("created_by")
        batch.drop_column("manager")
