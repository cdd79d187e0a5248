"""The IdentityStore contract (hamn.metadata.identities), run against every supported database.

SQLite always runs; PostgreSQL when ``HAMN_TEST_POSTGRES_URL`` is set, as in
test_metadata_store.py. For speed, each test starts from a copy of a migrated
SQLite file, or from one migrated PostgreSQL schema per worker emptied for it;
the migration test gets an empty database of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, inspect, select, text
from store_support import POSTGRES_ENV, T, gather, postgres_schema, run

from hamn.metadata import schema as t
from hamn.metadata.identities import (
    AdminCredentials,
    AlreadyExists,
    IdentityStore,
    InUse,
    NotFound,
    Principal,
    RegistryInfo,
    RoleAssignmentRecord,
    ScopeMap,
    SigningKeyRecord,
    Token,
    TokenPassword,
    canonical_scope,
)
from hamn.metadata.store import MetadataStore, create_metadata_engine, migrate
from hamn.oci.digest import digest_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PULL = "repositories/app/content/read"
PUSH = "repositories/app/content/write"


# -- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_migrated() -> Iterator[str | None]:
    """One migrated PostgreSQL schema per test session (per xdist worker), emptied
    for each test: migrating a schema per test would cost most of the suite's time."""
    if not os.environ.get(POSTGRES_ENV):
        yield None
        return
    with postgres_schema() as url:
        eng = create_metadata_engine(url)
        migrate(eng)
        eng.dispose()
        yield url


def empty_tables(eng: Engine) -> None:
    """Every table as the migrations leave it: empty, but for the authz_state row."""
    with eng.begin() as conn:
        # DELETE, not TRUNCATE: on a few rows it is many times faster.
        for table in reversed(t.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(t.authz_state.insert().values(id=1, version=0))


@pytest.fixture
def engine(
    database: str, tmp_path: Path, sqlite_template: Path, postgres_migrated: str | None
) -> Iterator[Engine]:
    """A migrated, empty database of each supported kind."""
    if database == "sqlite":
        path = tmp_path / "metadata.db"
        shutil.copyfile(sqlite_template, path)
        eng = create_metadata_engine(f"sqlite:///{path}")
    else:
        assert postgres_migrated is not None
        eng = create_metadata_engine(postgres_migrated)
        empty_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[MetadataStore]:
    s = MetadataStore(engine, threads=16)
    yield s
    s.close()


@pytest.fixture
def ids(store: MetadataStore) -> IdentityStore:
    return IdentityStore(store)


@pytest.fixture
def reg(ids: IdentityStore) -> RegistryInfo:
    return run(ids.create_registry("testreg"))


def alembic(eng: Engine, action: str, revision: str) -> None:
    """Upgrade or downgrade ``eng``'s schema to ``revision``."""
    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("hamn.metadata").joinpath("migrations"))
    )
    with eng.connect() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)
        conn.commit()


def later(**kwargs: float) -> datetime:
    return datetime.now(UTC) + timedelta(**kwargs)


# -- migration 0003 --------------------------------------------------------------------------


def test_migration_keeps_existing_registries_and_their_content(empty_database_url: str) -> None:
    eng = create_metadata_engine(empty_database_url)
    try:
        alembic(eng, "upgrade", "0002")
        created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        body = b'{"schemaVersion":2}'
        with eng.begin() as conn:
            # Only the 0002 columns: the inserts name no column 0003 adds.
            reg_id = conn.execute(
                t.registries.insert()
                .values(name="OldReg", name_key="oldreg", created_at=created)
                .returning(t.registries.c.id)
            ).scalar_one()
            repo_id = conn.execute(
                t.repositories.insert()
                .values(registry_id=reg_id, name="app", created_at=created, updated_at=created)
                .returning(t.repositories.c.id)
            ).scalar_one()
            conn.execute(
                t.blobs.insert().values(digest=digest_bytes(b"l"), size=1, created_at=created)
            )
            conn.execute(
                t.repository_blobs.insert().values(
                    repository_id=repo_id, digest=digest_bytes(b"l"), created_at=created
                )
            )
            manifest_id = conn.execute(
                t.manifests.insert()
                .values(
                    repository_id=repo_id,
                    digest=digest_bytes(body),
                    media_type=OCI_MANIFEST,
                    size=len(body),
                    content=body,
                    created_at=created,
                )
                .returning(t.manifests.c.id)
            ).scalar_one()
            conn.execute(
                t.tags.insert().values(
                    repository_id=repo_id,
                    name="v1",
                    manifest_id=manifest_id,
                    created_at=created,
                    updated_at=created,
                )
            )

        migrate(eng)
        store = MetadataStore(eng)
        ids = IdentityStore(store)
        try:
            info = run(ids.get_registry_info("oldreg"))
            assert info == RegistryInfo(
                reg_id, "OldReg", "Basic", False, False, "Succeeded", None, created, created
            )
            creds = run(ids.get_admin_credentials("OLDREG"))
            assert creds is not None and not creds.enabled and creds.password_hash is None
            assert run(ids.authz_version()) == 0
            record = run(store.get_manifest(reg_id, "app", tag="v1"))
            assert record is not None and record.digest == digest_bytes(body)
            assert run(store.linked_blob_size(reg_id, "app", digest_bytes(b"l"))) == 1
            # The control plane works on the migrated database.
            run(ids.create_principal("user", "alice"))
            assert run(ids.authz_version()) == 1
        finally:
            store.close()

        # And back: 0002's schema, the registries and their content still there.
        alembic(eng, "downgrade", "0002")
        names = set(inspect(eng).get_table_names())
        assert not names & {"principals", "tokens", "scope_maps", "authz_state", "signing_keys"}
        columns = {c["name"] for c in inspect(eng).get_columns("registries")}
        assert columns == {"id", "name", "name_key", "created_at"}
        with eng.connect() as conn:
            assert conn.execute(select(t.tags.c.name)).scalars().all() == ["v1"]
            assert conn.execute(text("SELECT name FROM registries")).scalars().all() == ["OldReg"]
        migrate(eng)
        store = MetadataStore(eng)
        try:
            assert run(IdentityStore(store).authz_version()) == 0
        finally:
            store.close()
    finally:
        eng.dispose()


