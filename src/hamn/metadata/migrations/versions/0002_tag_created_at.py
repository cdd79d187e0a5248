"""tags.created_at: when a tag was first pushed (ACR's tag createdTime)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    # Tags pushed before this version: the best known creation time is the last update.
    op.execute("UPDATE tags SET created_at = updated_at")
    with op.batch_alter_table("tags") as batch:
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.drop_column("created_at")
