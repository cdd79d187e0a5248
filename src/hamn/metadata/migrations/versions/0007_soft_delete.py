"""soft delete: manifests.deleted_at and repositories.deleted_at (in the recycle bin
while set), and deleted_tags (soft-deleted tags with the manifest each pointed at)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.types.TypeEngine[str]:
    # As schema.name_column: bytewise order on PostgreSQL, as SQLite sorts.
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    # recreate="never": nullable columns need no rebuild (a rebuild on SQLite would
    # drop the old table, cascading its content away).
    with op.batch_alter_table("manifests", recreate="never") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("repositories", recreate="never") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "deleted_tags",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", _name(128), nullable=False),
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_id"],
            ["manifests.id"],
            name=op.f("fk_deleted_tags_manifest_id_manifests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_deleted_tags_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "name", name=op.f("pk_deleted_tags")),
    )
    op.create_index("ix_deleted_tags_manifest_id", "deleted_tags", ["manifest_id"])


def downgrade() -> None:
    op.drop_index("ix_deleted_tags_manifest_id", table_name="deleted_tags")
    op.drop_table("deleted_tags")
    op.execute("ALTER TABLE repositories DROP COLUMN deleted_at")
    op.execute("ALTER TABLE manifests DROP COLUMN deleted_at")