def test_registries_made_by_the_data_plane_get_the_defaults(
    store: MetadataStore, ids: IdentityStore
) -> None:
    made = run(store.ensure_registry("PushedTo"))
    info = run(ids.get_registry_info("pushedto"))
    assert info is not None
    assert (info.id, info.name, info.sku, info.admin_user_enabled) == (
        made.id,
        "PushedTo",
        "Basic",
        False,
    )
    assert info.updated_at == info.created_at == made.created_at


# -- registries ------------------------------------------------------------------------------


def test_create_and_get_registry(ids: IdentityStore) -> None:
    created = run(
        ids.create_registry(
            "MyRegistry",
            "Premium",
            True,
            anonymous_pull_enabled=True,
            policies={"quarantine": {"status": "enabled"}},
        )
    )
    assert isinstance(created, RegistryInfo)
    assert (created.name, created.sku, created.admin_user_enabled) == (
        "MyRegistry",
        "Premium",
        True,
    )
    assert created.anonymous_pull_enabled and created.provisioning_state == "Succeeded"
    assert created.policies == {"quarantine": {"status": "enabled"}}
    assert created.created_at.tzinfo is not None and created.updated_at == created.created_at
    for spelling in ("MyRegistry", "myregistry", "MYREGISTRY"):
        assert run(ids.get_registry_info(spelling)) == created
    assert run(ids.get_registry_info("other")) is None


def test_create_registry_with_a_creation_time(ids: IdentityStore) -> None:
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    local = when.astimezone(timezone(timedelta(hours=2)))
    created = run(ids.create_registry("imported", created_at=local))
    assert created.created_at == when
    info = run(ids.get_registry_info("imported"))
    assert info is not None and info.created_at == when and info.created_at.tzinfo is not None
    with pytest.raises(ValueError, match="timezone"):
        run(ids.create_registry("naive", created_at=datetime(2025, 6, 1)))


def test_registry_names_are_unique_case_insensitively(ids: IdentityStore) -> None:
    first = run(ids.create_registry("Dup1reg"))
    for spelling in ("Dup1reg", "dup1reg", "DUP1REG"):
        with pytest.raises(AlreadyExists) as exc:
            run(ids.create_registry(spelling, "Standard"))
        assert (exc.value.kind, exc.value.name) == ("registry", spelling)
    assert run(ids.list_registries()) == [first]


def test_create_registry_checks_the_sku(ids: IdentityStore) -> None:
    with pytest.raises(ValueError, match="sku"):
        run(ids.create_registry("freereg", "Free"))
    assert run(ids.list_registries()) == []


def test_list_registries_in_byte_order(ids: IdentityStore) -> None:
    for name in ("bravo", "Alpha", "alpha2", "Bravo2", "charlie"):
        run(ids.create_registry(name))
    assert [r.name for r in run(ids.list_registries())] == sorted(
        ["bravo", "Alpha", "alpha2", "Bravo2", "charlie"]
    )


def test_update_registry(ids: IdentityStore, reg: RegistryInfo) -> None:
    updated = run(ids.update_registry("TESTREG", sku="Standard", admin_user_enabled=True))
    assert (updated.sku, updated.admin_user_enabled, updated.anonymous_pull_enabled) == (
        "Standard",
        True,
        False,
    )
    assert updated.updated_at >= reg.updated_at
    updated = run(
        ids.update_registry(
            "testreg",
            anonymous_pull_enabled=True,
            policies={"retention": {"days": 7}},
            provisioning_state="Updating",
        )
    )
    assert updated.sku == "Standard" and updated.admin_user_enabled  # untouched
    assert updated.anonymous_pull_enabled and updated.provisioning_state == "Updating"
    assert updated.policies == {"retention": {"days": 7}}
    assert run(ids.get_registry_info("testreg")) == updated
    # Nothing to change: the registry as it is.
    assert run(ids.update_registry("testreg")) == updated
    updated = run(ids.update_registry("testreg", admin_user_enabled=False, policies={}))
    assert not updated.admin_user_enabled and updated.policies == {}
    with pytest.raises(ValueError, match="sku"):
        run(ids.update_registry("testreg", sku="Gold"))
    with pytest.raises(NotFound):
        run(ids.update_registry("nosuchreg", sku="Basic"))


