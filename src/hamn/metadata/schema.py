"""The metadata schema (SQLAlchemy Core). Migrations in ``migrations/`` create it.

Tables:
- ``registries``: one row per registry; ``name_key`` is the lower-cased name.
- ``repositories``: per registry; created on first content.
- ``blobs``: every stored blob once (digest, size); bytes live in the blob driver.
- ``repository_blobs``: which repositories may serve a blob (links, as in Distribution).
- ``manifests``: per repository, with their bytes, media type and subject.
- ``manifest_blobs`` / ``manifest_children``: what a manifest references (GC, usage, checks).
- ``tags``: tag -> manifest, per repository.
- ``deleted_tags``: soft-deleted tags (the recycle bin), the manifest each pointed at.
- ``uploads``: blob upload sessions and their acknowledged offset.

Repositories, manifests (per repository) and tags carry ACR's changeable
attributes (``delete_enabled``, ``write_enabled``, ``read_enabled``,
``list_enabled``: the locks), true unless locked.

The control plane (``identities.py`` reads and writes these):
- ``registries`` also carries its settings (SKU, admin user, anonymous pull, policies)
  and the admin user's password hashes and sealed passwords.
- ``principals``: users and service principals; ``role_assignments``: (principal,
  role, scope).
- ``scope_maps`` / ``tokens`` / ``token_passwords``: repository-scoped tokens per registry.
- ``signing_keys``: the keys registry tokens (JWTs) are signed and verified with.
- ``authz_state``: one row whose ``version`` moves with every change that can alter
  an authentication or authorisation decision, so caches know when to forget.

Coordination between processes (``leases.py``, ``jobs.py``):
- ``leases``: named, expiring locks every process on the database shares.
- ``sign_in_failures``: failed sign-ins per client key and time window.
- ``jobs``: background work (garbage collection...) that worker processes claim,
  run once and record the outcome of.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.types import TypeEngine

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = DateTime(timezone=True)


def attribute_columns() -> list[Column[bool]]:
    """ACR's changeable attributes (locks), all true by default (migration 0004)."""
    return [
        Column(name, Boolean, nullable=False, server_default=true())
        for name in ("delete_enabled", "write_enabled", "read_enabled", "list_enabled")
    ]


