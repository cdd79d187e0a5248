"""leases: named, expiring locks that every process on the database shares (a blob's
digest lock and an upload's writer on object storage, the garbage collector's turn);
sign_in_failures: failed sign-ins per key and time window, counted across processes

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column(
            "name",
            sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql"),
            primary_key=True,
        ),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("window", sa.BigInteger(), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_index("ix_sign_in_failures_window", "sign_in_failures", ["window"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_window", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_table("leases")