def test_admin_credentials(ids: IdentityStore, reg: RegistryInfo) -> None:
    creds = run(ids.get_admin_credentials("testreg"))
    assert creds == AdminCredentials(reg.id, "testreg", False, None, None, None)
    run(ids.set_admin_passwords("TestReg", "$argon2id$one", "$argon2id$two", "sealed:blob"))
    run(ids.update_registry("testreg", admin_user_enabled=True))
    creds = run(ids.get_admin_credentials("TESTREG"))
    assert creds == AdminCredentials(
        reg.id, "testreg", True, "$argon2id$one", "$argon2id$two", "sealed:blob"
    )
    assert "argon2" not in repr(creds) and "sealed" not in repr(creds)
    # Renewing one password: both hashes and the sealed pair are written together.
    run(ids.set_admin_passwords("testreg", "$argon2id$one", "$argon2id$three", "sealed:new"))
    creds = run(ids.get_admin_credentials("testreg"))
    assert creds is not None
    assert (creds.password2_hash, creds.sealed) == ("$argon2id$three", "sealed:new")
    assert run(ids.get_admin_credentials("nosuchreg")) is None
    with pytest.raises(NotFound):
        run(ids.set_admin_passwords("nosuchreg", "a", "b", "c"))


def test_delete_registry_deletes_everything_in_it(store: MetadataStore, ids: IdentityStore) -> None:
    doomed = run(ids.create_registry("doomedreg"))
    kept = run(ids.create_registry("doomedreg2"))  # its name starts with the other's
    shared = digest_bytes(b"shared layer")
    for registry in (doomed, kept):
        run(store.link_blob(registry.id, "app", shared, 12))
        body = f'{{"schemaVersion":2,"r":"{registry.name}"}}'.encode()
        run(
            store.put_manifest(
                registry.id,
                "app",
                digest=digest_bytes(body),
                media_type=OCI_MANIFEST,
                artifact_type=None,
                subject_digest=None,
                content=body,
                annotations=None,
                blobs=[shared],
                children=[],
                tag="v1",
            )
        )
        run(store.create_upload(f"upload-{registry.name}", registry.id, "app"))
        run(ids.create_scope_map(registry.name, "pull", [PULL]))
        run(ids.create_token(registry.name, "ci-token", "pull"))
        run(ids.set_token_password(registry.name, "ci-token", "password1", "hash"))
    alice = run(ids.create_principal("user", "alice"))
    for scope in (
        "/",
        "/registries/doomedreg",
        "/registries/DoomedReg/repositories/app",
        "/registries/doomedreg2",
        "/registries/doomedreg2/repositories/app",
    ):
        run(ids.create_role_assignment(alice.id, "AcrPull", scope))

    assert run(ids.delete_registry("DOOMEDREG")) is True
    assert run(ids.get_registry_info("doomedreg")) is None
    assert run(ids.get_token("doomedreg", "ci-token")) is None
    assert run(store.get_upload("upload-doomedreg")) is None
    assert run(store.repository_exists(doomed.id, "app")) is False
    # One of each row is left: the other registry's.
    for table in (
        "registries",
        "repositories",
        "manifests",
        "manifest_blobs",
        "tags",
        "repository_blobs",
        "uploads",
        "scope_maps",
        "tokens",
        "token_passwords",
    ):
        assert run(store.count(table)) == 1, table
    assert run(store.count("blobs")) == 1  # blobs are storage-wide: GC's to collect
    assert [a.scope for a in run(ids.assignments_for(alice.id))] == [
        "/",
        "/registries/doomedreg2",
        "/registries/doomedreg2/repositories/app",
    ]
    token = run(ids.get_token("doomedreg2", "ci-token"))
    assert token is not None and len(token.passwords) == 1
    assert run(store.get_manifest(kept.id, "app", tag="v1")) is not None
    assert run(ids.delete_registry("doomedreg")) is False
    # A registry created again under the name starts empty.
    again = run(ids.create_registry("doomedreg"))
    assert run(ids.list_scope_maps(again.name)) == []
    assert run(ids.list_role_assignments(scope="/registries/doomedreg")) == []


# -- principals ------------------------------------------------------------------------------


def test_principal_lifecycle(ids: IdentityStore) -> None:
    alice = run(
        ids.create_principal("user", "Alice@Example.com", display_name="Alice", secret_hash="h1")
    )
    assert isinstance(alice, Principal)
    assert uuid.UUID(alice.id).version == 4
    assert (alice.kind, alice.name, alice.display_name, alice.secret_hash) == (
        "user",
        "Alice@Example.com",
        "Alice",
        "h1",
    )
    assert not alice.disabled and alice.created_at.tzinfo is not None
    assert "h1" not in repr(alice)
    assert run(ids.get_principal(alice.id)) == alice
    assert run(ids.get_principal_by_name("alice@example.COM")) == alice
    assert run(ids.get_principal_by_name("bob")) is None
    assert run(ids.get_principal(str(uuid.uuid4()))) is None

    changed = run(ids.set_principal_secret(alice.id, "h2"))
    assert changed.secret_hash == "h2" and changed.updated_at >= alice.updated_at
    assert changed.created_at == alice.created_at
    disabled = run(ids.set_principal_disabled(alice.id, True))
    assert disabled.disabled and disabled.secret_hash == "h2"
    assert run(ids.get_principal_by_name("alice@example.com")) == disabled
    assert not run(ids.set_principal_disabled(alice.id, False)).disabled
    assert run(ids.set_principal_secret(alice.id, None)).secret_hash is None

    assert run(ids.delete_principal(alice.id)) is True
    assert run(ids.get_principal(alice.id)) is None
    assert run(ids.delete_principal(alice.id)) is False
    with pytest.raises(NotFound):
        run(ids.set_principal_secret(alice.id, "h3"))
    with pytest.raises(NotFound):
        run(ids.set_principal_disabled(alice.id, True))


