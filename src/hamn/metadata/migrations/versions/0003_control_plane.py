"""control plane: registry settings, principals, role assignments, scope maps,
tokens and their passwords, signing keys, and the authorisation version

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _registry_columns() -> list[sa.Column[Any]]:
    """The settings columns ``registries`` gains, with the defaults existing registries get."""
    return [
        sa.Column("sku", sa.String(length=16), nullable=False, server_default="Basic"),
        sa.Column("admin_user_enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "anonymous_pull_enabled", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
        sa.Column(
            "provisioning_state", sa.String(length=16), nullable=False, server_default="Succeeded"
        ),
        sa.Column("policies", sa.Text(), nullable=True),
        sa.Column("admin_password_hash", sa.Text(), nullable=True),
        sa.Column("admin_password2_hash", sa.Text(), nullable=True),
        sa.Column("admin_passwords_sealed", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=True),
    ]


def _name(length: int) -> sa.types.TypeEngine[str]:
    # Bytewise order on PostgreSQL too, as SQLite sorts.
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    # recreate="never": on SQLite, a batch that rebuilt ``registries`` would drop
    # the old table, and with foreign keys on that DELETEs every registry first,
    # cascading through all their content. Adding columns needs no rebuild.
    with op.batch_alter_table("registries", recreate="never") as batch:
        for column in _registry_columns():
            batch.add_column(column)
    op.execute("UPDATE registries SET updated_at = created_at")

    op.create_table(
        "principals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("name", _name(255), nullable=False),
        sa.Column("name_key", _name(255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
        sa.UniqueConstraint("name_key", name=op.f("uq_principals_name_key")),
    )
    op.create_table(
        "role_assignments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("role", _name(64), nullable=False),
        sa.Column("scope", _name(512), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_role_assignments_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_assignments")),
        sa.UniqueConstraint(
            "principal_id",
            "role",
            "scope",
            name=op.f("uq_role_assignments_principal_id_role_scope"),
        ),
    )
    op.create_index("ix_role_assignments_scope", "role_assignments", ["scope"])
    op.create_table(
        "scope_maps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column("name", _name(64), nullable=False),
        sa.Column("name_key", _name(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_scope_maps_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scope_maps")),
        sa.UniqueConstraint(
            "registry_id", "name_key", name=op.f("uq_scope_maps_registry_id_name_key")
        ),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column("name", _name(64), nullable=False),
        sa.Column("name_key", _name(64), nullable=False),
        sa.Column("scope_map_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_tokens_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["scope_map_id"],
            ["scope_maps.id"],
            name=op.f("fk_tokens_scope_map_id_scope_maps"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("registry_id", "name_key", name=op.f("uq_tokens_registry_id_name_key")),
    )
    op.create_index("ix_tokens_scope_map_id", "tokens", ["scope_map_id"])
    op.create_table(
        "token_passwords",
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expiry", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["tokens.id"],
            name=op.f("fk_token_passwords_token_id_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", "name", name=op.f("pk_token_passwords")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("signs_until", TS, nullable=False),
        sa.Column("verifies_until", TS, nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    authz_state = op.create_table(
        "authz_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authz_state")),
    )
    op.bulk_insert(authz_state, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("authz_state")
    op.drop_table("signing_keys")
    op.drop_table("token_passwords")
    op.drop_index("ix_tokens_scope_map_id", table_name="tokens")
    op.drop_table("tokens")
    op.drop_table("scope_maps")
    op.drop_index("ix_role_assignments_scope", table_name="role_assignments")
    op.drop_table("role_assignments")
    op.drop_table("principals")
    # Dropped in place (SQLite >= 3.35 has DROP COLUMN), never by rebuilding
    # ``registries``, for the reason given in upgrade().
    for column in reversed(_registry_columns()):
        op.execute(f"ALTER TABLE registries DROP COLUMN {column.name}")
