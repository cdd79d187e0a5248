"""changeable attributes (locks): delete_enabled, write_enabled, read_enabled and
list_enabled on repositories, manifests and tags, true for everything that exists

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("repositories", "manifests", "tags")
FLAGS = ("delete_enabled", "write_enabled", "read_enabled", "list_enabled")


def upgrade() -> None:
    # recreate="never": adding columns with a constant default needs no table rebuild,
    # and a rebuild on SQLite would drop the old table (cascading its content away).
    for table in TABLES:
        with op.batch_alter_table(table, recreate="never") as batch:
            for flag in FLAGS:
                batch.add_column(
                    sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.true())
                )


def downgrade() -> None:
    # Dropped in place (SQLite >= 3.35 has DROP COLUMN), never by rebuilding the
    # tables: a rebuild drops the old table, and its foreign keys cascade the content.
    for table in TABLES:
        for flag in reversed(FLAGS):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {flag}")