def test_principal_names_are_unique_case_insensitively(ids: IdentityStore) -> None:
    app_id = str(uuid.uuid4())
    sp = run(ids.create_principal("service_principal", app_id.upper(), secret_hash="s"))
    with pytest.raises(AlreadyExists) as exc:
        run(ids.create_principal("service_principal", app_id))
    assert exc.value.kind == "principal"
    with pytest.raises(AlreadyExists):
        run(ids.create_principal("user", app_id))  # one namespace for every kind
    assert run(ids.list_principals()) == [sp]


def test_create_principal_checks_its_values(ids: IdentityStore) -> None:
    with pytest.raises(ValueError, match="kind"):
        run(ids.create_principal("group", "admins"))
    with pytest.raises(ValueError):
        run(ids.create_principal("user", ""))
    with pytest.raises(ValueError):
        run(ids.create_principal("user", "x" * 256))
    assert run(ids.list_principals()) == []


def test_list_principals_by_kind(ids: IdentityStore) -> None:
    users = [run(ids.create_principal("user", n)) for n in ("bob", "Alice", "carol")]
    sps = [run(ids.create_principal("service_principal", str(uuid.uuid4()))) for _ in range(2)]
    assert run(ids.list_principals("user")) == sorted(users, key=lambda p: p.name.encode())
    assert run(ids.list_principals("service_principal")) == sorted(sps, key=lambda p: p.name)
    assert len(run(ids.list_principals())) == 5
    with pytest.raises(ValueError):
        run(ids.list_principals("robot"))


def test_deleting_a_principal_deletes_its_role_assignments(
    store: MetadataStore, ids: IdentityStore, reg: RegistryInfo
) -> None:
    alice = run(ids.create_principal("user", "alice"))
    bob = run(ids.create_principal("user", "bob"))
    for principal in (alice, bob):
        run(ids.create_role_assignment(principal.id, "AcrPush", "/registries/testreg"))
        run(ids.create_role_assignment(principal.id, "Reader", "/"))
    run(ids.delete_principal(alice.id))
    assert run(ids.assignments_for(alice.id)) == []
    assert {a.principal_name for a in run(ids.list_role_assignments())} == {"bob"}
    assert run(store.count("role_assignments")) == 2


# -- role assignments ------------------------------------------------------------------------


def test_role_assignments(ids: IdentityStore, reg: RegistryInfo) -> None:
    alice = run(ids.create_principal("user", "alice"))
    bob = run(ids.create_principal("service_principal", str(uuid.uuid4())))
    a1 = run(ids.create_role_assignment(alice.id, "AcrPull", "/registries/TestReg"))
    assert isinstance(a1, RoleAssignmentRecord)
    assert (a1.principal_id, a1.principal_name, a1.principal_kind, a1.role, a1.scope) == (
        alice.id,
        "alice",
        "user",
        "AcrPull",
        "/registries/testreg",
    )
    a2 = run(ids.create_role_assignment(alice.id, "AcrPush", "/registries/testreg/repositories/a"))
    a3 = run(ids.create_role_assignment(alice.id, "Owner", "/"))
    b1 = run(ids.create_role_assignment(bob.id, "AcrPull", "/registries/testreg2"))
    assert run(ids.assignments_for(alice.id)) == [a3, a1, a2]  # by scope
    assert run(ids.assignments_for(bob.id)) == [b1]
    assert run(ids.assignments_for(str(uuid.uuid4()))) == []

    assert run(ids.list_role_assignments()) == [a3, a1, a2, b1]
    assert run(ids.list_role_assignments(principal_id=bob.id)) == [b1]
    assert run(ids.list_role_assignments(role="AcrPull")) == [a1, b1]
    assert run(ids.list_role_assignments(scope="/")) == [a3, a1, a2, b1]
    # A scope and what lies beneath it, never a sibling whose name merely starts alike.
    assert run(ids.list_role_assignments(scope="/registries/testreg/")) == [a1, a2]
    assert run(ids.list_role_assignments(scope="/registries/testreg/repositories/a")) == [a2]
    assert run(ids.list_role_assignments(scope="/registries/TESTREG2", role="AcrPull")) == [b1]
    assert run(ids.list_role_assignments(principal_id=alice.id, role="AcrPull")) == [a1]

    assert run(ids.delete_role_assignment(a1.id)) is True
    assert run(ids.delete_role_assignment(a1.id)) is False
    assert run(ids.assignments_for(alice.id)) == [a3, a2]


def test_create_role_assignment_is_idempotent(store: MetadataStore, ids: IdentityStore) -> None:
    alice = run(ids.create_principal("user", "alice"))
    first = run(ids.create_role_assignment(alice.id, "AcrPull", "/registries/x1reg"))
    version = run(ids.authz_version())
    again = run(ids.create_role_assignment(alice.id, "AcrPull", "/Registries/X1Reg/"))
    assert again == first
    assert run(ids.authz_version()) == version  # nothing changed
    assert run(store.count("role_assignments")) == 1
    # Another role at the scope is another assignment.
    other = run(ids.create_role_assignment(alice.id, "AcrPush", "/registries/x1reg"))
    assert other.id != first.id


