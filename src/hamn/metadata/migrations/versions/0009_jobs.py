"""jobs: background work (garbage collection, and later replication, builds, scans,
webhooks) that worker processes claim from the database, run once and record

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("unique_key", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", ts, nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("lease_until", ts, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("started_at", ts, nullable=True),
        sa.Column("finished_at", ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("unique_key", name="uq_jobs_unique_key"),
    )
    op.create_index("ix_jobs_state_run_at", "jobs", ["state", "run_at"])
    op.create_index("ix_jobs_state_lease_until", "jobs", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_table("jobs")
