"""registry usage: per registry, how many manifests reference each blob, and the bytes
of the distinct blobs referenced (show-usage's Size, the quota), filled from what exists

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_blob_refs",
        sa.Column(
            "registry_id",
            sa.Integer(),
            sa.ForeignKey("registries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("digest", sa.String(length=140), primary_key=True),
        sa.Column("refs", sa.Integer(), nullable=False),
    )
    op.create_table(
        "registry_usage",
        sa.Column(
            "registry_id",
            sa.Integer(),
            sa.ForeignKey("registries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
    )
    # What exists already: one reference per (manifest, blob), summed per registry.
    op.execute(
        "INSERT INTO registry_blob_refs (registry_id, digest, refs) "
        "SELECT r.registry_id, mb.digest, COUNT(*) FROM manifest_blobs mb "
        "JOIN manifests m ON m.id = mb.manifest_id "
        "JOIN repositories r ON r.id = m.repository_id "
        "GROUP BY r.registry_id, mb.digest"
    )
    op.execute(
        "INSERT INTO registry_usage (registry_id, bytes) "
        "SELECT g.id, COALESCE((SELECT SUM(b.size) FROM registry_blob_refs x "
        "JOIN blobs b ON b.digest = x.digest WHERE x.registry_id = g.id), 0) "
        "FROM registries g"
    )


def downgrade() -> None:
    op.drop_table("registry_usage")
    op.drop_table("registry_blob_refs")