def test_role_assignments_need_a_principal_and_a_valid_scope(
    store: MetadataStore, ids: IdentityStore
) -> None:
    with pytest.raises(NotFound) as exc:
        run(ids.create_role_assignment(str(uuid.uuid4()), "AcrPull", "/"))
    assert exc.value.kind == "principal"
    alice = run(ids.create_principal("user", "alice"))
    for scope in ("", "registries/r", "/registries", "/registries/", "/repos/x", "/registries/r/x"):
        with pytest.raises(ValueError, match="scope"):
            run(ids.create_role_assignment(alice.id, "AcrPull", scope))
    with pytest.raises(ValueError):
        run(ids.list_role_assignments(scope="/nothing"))
    assert run(store.count("role_assignments")) == 0


def test_canonical_scope() -> None:
    assert canonical_scope("/") == "/"
    assert canonical_scope("/Registries/MyReg/") == "/registries/myreg"
    assert canonical_scope("/registries/r/repositories/a/b/c") == "/registries/r/repositories/a/b/c"
    assert canonical_scope("/registries/r/repositories/a") == "/registries/r/repositories/a"
    for bad in ("//", "/registries/r/repositories", "/registries/r/repositories/", "/x"):
        with pytest.raises(ValueError):
            canonical_scope(bad)


# -- scope maps ------------------------------------------------------------------------------


def test_scope_map_lifecycle(ids: IdentityStore, reg: RegistryInfo) -> None:
    created = run(ids.create_scope_map("TESTREG", "Pullers", [PULL, PUSH], "CI pulls"))
    assert isinstance(created, ScopeMap)
    assert (created.registry_id, created.name, created.description, created.actions) == (
        reg.id,
        "Pullers",
        "CI pulls",
        (PULL, PUSH),
    )
    assert run(ids.get_scope_map("testreg", "pullers")) == created
    assert run(ids.get_scope_map("testreg", "absent")) is None
    assert run(ids.get_scope_map("nosuchreg", "pullers")) is None

    updated = run(ids.update_scope_map("testreg", "PULLERS", actions=[PULL]))
    assert updated.actions == (PULL,) and updated.description == "CI pulls"
    assert updated.updated_at >= created.updated_at and updated.created_at == created.created_at
    updated = run(ids.update_scope_map("testreg", "pullers", description="only pulls"))
    assert updated.actions == (PULL,) and updated.description == "only pulls"
    assert run(ids.update_scope_map("testreg", "pullers")) == updated
    assert run(ids.get_scope_map("testreg", "Pullers")) == updated

    other = run(ids.create_scope_map("testreg", "admins", ["repositories/*/content/delete"]))
    assert run(ids.list_scope_maps("testreg")) == [updated, other]  # "P" < "a" bytewise
    assert run(ids.delete_scope_map("testreg", "PULLERS")) is True
    assert run(ids.delete_scope_map("testreg", "pullers")) is False
    assert run(ids.delete_scope_map("nosuchreg", "admins")) is False
    assert run(ids.list_scope_maps("testreg")) == [other]


def test_scope_map_errors(ids: IdentityStore, reg: RegistryInfo) -> None:
    run(ids.create_scope_map("testreg", "pullers", [PULL]))
    with pytest.raises(AlreadyExists) as exc:
        run(ids.create_scope_map("testreg", "PULLERS", [PUSH]))
    assert exc.value.kind == "scope map"
    run(ids.create_registry("otherreg"))
    run(ids.create_scope_map("otherreg", "pullers", [PULL]))  # names are per registry
    with pytest.raises(NotFound):
        run(ids.create_scope_map("nosuchreg", "pullers", [PULL]))
    with pytest.raises(NotFound):
        run(ids.update_scope_map("testreg", "absent", actions=[PULL]))
    with pytest.raises(NotFound):
        run(ids.list_scope_maps("nosuchreg"))
    with pytest.raises(TypeError):
        run(ids.create_scope_map("testreg", "oops", PULL))  # a string, not a list
    with pytest.raises(TypeError):
        run(ids.update_scope_map("testreg", "pullers", actions=[PULL, ""]))
    assert run(ids.get_scope_map("testreg", "pullers")) is not None


def test_a_scope_map_in_use_cannot_be_deleted(ids: IdentityStore, reg: RegistryInfo) -> None:
    run(ids.create_scope_map("testreg", "pullers", [PULL]))
    run(ids.create_token("testreg", "token-b", "pullers"))
    run(ids.create_token("testreg", "token-a", "pullers"))
    with pytest.raises(InUse) as exc:
        run(ids.delete_scope_map("testreg", "pullers"))
    assert exc.value.users == ("token-a", "token-b")
    assert run(ids.get_scope_map("testreg", "pullers")) is not None
    run(ids.delete_token("testreg", "token-a"))
    run(ids.delete_token("testreg", "token-b"))
    assert run(ids.delete_scope_map("testreg", "pullers")) is True


# -- tokens ----------------------------------------------------------------------------------


