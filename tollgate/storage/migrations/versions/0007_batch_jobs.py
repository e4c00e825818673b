"""Async batch jobs: ``batch_jobs`` (one row per job) and ``batch_chunks`` (its input's chunks).

Revision ID: 0007_batch_jobs
Revises: 0006_key_manager
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_batch_jobs"
down_revision = "0006_key_manager"


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("input_key", sa.String(200), nullable=False),
        sa.Column("input_bytes", sa.BigInteger, nullable=True),
        sa.Column("requests_total", sa.Integer, nullable=True),
        sa.Column("requests_completed", sa.Integer, nullable=False),
        sa.Column("requests_failed", sa.Integer, nullable=False),
        sa.Column("estimated_tokens", sa.BigInteger, nullable=True),
        sa.Column("actual_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_units", sa.BigInteger, nullable=False),
        sa.Column("chunks_total", sa.Integer, nullable=True),
        sa.Column("chunks_done", sa.Integer, nullable=False),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("completed_at", sa.Float, nullable=True),
    )
    op.create_index("ix_batch_jobs_account_created", "batch_jobs", ["account_id", "created_at"])
    op.create_index("ix_batch_jobs_status", "batch_jobs", ["status"])
    op.create_table(
        "batch_chunks",
        sa.Column(
            "job_id",
            sa.String(40),
            sa.ForeignKey("batch_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("start_offset", sa.BigInteger, nullable=False),
        sa.Column("end_offset", sa.BigInteger, nullable=False),
        sa.Column("first_line", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_batch_chunks_status", "batch_chunks", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_table("batch_chunks")
    op.drop_table("batch_jobs")
