"""manifests.untagged_at: when a manifest was stored without a tag or lost its last one
(the untagged-manifest retention policy counts from it); manifests untagged already
get the migration's time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # recreate="never": a nullable column needs no rebuild (a rebuild on SQLite would
    # drop the old table, cascading its content away).
    with op.batch_alter_table("manifests", recreate="never") as batch:
        batch.add_column(sa.Column("untagged_at", sa.DateTime(timezone=True), nullable=True))
    manifests = sa.table(
        "manifests", sa.column("id"), sa.column("untagged_at", sa.DateTime(timezone=True))
    )
    tags = sa.table("tags", sa.column("manifest_id"))
    tagged = sa.exists(sa.select(sa.literal(1)).where(tags.c.manifest_id == manifests.c.id))
    op.execute(manifests.update().where(~tagged).values(untagged_at=datetime.now(UTC)))


def downgrade() -> None:
    op.execute("ALTER TABLE manifests DROP COLUMN untagged_at")