def test_token_lifecycle(ids: IdentityStore, reg: RegistryInfo) -> None:
    pullers = run(ids.create_scope_map("testreg", "pullers", [PULL]))
    pushers = run(ids.create_scope_map("testreg", "pushers", [PULL, PUSH]))
    created = run(ids.create_token("TestReg", "CI-Token", "PULLERS"))
    assert isinstance(created, Token)
    assert (created.registry_id, created.name, created.scope_map_id, created.scope_map_name) == (
        reg.id,
        "CI-Token",
        pullers.id,
        "pullers",
    )
    assert (created.actions, created.status, created.passwords) == ((PULL,), "enabled", ())
    assert run(ids.get_token("testreg", "ci-token")) == created
    assert run(ids.get_token("otherreg", "ci-token")) is None
    assert run(ids.get_token("testreg", "absent")) is None

    expiry = later(days=30)
    p2 = run(ids.set_token_password("testreg", "ci-token", "password2", "hash2", expiry))
    p1 = run(ids.set_token_password("testreg", "CI-TOKEN", "password1", "hash1"))
    assert isinstance(p1, TokenPassword) and p1.expiry is None and p2.expiry == expiry
    assert "hash1" not in repr(p1)
    token = run(ids.get_token("testreg", "ci-token"))
    assert token is not None and token.passwords == (p1, p2)
    assert token.updated_at >= created.updated_at
    assert run(ids.list_token_passwords("testreg", "ci-token")) == [p1, p2]
    # Regenerating replaces the password.
    p1b = run(ids.set_token_password("testreg", "ci-token", "password1", "hash1b", later(days=1)))
    assert run(ids.list_token_passwords("testreg", "ci-token")) == [p1b, p2]

    updated = run(ids.update_token("testreg", "ci-token", status="disabled", scope_map="Pushers"))
    assert (updated.status, updated.scope_map_id, updated.actions) == (
        "disabled",
        pushers.id,
        (PULL, PUSH),
    )
    assert updated.passwords == (p1b, p2)
    assert run(ids.get_token("testreg", "ci-token")) == updated
    assert run(ids.update_token("testreg", "ci-token")) == updated
    # A scope map's change reaches its tokens at once.
    run(ids.update_scope_map("testreg", "pushers", actions=[PUSH]))
    token = run(ids.get_token("testreg", "ci-token"))
    assert token is not None and token.actions == (PUSH,)

    assert run(ids.delete_token_password("testreg", "ci-token", "password2")) is True
    assert run(ids.delete_token_password("testreg", "ci-token", "password2")) is False
    assert run(ids.delete_token_password("testreg", "absent", "password1")) is False
    assert run(ids.delete_token_password("nosuchreg", "ci-token", "password1")) is False
    assert run(ids.list_token_passwords("testreg", "ci-token")) == [p1b]

    other = run(ids.create_token("testreg", "another", "pullers", "disabled"))
    listed = run(ids.list_tokens("testreg"))
    assert [tok.name for tok in listed] == ["CI-Token", "another"]
    assert listed[1] == other and listed[0].passwords == (p1b,)

    assert run(ids.delete_token("testreg", "CI-TOKEN")) is True
    assert run(ids.delete_token("testreg", "ci-token")) is False
    assert run(ids.delete_token("nosuchreg", "another")) is False
    assert run(ids.get_token("testreg", "ci-token")) is None
    assert run(ids.list_tokens("testreg")) == [other]


def test_token_errors(store: MetadataStore, ids: IdentityStore, reg: RegistryInfo) -> None:
    run(ids.create_scope_map("testreg", "pullers", [PULL]))
    run(ids.create_registry("otherreg"))
    run(ids.create_scope_map("otherreg", "theirs", [PULL]))
    run(ids.create_token("testreg", "ci-token", "pullers"))
    with pytest.raises(AlreadyExists) as exc:
        run(ids.create_token("testreg", "CI-TOKEN", "pullers"))
    assert exc.value.kind == "token"
    run(ids.create_token("otherreg", "ci-token", "theirs"))  # names are per registry
    with pytest.raises(NotFound) as nf:
        run(ids.create_token("testreg", "t2", "theirs"))  # another registry's scope map
    assert nf.value.kind == "scope map"
    with pytest.raises(NotFound):
        run(ids.create_token("nosuchreg", "t2", "pullers"))
    with pytest.raises(NotFound):
        run(ids.update_token("testreg", "ci-token", scope_map="theirs"))
    with pytest.raises(NotFound):
        run(ids.update_token("testreg", "absent", status="disabled"))
    with pytest.raises(ValueError):
        run(ids.create_token("testreg", "t3", "pullers", "paused"))
    with pytest.raises(ValueError):
        run(ids.update_token("testreg", "ci-token", status="paused"))
    with pytest.raises(ValueError):
        run(ids.set_token_password("testreg", "ci-token", "password3", "h"))
    with pytest.raises(ValueError, match="timezone"):
        run(ids.set_token_password("testreg", "ci-token", "password1", "h", datetime(2030, 1, 1)))
    with pytest.raises(NotFound):
        run(ids.set_token_password("testreg", "absent", "password1", "h"))
    with pytest.raises(NotFound):
        run(ids.list_token_passwords("testreg", "absent"))
    assert run(store.count("tokens")) == 2
    assert run(store.count("token_passwords")) == 0