def name_column(length: int) -> TypeEngine[str]:
    """A name that lists sort and page through bytewise (``C`` collation on PostgreSQL),
    the order SQLite uses, so paging with ``last`` is the same on both databases."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


registries = Table(
    "registries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False),
    Column("name_key", String(50), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    # Settings (SPEC §2). Server defaults, so registries created before migration
    # 0003, or by MetadataStore.ensure_registry, get ACR's defaults.
    Column("sku", String(16), nullable=False, server_default="Basic"),
    Column("admin_user_enabled", Boolean, nullable=False, server_default=false()),
    Column("anonymous_pull_enabled", Boolean, nullable=False, server_default=false()),
    Column("provisioning_state", String(16), nullable=False, server_default="Succeeded"),
    Column("policies", Text, nullable=True),  # a JSON object
    # The admin user's passwords: slow hashes to check them, and both sealed
    # (encrypted by the auth layer) because `credential show` shows them again.
    Column("admin_password_hash", Text, nullable=True),
    Column("admin_password2_hash", Text, nullable=True),
    Column("admin_passwords_sealed", Text, nullable=True),
    # Null until the first change through the control plane: nullable because
    # SQLite can add a NOT NULL column only with a constant default.
    Column("updated_at", TS, nullable=True),
)

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("registry_id", Integer, ForeignKey("registries.id", ondelete="CASCADE"), nullable=False),
    Column("name", name_column(255), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # Soft delete: set when the whole repository went to the recycle bin (it leaves
    # the catalog); a push or a restore into it clears it.
    Column("deleted_at", TS, nullable=True),
    *attribute_columns(),
    UniqueConstraint("registry_id", "name"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(140), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(140), ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", TS, nullable=False),
    Index("ix_repository_blobs_digest", "digest"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False
    ),
    Column("digest", String(140), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("subject_digest", String(140), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("annotations", Text, nullable=True),
    Column("created_at", TS, nullable=False),
    # When no tag pointed at it any more (or it was stored without one); NULL while
    # tagged. The untagged-manifest retention policy counts from it.
    Column("untagged_at", TS, nullable=True),
    # Soft delete: set while the manifest is in the recycle bin (every read of live
    # content leaves it out; its references and usage stay until it is purged).
    Column("deleted_at", TS, nullable=True),
    *attribute_columns(),
    UniqueConstraint("repository_id", "digest"),
    Index("ix_manifests_repository_id_subject_digest", "repository_id", "subject_digest"),
)

manifest_blobs = Table(
    "manifest_blobs",
    metadata,
    Column(
        "manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", String(140), primary_key=True),
    Index("ix_manifest_blobs_digest", "digest"),
)

manifest_children = Table(
    "manifest_children",
    metadata,
    Column(
        "manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("child_digest", String(140), primary_key=True),
    Index("ix_manifest_children_child_digest", "child_digest"),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", name_column(128), primary_key=True),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    *attribute_columns(),
    Index("ix_tags_manifest_id", "manifest_id"),
)

#: Soft-deleted tags: the last deletion of each tag name per repository, with the
#: manifest it pointed at (restored with it, unless the name is live again).
deleted_tags = Table(
    "deleted_tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", name_column(128), primary_key=True),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("deleted_at", TS, nullable=False),
    Index("ix_deleted_tags_manifest_id", "manifest_id"),
)

#: Per registry, how many manifests reference each blob (a blob counts toward the
#: registry's usage while this is above zero; each blob once, however many use it).
registry_blob_refs = Table(
    "registry_blob_refs",
    metadata,
    Column(
        "registry_id", Integer, ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", String(140), primary_key=True),
    Column("refs", Integer, nullable=False),
)

#: Per registry, the bytes of the distinct blobs its manifests reference: kept in the
#: same transaction as every manifest write, so it is exact at every moment.
registry_usage = Table(
    "registry_usage",
    metadata,
    Column(
        "registry_id", Integer, ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("bytes", BigInteger, nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("registry_id", Integer, ForeignKey("registries.id", ondelete="CASCADE"), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)


# -- control plane ---------------------------------------------------------------------------

principals = Table(
    "principals",
    metadata,
    Column("id", String(36), primary_key=True),  # a UUID (ACR's objectId)
    Column("kind", String(24), nullable=False),  # 'user' | 'service_principal'
    # A user's name or e-mail; a service principal's appId.
    Column("name", name_column(255), nullable=False),
    Column("name_key", name_column(255), nullable=False, unique=True),  # lower-cased name
    Column("display_name", String(255), nullable=True),
    Column("secret_hash", Text, nullable=True),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

role_assignments = Table(
    "role_assignments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "principal_id",
        String(36),
        ForeignKey("principals.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", name_column(64), nullable=False),
    # '/', '/registries/<name>' or '/registries/<name>/repositories/<repo>', lower case.
    Column("scope", name_column(512), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("principal_id", "role", "scope"),
    Index("ix_role_assignments_scope", "scope"),
)

scope_maps = Table(
    "scope_maps",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("registry_id", Integer, ForeignKey("registries.id", ondelete="CASCADE"), nullable=False),
    Column("name", name_column(64), nullable=False),
    # Unique per registry case-insensitively, as ARM resource names are.
    Column("name_key", name_column(64), nullable=False),
    Column("description", Text, nullable=True),
    Column("actions", Text, nullable=False),  # a JSON list of "repositories/<repo>/<action>"
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("registry_id", "name_key"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("registry_id", Integer, ForeignKey("registries.id", ondelete="CASCADE"), nullable=False),
    Column("name", name_column(64), nullable=False),
    Column("name_key", name_column(64), nullable=False),
    # RESTRICT: a scope map that a token uses cannot be deleted.
    Column(
        "scope_map_id",
        String(36),
        ForeignKey("scope_maps.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("status", String(16), nullable=False),  # 'enabled' | 'disabled'
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("registry_id", "name_key"),
    Index("ix_tokens_scope_map_id", "scope_map_id"),
)

token_passwords = Table(
    "token_passwords",
    metadata,
    Column(
        "token_id",
        String(36),
        ForeignKey("tokens.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(16), primary_key=True),  # 'password1' | 'password2'
    Column("secret_hash", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expiry", TS, nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key", Text, nullable=False),  # opaque to the store; may be sealed
    Column("public_key", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("signs_until", TS, nullable=False),  # no new tokens after it
    Column("verifies_until", TS, nullable=False),  # its tokens are refused after it
)

authz_state = Table(
    "authz_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("version", BigInteger, nullable=False),
)


# -- coordination -------------------------------------------------------------------------

leases = Table(
    "leases",
    metadata,
    Column("name", name_column(200), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", TS, nullable=False),
)

#: Failed sign-ins per key (a hash of the client address, or of address and user name)
#: and fixed time window (POSIX seconds // window length), shared by every process.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("window", BigInteger, primary_key=True),
    Column("failures", Integer, nullable=False),
    Index("ix_sign_in_failures_window", "window"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),  # picks the handler: 'gc', ...
    Column("payload", Text, nullable=False),  # a JSON object, the handler's arguments
    # Set for jobs that must exist once (a periodic job's turn: 'gc@3600s#491234').
    Column("unique_key", String(200), nullable=True, unique=True),
    Column("state", String(16), nullable=False),  # queued | running | succeeded | failed
    Column("attempts", Integer, nullable=False),  # claims so far, the running one included
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", TS, nullable=False),  # not claimed before
    Column("claimed_by", String(200), nullable=True),  # the running claim's token
    Column("lease_until", TS, nullable=True),  # a running claim expires then
    Column("last_error", Text, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("started_at", TS, nullable=True),
    Column("finished_at", TS, nullable=True),
    # The claim looks for queued jobs due and running ones whose lease expired.
    Index("ix_jobs_state_run_at", "state", "run_at"),
    Index("ix_jobs_state_lease_until", "state", "lease_until"),
)
