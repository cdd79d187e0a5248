"""leases: named, expiring locks that every process on the database shares (a blob's
digest lock and an upload's writer on object storage, the garbage collector's turn)

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


def downgrade() -> None:
    op.drop_table("leases")