def test_deleting_a_token_deletes_its_passwords(store: MetadataStore, ids: IdentityStore) -> None:
    run(ids.create_registry("testreg"))
    run(ids.create_scope_map("testreg", "pullers", [PULL]))
    for name in ("keep-me", "drop-me"):
        run(ids.create_token("testreg", name, "pullers"))
        run(ids.set_token_password("testreg", name, "password1", "h1"))
        run(ids.set_token_password("testreg", name, "password2", "h2"))
    run(ids.delete_token("testreg", "drop-me"))
    assert run(store.count("token_passwords")) == 2


# -- signing keys ----------------------------------------------------------------------------


def test_signing_keys(ids: IdentityStore) -> None:
    now = datetime.now(UTC)
    old = run(
        ids.add_signing_key(
            "k-old",
            "ES256",
            "sealed-private-1",
            "public-1",
            signs_until=now - timedelta(hours=1),
            verifies_until=now + timedelta(hours=1),
            created_at=now - timedelta(days=30),
        )
    )
    current = run(
        ids.add_signing_key(
            "k-current",
            "ES256",
            "sealed-private-2",
            "public-2",
            signs_until=now + timedelta(days=30),
            verifies_until=now + timedelta(days=31),
        )
    )
    dead = run(
        ids.add_signing_key(
            "k-dead",
            "RS256",
            "sealed-private-0",
            "public-0",
            signs_until=now - timedelta(days=2),
            verifies_until=now - timedelta(days=1),
            created_at=now - timedelta(days=60),
        )
    )
    assert isinstance(current, SigningKeyRecord) and "sealed-private" not in repr(current)
    assert run(ids.get_signing_key("k-current")) == current
    assert run(ids.get_signing_key("k-old")) == old
    assert run(ids.get_signing_key("absent")) is None
    assert run(ids.list_signing_keys()) == [current, old, dead]  # newest first
    assert run(ids.active_signing_keys()) == [current]
    assert run(ids.verifiable_signing_keys()) == [current, old]
    assert run(ids.verifiable_signing_keys(now - timedelta(days=3))) == [current, old, dead]

    with pytest.raises(AlreadyExists):
        run(ids.add_signing_key("k-old", "ES256", "x", "y", signs_until=now, verifies_until=now))
    with pytest.raises(ValueError):
        run(
            ids.add_signing_key(
                "k-bad", "ES256", "x", "y", signs_until=now, verifies_until=now - timedelta(1)
            )
        )

    retired = run(ids.retire_signing_key("k-current"))
    assert retired.signs_until <= datetime.now(UTC) and retired.verifies_until == (
        current.verifies_until
    )
    assert run(ids.active_signing_keys()) == []
    assert run(ids.verifiable_signing_keys()) == [retired, old]
    # Retiring a retired key changes nothing; a later date never extends signing.
    assert run(ids.retire_signing_key("k-current", later(days=5))) == retired
    with pytest.raises(NotFound):
        run(ids.retire_signing_key("absent"))

    assert run(ids.delete_expired_signing_keys()) == 1
    assert run(ids.get_signing_key("k-dead")) is None
    assert run(ids.delete_expired_signing_keys()) == 0
    assert run(ids.delete_expired_signing_keys(now + timedelta(days=40))) == 2
    assert run(ids.list_signing_keys()) == []


# -- the authorisation version ---------------------------------------------------------------


def test_every_authz_change_bumps_the_version_and_reads_do_not(
    store: MetadataStore, ids: IdentityStore
) -> None:
    async def scenario() -> None:
        async def bumps(aw: Awaitable[T], by: int = 1) -> T:
            before = await ids.authz_version()
            result = await aw
            assert await ids.authz_version() == before + by
            return result

        async def unchanged(aw: Awaitable[T]) -> T:
            return await bumps(aw, by=0)

        now = datetime.now(UTC)
        await bumps(ids.create_registry("authzreg"))
        await bumps(ids.update_registry("authzreg", admin_user_enabled=True))
        await bumps(ids.update_registry("authzreg", anonymous_pull_enabled=True))
        await bumps(ids.update_registry("authzreg", sku="Premium"))
        await bumps(ids.update_registry("authzreg", policies={"quarantine": True}))
        await bumps(ids.set_admin_passwords("authzreg", "h1", "h2", "sealed"))
        alice = await bumps(ids.create_principal("user", "alice"))
        await bumps(ids.set_principal_secret(alice.id, "h"))
        await bumps(ids.set_principal_disabled(alice.id, True))
        assignment = await bumps(ids.create_role_assignment(alice.id, "AcrPull", "/"))
        await bumps(ids.delete_role_assignment(assignment.id))
        await bumps(ids.create_scope_map("authzreg", "pullers", [PULL]))
        await bumps(ids.update_scope_map("authzreg", "pullers", actions=[PUSH]))
        await bumps(ids.create_token("authzreg", "ci-token", "pullers"))
        await bumps(ids.update_token("authzreg", "ci-token", status="disabled"))
        await bumps(ids.set_token_password("authzreg", "ci-token", "password1", "h"))
        await bumps(ids.delete_token_password("authzreg", "ci-token", "password1"))
        await bumps(ids.delete_token("authzreg", "ci-token"))
        await bumps(ids.delete_scope_map("authzreg", "pullers"))
        await bumps(
            ids.add_signing_key("k", "ES256", "p", "q", signs_until=now, verifies_until=now)
        )
        await bumps(ids.retire_signing_key("k", now - timedelta(seconds=1)))
        await bumps(ids.delete_expired_signing_keys(now + timedelta(seconds=1)))
        await bumps(ids.delete_principal(alice.id))
        await bumps(ids.delete_registry("authzreg"))

        # Reads, and writes that change nothing, leave it alone.
        await ids.create_registry("readreg")
        carol = await ids.create_principal("user", "carol")
        await ids.create_scope_map("readreg", "pullers", [PULL])
        await ids.create_token("readreg", "ci-token", "pullers")
        await ids.create_role_assignment(carol.id, "AcrPull", "/registries/readreg")
        await ids.add_signing_key("k2", "ES256", "p", "q", signs_until=now, verifies_until=now)
        for read in (
            lambda: ids.get_registry_info("readreg"),
            lambda: ids.list_registries(),
            lambda: ids.get_admin_credentials("readreg"),
            lambda: ids.get_principal(carol.id),
            lambda: ids.get_principal_by_name("carol"),
            lambda: ids.list_principals(),
            lambda: ids.assignments_for(carol.id),
            lambda: ids.list_role_assignments(scope="/registries/readreg"),
            lambda: ids.get_scope_map("readreg", "pullers"),
            lambda: ids.list_scope_maps("readreg"),
            lambda: ids.get_token("readreg", "ci-token"),
            lambda: ids.list_tokens("readreg"),
            lambda: ids.list_token_passwords("readreg", "ci-token"),
            lambda: ids.get_signing_key("k2"),
            lambda: ids.list_signing_keys(),
            lambda: ids.active_signing_keys(),
            lambda: ids.verifiable_signing_keys(),
            lambda: store.get_registry("readreg"),
        ):
            await unchanged(read())
        for no_op in (
            lambda: ids.update_registry("readreg"),
            lambda: ids.update_scope_map("readreg", "pullers"),
            lambda: ids.update_token("readreg", "ci-token"),
            lambda: ids.create_role_assignment(carol.id, "AcrPull", "/registries/readreg"),
            lambda: ids.delete_registry("absentreg"),
            lambda: ids.delete_principal(str(uuid.uuid4())),
            lambda: ids.delete_role_assignment(str(uuid.uuid4())),
            lambda: ids.delete_scope_map("readreg", "absent"),
            lambda: ids.delete_token("readreg", "absent"),
            lambda: ids.delete_token_password("readreg", "ci-token", "password2"),
            lambda: ids.delete_expired_signing_keys(now - timedelta(days=1)),
        ):
            await unchanged(no_op())

        # Writes that fail change nothing either.
        async def fails(aw: Awaitable[Any], error: type[Exception]) -> None:
            with pytest.raises(error):
                await unchanged(aw)

        await fails(ids.create_registry("READREG"), AlreadyExists)
        await fails(ids.create_principal("user", "CAROL"), AlreadyExists)
        await fails(ids.create_scope_map("readreg", "pullers", [PULL]), AlreadyExists)
        await fails(ids.create_token("readreg", "ci-token", "pullers"), AlreadyExists)
        await fails(ids.delete_scope_map("readreg", "pullers"), InUse)
        await fails(ids.update_registry("absentreg", sku="Basic"), NotFound)
        await fails(ids.set_principal_secret(str(uuid.uuid4()), "h"), NotFound)

    asyncio.run(scenario())


# -- concurrency -----------------------------------------------------------------------------


def test_concurrent_creates_of_one_principal_name(store: MetadataStore, ids: IdentityStore) -> None:
    before = run(ids.authz_version())
    results = gather(
        *(ids.create_principal("user", "Racer" if i % 2 else "racer") for i in range(16))
    )
    winners = [r for r in results if isinstance(r, Principal)]
    losers = [r for r in results if not isinstance(r, Principal)]
    assert len(winners) == 1
    assert len(losers) == 15 and all(type(r) is AlreadyExists for r in losers)
    assert run(store.count("principals")) == 1
    assert run(ids.get_principal_by_name("RACER")) == winners[0]
    assert run(ids.authz_version()) == before + 1


def test_concurrent_creates_of_one_registry_and_one_token(ids: IdentityStore) -> None:
    results = gather(*(ids.create_registry("RaceReg" if i % 2 else "racereg") for i in range(16)))
    assert sum(isinstance(r, RegistryInfo) for r in results) == 1
    assert all(type(r) is AlreadyExists for r in results if not isinstance(r, RegistryInfo))
    run(ids.create_scope_map("racereg", "pullers", [PULL]))
    results = gather(*(ids.create_token("racereg", "race-token", "pullers") for _ in range(16)))
    assert sum(isinstance(r, Token) for r in results) == 1
    assert all(type(r) is AlreadyExists for r in results if not isinstance(r, Token))


def test_concurrent_changes_each_bump_the_version(store: MetadataStore, ids: IdentityStore) -> None:
    before = run(ids.authz_version())
    results = gather(*(ids.create_principal("user", f"user{i}") for i in range(16)))
    assert all(isinstance(r, Principal) for r in results)
    assert run(ids.authz_version()) == before + 16
    results = gather(
        *(ids.create_role_assignment(p.id, "AcrPull", "/") for p in results),
        *(
            ids.create_role_assignment(results[0].id, "AcrPush", f"/registries/r{i}")
            for i in range(8)
        ),
    )
    assert all(isinstance(r, RoleAssignmentRecord) for r in results)
    assert run(ids.authz_version()) == before + 16 + 24
    assert run(store.count("role_assignments")) == 24
