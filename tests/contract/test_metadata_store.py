"""The MetadataStore contract (hamn.metadata.store), run against every supported database.

SQLite always runs. PostgreSQL runs when ``HAMN_TEST_POSTGRES_URL`` names a
database the tests may create schemas in (e.g.
``postgresql+psycopg://hamn:secret@127.0.0.1/hamn_test``); each test gets a
schema of its own, dropped afterwards, so parallel workers never meet.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, make_url, text
from store_support import gather, run

from hamn.metadata.models import (
    AffectedContent,
    AttributeChanges,
    ChangeableAttributes,
    ManifestRecord,
    Registry,
    Upload,
)
from hamn.metadata.schema import metadata
from hamn.metadata.store import (
    Guard,
    IntegrityError,
    MetadataStore,
    MissingReferences,
    UploadConflict,
    create_metadata_engine,
    migrate,
)
from hamn.oci.digest import digest_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


# -- databases -------------------------------------------------------------------------------


@pytest.fixture
def engine(empty_database_url: str, sqlite_template: Path) -> Iterator[Engine]:
    url = make_url(empty_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        shutil.copyfile(sqlite_template, url.database)
    eng = create_metadata_engine(empty_database_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[MetadataStore]:
    s = MetadataStore(engine, threads=16)
    yield s
    s.close()


@pytest.fixture
def reg(store: MetadataStore) -> int:
    return run(store.ensure_registry("testreg")).id


def blob(name: str) -> tuple[str, int]:
    data = f"blob {name}".encode()
    return digest_bytes(data), len(data)


def link(store: MetadataStore, reg: int, repo: str, name: str) -> str:
    digest, size = blob(name)
    run(store.link_blob(reg, repo, digest, size))
    return digest


def manifest_body(name: str) -> bytes:
    return f'{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","name":"{name}"}}'.encode()


def put_later(
    store: MetadataStore,
    reg: int,
    repo: str,
    name: str,
    *,
    tag: str | None = None,
    blobs: tuple[str, ...] = (),
    children: tuple[str, ...] = (),
    subject: str | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    media_type: str = OCI_MANIFEST,
    guard: Guard | None = None,
) -> Awaitable[None]:
    """The push of the manifest ``name``, not awaited yet."""
    body = manifest_body(name)
    return store.put_manifest(
        reg,
        repo,
        digest=digest_bytes(body),
        media_type=media_type,
        artifact_type=artifact_type,
        subject_digest=subject,
        content=body,
        annotations=annotations,
        blobs=blobs,
        children=children,
        tag=tag,
        guard=guard,
    )


def put(store: MetadataStore, reg: int, repo: str, name: str, **options: Any) -> str:
    """Store the manifest ``name`` (options as :func:`put_later`) and return its digest."""
    run(put_later(store, reg, repo, name, **options))
    return digest_bytes(manifest_body(name))


# -- migrations ------------------------------------------------------------------------------


def test_migrate_is_idempotent(empty_database_url: str) -> None:
    eng = create_metadata_engine(empty_database_url)
    try:
        migrate(eng)
        migrate(eng)
        with eng.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            assert len(list(versions)) == 1
        assert set(metadata.tables) <= set(inspect(eng).get_table_names())
        store = MetadataStore(eng)
        # The store works on the twice-migrated schema.
        assert run(store.ensure_registry("afterwards")).name == "afterwards"
        store.close()
    finally:
        eng.dispose()


def test_migrations_build_exactly_the_declared_schema(empty_database_url: str) -> None:
    eng = create_metadata_engine(empty_database_url)
    try:
        migrate(eng)
        with eng.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        eng.dispose()


# -- registries ------------------------------------------------------------------------------


def test_ensure_registry_is_idempotent_and_case_insensitive(store: MetadataStore) -> None:
    first = run(store.ensure_registry("MyRegistry"))
    assert isinstance(first, Registry)
    assert first.name == "MyRegistry"
    assert first.created_at.tzinfo is not None
    for spelling in ("MyRegistry", "myregistry", "MYREGISTRY"):
        again = run(store.ensure_registry(spelling))
        assert again == first  # the first spelling is kept
    assert run(store.get_registry("mYrEgIsTrY")) == first
    assert run(store.get_registry("other")) is None
    assert run(store.count("registries")) == 1


def test_registries_are_distinct(store: MetadataStore) -> None:
    a = run(store.ensure_registry("alpha"))
    b = run(store.ensure_registry("bravo"))
    assert a.id != b.id
    assert run(store.count("registries")) == 2


def test_concurrent_ensure_registry_creates_one(store: MetadataStore) -> None:
    results = gather(*(store.ensure_registry("Racing" if i % 2 else "racing") for i in range(16)))
    assert not [r for r in results if isinstance(r, BaseException)]
    assert len({r.id for r in results}) == 1
    assert run(store.count("registries")) == 1


# -- blobs -----------------------------------------------------------------------------------


def test_link_blob_lets_the_repository_serve_it(store: MetadataStore, reg: int) -> None:
    digest, size = blob("layer")
    assert run(store.linked_blob_size(reg, "app", digest)) is None
    run(store.link_blob(reg, "app", digest, size))
    assert run(store.linked_blob_size(reg, "app", digest)) == size
    assert run(store.repository_exists(reg, "app"))
    # Other repositories of the registry may not serve it through this link.
    assert run(store.linked_blob_size(reg, "other", digest)) is None


def test_link_blob_is_idempotent(store: MetadataStore, reg: int) -> None:
    digest, size = blob("layer")
    for _ in range(3):
        run(store.link_blob(reg, "app", digest, size))
    assert run(store.count("blobs")) == 1
    assert run(store.count("repository_blobs")) == 1
    assert run(store.count("repositories")) == 1


def test_one_blob_row_for_many_repositories(store: MetadataStore, reg: int) -> None:
    other = run(store.ensure_registry("otherreg")).id
    digest, size = blob("shared")
    run(store.link_blob(reg, "a", digest, size))
    run(store.link_blob(reg, "b", digest, size))
    run(store.link_blob(other, "a", digest, size))
    assert run(store.count("blobs")) == 1
    assert run(store.count("repository_blobs")) == 3


def test_blob_size_in_registry(store: MetadataStore, reg: int) -> None:
    digest, size = blob("layer")
    run(store.link_blob(reg, "app", digest, size))
    assert run(store.blob_size_in_registry(reg, digest)) == size
    assert run(store.blob_size_in_registry(reg, digest, "app")) == size
    assert run(store.blob_size_in_registry(reg, digest, "other")) is None
    assert run(store.blob_size_in_registry(reg, blob("absent")[0])) is None


def test_blob_lookups_never_cross_registries(store: MetadataStore, reg: int) -> None:
    other = run(store.ensure_registry("otherreg")).id
    digest, size = blob("private layer")
    run(store.link_blob(reg, "app", digest, size))
    # The other registry has a repository of the same name, with content of its own.
    link(store, other, "app", "something else")
    assert run(store.blob_size_in_registry(other, digest)) is None
    assert run(store.blob_size_in_registry(other, digest, "app")) is None
    assert run(store.linked_blob_size(other, "app", digest)) is None
    assert run(store.blob_size_in_registry(reg, digest)) == size


def test_unlink_blob(store: MetadataStore, reg: int) -> None:
    digest = link(store, reg, "app", "layer")
    assert run(store.unlink_blob(reg, "app", digest)) is True
    assert run(store.linked_blob_size(reg, "app", digest)) is None
    assert run(store.unlink_blob(reg, "app", digest)) is False
    assert run(store.unlink_blob(reg, "no-such-repo", digest)) is False


def test_concurrent_link_blob_of_the_same_digest(store: MetadataStore, reg: int) -> None:
    digest, size = blob("popular")
    results = gather(*(store.link_blob(reg, "fresh", digest, size) for _ in range(16)))
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert run(store.count("blobs")) == 1
    assert run(store.count("repository_blobs")) == 1
    assert run(store.count("repositories")) == 1
    assert run(store.linked_blob_size(reg, "fresh", digest)) == size


def test_concurrent_link_blob_into_many_repositories(store: MetadataStore, reg: int) -> None:
    digest, size = blob("base layer")
    results = gather(*(store.link_blob(reg, f"repo{i}", digest, size) for i in range(16)))
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert run(store.count("blobs")) == 1
    assert run(store.count("repository_blobs")) == 16
    assert run(store.list_repositories(reg, None, None)) == sorted(f"repo{i}" for i in range(16))


# -- manifests -------------------------------------------------------------------------------


def test_put_manifest_and_get_it_by_digest_and_tag(store: MetadataStore, reg: int) -> None:
    config, layer = link(store, reg, "app", "config"), link(store, reg, "app", "layer")
    digest = put(
        store, reg, "app", "v1", tag="v1", blobs=(config, layer), artifact_type="application/x"
    )
    by_digest = run(store.get_manifest(reg, "app", digest=digest))
    by_tag = run(store.get_manifest(reg, "app", tag="v1"))
    assert isinstance(by_digest, ManifestRecord)
    assert by_digest == by_tag
    assert by_digest.digest == digest
    assert by_digest.media_type == OCI_MANIFEST
    assert by_digest.size == len(manifest_body("v1"))
    assert by_digest.artifact_type == "application/x"
    assert by_digest.subject_digest is None
    assert by_digest.created_at.tzinfo is not None
    assert run(store.manifest_content(by_digest.id)) == manifest_body("v1")
    assert run(store.count("manifest_blobs")) == 2


def test_get_manifest_misses(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "v1", tag="v1")
    assert run(store.get_manifest(reg, "app", tag="v2")) is None
    assert run(store.get_manifest(reg, "app", digest=digest_bytes(b"other"))) is None
    assert run(store.get_manifest(reg, "other", digest=digest)) is None
    assert run(store.get_manifest(reg, "other", tag="v1")) is None
    other = run(store.ensure_registry("otherreg")).id
    assert run(store.get_manifest(other, "app", digest=digest)) is None
    assert run(store.manifest_content(10**9)) is None


def test_put_manifest_twice_is_idempotent(store: MetadataStore, reg: int) -> None:
    layer = link(store, reg, "app", "layer")
    first = put(store, reg, "app", "v1", tag="v1", blobs=(layer,))
    second = put(store, reg, "app", "v1", tag="v1", blobs=(layer,))
    assert first == second
    assert run(store.count("manifests")) == 1
    assert run(store.count("manifest_blobs")) == 1
    assert run(store.count("tags")) == 1


def test_put_manifest_with_missing_blobs_stores_nothing(store: MetadataStore, reg: int) -> None:
    present = link(store, reg, "app", "present")
    absent_a, absent_b = blob("absent a")[0], blob("absent b")[0]
    with pytest.raises(MissingReferences) as exc:
        put(store, reg, "app", "v1", tag="v1", blobs=(absent_b, present, absent_a))
    assert exc.value.blobs == sorted([absent_a, absent_b])
    assert exc.value.manifests == []
    assert run(store.count("manifests")) == 0
    assert run(store.count("manifest_blobs")) == 0
    assert run(store.count("tags")) == 0


def test_put_manifest_failure_does_not_create_the_repository(
    store: MetadataStore, reg: int
) -> None:
    with pytest.raises(MissingReferences):
        put(store, reg, "brand-new", "v1", tag="v1", blobs=(blob("absent")[0],))
    assert run(store.repository_exists(reg, "brand-new")) is False
    assert run(store.list_repositories(reg, None, None)) == []


def test_put_manifest_with_missing_children_stores_nothing(store: MetadataStore, reg: int) -> None:
    child = put(store, reg, "app", "amd64")
    absent = digest_bytes(b"arm64 manifest")
    with pytest.raises(MissingReferences) as exc:
        put(
            store, reg, "app", "index", tag="latest", children=(child, absent), media_type=OCI_INDEX
        )
    assert exc.value.blobs == []
    assert exc.value.manifests == [absent]
    assert run(store.count("manifests")) == 1
    assert run(store.count("manifest_children")) == 0
    assert run(store.count("tags")) == 0


def test_references_must_be_in_the_same_repository(store: MetadataStore, reg: int) -> None:
    layer = link(store, reg, "elsewhere", "layer")
    child = put(store, reg, "elsewhere", "child")
    with pytest.raises(MissingReferences) as exc:
        put(store, reg, "app", "v1", blobs=(layer,), children=(child,))
    assert (exc.value.blobs, exc.value.manifests) == ([layer], [child])


def test_index_with_children(store: MetadataStore, reg: int) -> None:
    children = (put(store, reg, "app", "amd64"), put(store, reg, "app", "arm64"))
    index = put(store, reg, "app", "index", tag="latest", children=children, media_type=OCI_INDEX)
    record = run(store.get_manifest(reg, "app", tag="latest"))
    assert record is not None and record.digest == index and record.media_type == OCI_INDEX
    assert run(store.count("manifest_children")) == 2


def test_tag_upsert_moves_the_tag(store: MetadataStore, reg: int) -> None:
    v1 = put(store, reg, "app", "v1", tag="latest")
    v2 = put(store, reg, "app", "v2", tag="latest")
    record = run(store.get_manifest(reg, "app", tag="latest"))
    assert record is not None and record.digest == v2
    # The old manifest stays, untagged.
    assert run(store.get_manifest(reg, "app", digest=v1)) is not None
    assert run(store.list_tags(reg, "app", None, None)) == ["latest"]
    assert run(store.count("tags")) == 1
    # And it can move back.
    put(store, reg, "app", "v1", tag="latest")
    record = run(store.get_manifest(reg, "app", tag="latest"))
    assert record is not None and record.digest == v1


def test_same_tag_in_two_repositories(store: MetadataStore, reg: int) -> None:
    a = put(store, reg, "a", "in a", tag="latest")
    b = put(store, reg, "b", "in b", tag="latest")
    ra, rb = (
        run(store.get_manifest(reg, "a", tag="latest")),
        run(store.get_manifest(reg, "b", tag="latest")),
    )
    assert ra is not None and rb is not None
    assert (ra.digest, rb.digest) == (a, b)


def test_delete_manifest_removes_its_tags(store: MetadataStore, reg: int) -> None:
    layer = link(store, reg, "app", "layer")
    doomed = put(store, reg, "app", "doomed", tag="v1", blobs=(layer,))
    put(store, reg, "app", "doomed", tag="stable", blobs=(layer,))
    kept = put(store, reg, "app", "kept", tag="v2", blobs=(layer,))
    assert run(store.delete_manifest(reg, "app", doomed)) is True
    assert run(store.get_manifest(reg, "app", digest=doomed)) is None
    assert run(store.get_manifest(reg, "app", tag="v1")) is None
    assert run(store.list_tags(reg, "app", None, None)) == ["v2"]
    assert run(store.get_manifest(reg, "app", digest=kept)) is not None
    assert run(store.count("manifest_blobs")) == 1  # only the kept manifest's reference
    # The blob link is the repository's, not the manifest's.
    assert run(store.linked_blob_size(reg, "app", layer)) is not None
    assert run(store.delete_manifest(reg, "app", doomed)) is False
    assert run(store.delete_manifest(reg, "no-such-repo", doomed)) is False


def test_delete_tag_keeps_the_manifest(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "v1", tag="v1")
    put(store, reg, "app", "v1", tag="also")
    assert run(store.delete_tag(reg, "app", "v1")) is True
    assert run(store.get_manifest(reg, "app", tag="v1")) is None
    assert run(store.get_manifest(reg, "app", digest=digest)) is not None
    assert run(store.list_tags(reg, "app", None, None)) == ["also"]
    assert run(store.delete_tag(reg, "app", "v1")) is False
    assert run(store.delete_tag(reg, "no-such-repo", "v1")) is False


def test_concurrent_put_manifest_of_the_same_tag(store: MetadataStore, reg: int) -> None:
    layer = link(store, reg, "app", "layer")
    names = [f"build-{i % 4}" for i in range(16)]  # four manifests, each pushed four times
    digests = {digest_bytes(manifest_body(n)) for n in names}

    def push(name: str) -> Awaitable[None]:
        body = manifest_body(name)
        return store.put_manifest(
            reg,
            "app",
            digest=digest_bytes(body),
            media_type=OCI_MANIFEST,
            artifact_type=None,
            subject_digest=None,
            content=body,
            annotations=None,
            blobs=[layer],
            children=[],
            tag="latest",
        )

    results = gather(*(push(n) for n in names))
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert run(store.count("manifests")) == len(digests) == 4
    assert run(store.count("manifest_blobs")) == 4
    assert run(store.count("tags")) == 1
    tagged = run(store.get_manifest(reg, "app", tag="latest"))
    assert tagged is not None and tagged.digest in digests
    for digest in digests:
        assert run(store.get_manifest(reg, "app", digest=digest)) is not None


def test_concurrent_first_pushes_into_a_new_repository(store: MetadataStore, reg: int) -> None:
    # Sixteen manifests with no blobs race to create the same repository.
    results = gather(
        *(
            store.put_manifest(
                reg,
                "new-repo",
                digest=digest_bytes(manifest_body(f"m{i}")),
                media_type=OCI_MANIFEST,
                artifact_type=None,
                subject_digest=None,
                content=manifest_body(f"m{i}"),
                annotations=None,
                blobs=[],
                children=[],
                tag=f"t{i}",
            )
            for i in range(16)
        )
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert run(store.count("repositories")) == 1
    assert run(store.count("manifests")) == 16
    assert run(store.list_tags(reg, "new-repo", None, None)) == sorted(f"t{i}" for i in range(16))


# -- listing ---------------------------------------------------------------------------------

TAGS = ["v1.9", "latest", "B", "a", "v1.10", "_x", "A", "b", "0", "v1.10-rc1", "z"]


def test_list_tags_in_lexical_order(store: MetadataStore, reg: int) -> None:
    for i, tag in enumerate(TAGS):
        put(store, reg, "app", f"m{i % 3}", tag=tag)
    # Byte order, as Distribution sorts: digits, then upper case, then "_", then lower case.
    assert run(store.list_tags(reg, "app", None, None)) == sorted(TAGS)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 11, 50])
def test_list_tags_paging(store: MetadataStore, reg: int, n: int) -> None:
    for i, tag in enumerate(TAGS):
        put(store, reg, "app", f"m{i}", tag=tag)
    pages: list[list[str]] = []
    last: str | None = None
    while True:
        page = run(store.list_tags(reg, "app", n, last))
        assert page is not None
        assert len(page) <= n
        if not page:
            break
        pages.append(page)
        last = page[-1]
    assert [t for p in pages for t in p] == sorted(TAGS)
    assert all(len(p) == n for p in pages[:-1])


def test_list_tags_edges(store: MetadataStore, reg: int) -> None:
    assert run(store.list_tags(reg, "no-such-repo", None, None)) is None
    link(store, reg, "empty", "a blob but no manifest")
    assert run(store.list_tags(reg, "empty", None, None)) == []
    for tag in ("a", "b", "c"):
        put(store, reg, "app", tag, tag=tag)
    assert run(store.list_tags(reg, "app", 0, None)) == []
    assert run(store.list_tags(reg, "app", None, "")) == ["a", "b", "c"]
    assert run(store.list_tags(reg, "app", None, "a")) == ["b", "c"]
    assert run(store.list_tags(reg, "app", None, "bb")) == ["c"]  # last need not be a tag
    assert run(store.list_tags(reg, "app", 10, "c")) == []


REPOS = ["b", "a/b", "a", "a-b", "a.b", "a_b", "ab", "a/a", "z/y/x", "0"]


def test_list_repositories_in_lexical_order(store: MetadataStore, reg: int) -> None:
    for repo in REPOS:
        link(store, reg, repo, "layer")
    assert run(store.list_repositories(reg, None, None)) == sorted(REPOS)


@pytest.mark.parametrize("n", [1, 3, 4, 10, 100])
def test_list_repositories_paging(store: MetadataStore, reg: int, n: int) -> None:
    for repo in REPOS:
        put(store, reg, repo, "m")
    seen: list[str] = []
    last: str | None = None
    while page := run(store.list_repositories(reg, n, last)):
        assert len(page) <= n
        seen += page
        last = page[-1]
    assert seen == sorted(REPOS)


def test_list_repositories_is_per_registry(store: MetadataStore, reg: int) -> None:
    other = run(store.ensure_registry("otherreg")).id
    link(store, reg, "mine", "layer")
    link(store, other, "theirs", "layer")
    assert run(store.list_repositories(reg, None, None)) == ["mine"]
    assert run(store.list_repositories(other, None, None)) == ["theirs"]
    assert run(store.list_repositories(reg, 1, "mine")) == []


# -- referrers -------------------------------------------------------------------------------


def test_referrers_by_subject(store: MetadataStore, reg: int) -> None:
    subject = put(store, reg, "app", "image", tag="v1")
    other_subject = put(store, reg, "app", "other image")
    sig = put(
        store,
        reg,
        "app",
        "signature",
        subject=subject,
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        annotations={"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
    )
    sbom = put(store, reg, "app", "sbom", subject=subject, artifact_type="application/spdx+json")
    put(store, reg, "app", "unrelated", subject=other_subject, artifact_type="application/x")
    put(store, reg, "elsewhere", "same subject, other repo", subject=subject)

    found = run(store.referrers(reg, "app", subject))
    assert found is not None
    by_digest = {r.digest: r for r in found}
    assert set(by_digest) == {sig, sbom}
    assert by_digest[sig].artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert by_digest[sig].annotations == {
        "org.opencontainers.image.created": "2024-05-01T00:00:00Z"
    }
    assert by_digest[sig].media_type == OCI_MANIFEST
    assert by_digest[sig].size == len(manifest_body("signature"))
    assert by_digest[sbom].annotations is None


def test_referrers_before_their_subject_exists(store: MetadataStore, reg: int) -> None:
    # A signature may be pushed before the image it signs (the spec allows it).
    future = digest_bytes(b"not pushed yet")
    sig = put(store, reg, "app", "early signature", subject=future)
    found = run(store.referrers(reg, "app", future))
    assert found is not None and [r.digest for r in found] == [sig]


def test_referrers_edges(store: MetadataStore, reg: int) -> None:
    assert run(store.referrers(reg, "no-such-repo", digest_bytes(b"x"))) is None
    subject = put(store, reg, "app", "image")
    assert run(store.referrers(reg, "app", subject)) == []


def test_deleting_a_referrer_removes_it(store: MetadataStore, reg: int) -> None:
    subject = put(store, reg, "app", "image")
    sig = put(store, reg, "app", "signature", subject=subject)
    run(store.delete_manifest(reg, "app", sig))
    assert run(store.referrers(reg, "app", subject)) == []


# -- uploads ---------------------------------------------------------------------------------


def test_upload_lifecycle(store: MetadataStore, reg: int) -> None:
    created = run(store.create_upload("upload-0001", reg, "app"))
    assert isinstance(created, Upload)
    assert (created.id, created.registry_id, created.repository, created.size) == (
        "upload-0001",
        reg,
        "app",
        0,
    )
    got = run(store.get_upload("upload-0001"))
    assert got is not None
    assert (got.id, got.registry_id, got.repository, got.size) == ("upload-0001", reg, "app", 0)
    assert got.created_at.tzinfo is not None and got.updated_at.tzinfo is not None

    run(store.advance_upload("upload-0001", 0, 10))
    run(store.advance_upload("upload-0001", 10, 25))
    got = run(store.get_upload("upload-0001"))
    assert got is not None and got.size == 25
    assert got.updated_at >= got.created_at

    digest, size = blob("uploaded")
    run(store.finish_upload("upload-0001", reg, "app", digest, size))
    assert run(store.get_upload("upload-0001")) is None
    assert run(store.linked_blob_size(reg, "app", digest)) == size
    assert run(store.repository_exists(reg, "app"))


def test_advance_upload_is_compare_and_set(store: MetadataStore, reg: int) -> None:
    run(store.create_upload("upload-cas", reg, "app"))
    run(store.advance_upload("upload-cas", 0, 10))
    with pytest.raises(UploadConflict):
        run(store.advance_upload("upload-cas", 0, 20))  # stale: another request moved it
    got = run(store.get_upload("upload-cas"))
    assert got is not None and got.size == 10
    with pytest.raises(UploadConflict):
        run(store.advance_upload("no-such-upload", 0, 1))


def test_concurrent_advances_only_one_wins(store: MetadataStore, reg: int) -> None:
    run(store.create_upload("upload-race", reg, "app"))
    results = gather(*(store.advance_upload("upload-race", 0, 100 + i) for i in range(16)))
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, UploadConflict) for r in results if isinstance(r, BaseException))
    got = run(store.get_upload("upload-race"))
    assert got is not None and 100 <= got.size < 116


def test_finish_upload_of_an_already_linked_blob(store: MetadataStore, reg: int) -> None:
    digest, size = blob("known")
    run(store.link_blob(reg, "app", digest, size))
    run(store.create_upload("upload-dup", reg, "app"))
    run(store.finish_upload("upload-dup", reg, "app", digest, size))
    assert run(store.count("blobs")) == 1
    assert run(store.count("repository_blobs")) == 1
    assert run(store.get_upload("upload-dup")) is None


def test_delete_upload(store: MetadataStore, reg: int) -> None:
    run(store.create_upload("upload-del", reg, "app"))
    assert run(store.delete_upload("upload-del")) is True
    assert run(store.get_upload("upload-del")) is None
    assert run(store.delete_upload("upload-del")) is False


def test_upload_ids_are_unique(store: MetadataStore, reg: int) -> None:
    run(store.create_upload("upload-once", reg, "app"))
    with pytest.raises(IntegrityError):
        run(store.create_upload("upload-once", reg, "other"))
    got = run(store.get_upload("upload-once"))
    assert got is not None and got.repository == "app"


def test_get_missing_upload(store: MetadataStore) -> None:
    assert run(store.get_upload("never-created")) is None


# -- changeable attributes (locks) -----------------------------------------------------------

LOCKED_WRITE = AttributeChanges(write_enabled=False)


def flags(delete: bool = True, write: bool = True, read: bool = True, listed: bool = True) -> Any:
    return ChangeableAttributes(delete, write, read, listed)


class Refused(Exception):
    """What the test guards raise: the store must store nothing and pass it on."""


def refuse(seen: list[AffectedContent]) -> Callable[[AffectedContent], None]:
    """A guard that records what it was shown and refuses the write."""

    def guard(found: AffectedContent) -> None:
        seen.append(found)
        raise Refused

    return guard


def test_migration_0004_unlocks_existing_content(empty_database_url: str) -> None:
    eng = create_metadata_engine(empty_database_url)
    try:
        cfg = AlembicConfig()
        cfg.set_main_option(
            "script_location", str(resources.files("hamn.metadata").joinpath("migrations"))
        )
        with eng.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            now = datetime.now(UTC)
            conn.execute(
                text("INSERT INTO registries (name, name_key, created_at) VALUES ('r', 'r', :n)"),
                {"n": now},
            )
            conn.execute(
                text(
                    "INSERT INTO repositories (registry_id, name, created_at, updated_at) "
                    "SELECT id, 'old', :n, :n FROM registries"
                ),
                {"n": now},
            )
        migrate(eng)
        with eng.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT delete_enabled, write_enabled, read_enabled, list_enabled "
                    "FROM repositories"
                )
            ).one()
        assert [bool(v) for v in row] == [True] * 4
        store = MetadataStore(eng)
        try:
            reg = run(store.ensure_registry("r")).id
            assert run(store.list_repositories(reg, None, None)) == ["old"]
        finally:
            store.close()
        # And back to 0003: the columns go, the content stays (no table is rebuilt).
        with eng.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        assert "list_enabled" not in {c["name"] for c in inspect(eng).get_columns("repositories")}
        with eng.connect() as conn:
            assert conn.execute(text("SELECT name FROM repositories")).scalars().all() == ["old"]
    finally:
        eng.dispose()


def test_new_content_is_unlocked(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "v1", tag="v1")
    info = run(store.repository_info(reg, "app"))
    assert info is not None and info.attributes == flags()
    tag = run(store.get_tag(reg, "app", "v1"))
    assert tag is not None and tag.attributes == flags()
    manifest = run(store.get_manifest_info(reg, "app", digest))
    assert manifest is not None and manifest.attributes == flags()
    record = run(store.get_manifest(reg, "app", tag="v1"))
    assert record is not None
    assert (record.repository_read_enabled, record.manifest_read_enabled) == (True, True)
    assert record.tag_read_enabled is True


def test_set_attributes_of_each_kind(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "v1", tag="v1")
    assert run(store.set_attributes(reg, "app", LOCKED_WRITE)) == flags(write=False)
    changes = AttributeChanges(delete_enabled=False, read_enabled=False)
    assert run(store.set_attributes(reg, "app", changes, tag="v1")) == flags(
        delete=False, read=False
    )
    changes = AttributeChanges(list_enabled=False)
    assert run(store.set_attributes(reg, "app", changes, digest=digest)) == flags(listed=False)
    # Each kept its own flags, and a later change leaves the flags it does not name alone.
    info = run(store.repository_info(reg, "app"))
    assert info is not None and info.attributes == flags(write=False)
    tag = run(store.get_tag(reg, "app", "v1"))
    assert tag is not None and tag.attributes == flags(delete=False, read=False)
    manifest = run(store.get_manifest_info(reg, "app", digest))
    assert manifest is not None and manifest.attributes == flags(listed=False)
    changes = AttributeChanges(read_enabled=True)
    assert run(store.set_attributes(reg, "app", changes, tag="v1")) == flags(delete=False)
    # An empty change reads the attributes as they are.
    assert run(store.set_attributes(reg, "app", AttributeChanges())) == flags(write=False)


def test_set_attributes_of_missing_things(store: MetadataStore, reg: int) -> None:
    put(store, reg, "app", "v1", tag="v1")
    missing = digest_bytes(b"missing")
    assert run(store.set_attributes(reg, "nope", LOCKED_WRITE)) is None
    assert run(store.set_attributes(reg, "app", LOCKED_WRITE, tag="nope")) is None
    assert run(store.set_attributes(reg, "app", LOCKED_WRITE, digest=missing)) is None
    other = run(store.ensure_registry("otherreg")).id
    assert run(store.set_attributes(other, "app", LOCKED_WRITE)) is None


def test_attributes_are_per_repository(store: MetadataStore, reg: int) -> None:
    a = put(store, reg, "a", "same", tag="v1")
    b = put(store, reg, "b", "same", tag="v1")
    assert a == b
    run(store.set_attributes(reg, "a", LOCKED_WRITE, digest=a))
    run(store.set_attributes(reg, "a", AttributeChanges(read_enabled=False), tag="v1"))
    in_b = run(store.get_manifest_info(reg, "b", b))
    assert in_b is not None and in_b.attributes == flags()
    tag_b = run(store.get_tag(reg, "b", "v1"))
    assert tag_b is not None and tag_b.attributes == flags()
    record = run(store.get_manifest(reg, "b", tag="v1"))
    assert record is not None and record.tag_read_enabled is True


def test_pull_locks_come_with_the_manifest(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "v1", tag="v1")
    off = AttributeChanges(read_enabled=False)
    run(store.set_attributes(reg, "app", off, tag="v1"))
    by_tag = run(store.get_manifest(reg, "app", tag="v1"))
    by_digest = run(store.get_manifest(reg, "app", digest=digest))
    assert by_tag is not None and by_digest is not None
    assert (by_tag.repository_read_enabled, by_tag.manifest_read_enabled) == (True, True)
    assert by_tag.tag_read_enabled is False
    assert by_digest.tag_read_enabled is True  # no tag on the way
    run(store.set_attributes(reg, "app", off, digest=digest))
    run(store.set_attributes(reg, "app", off))
    by_digest = run(store.get_manifest(reg, "app", digest=digest))
    assert by_digest is not None
    assert (by_digest.repository_read_enabled, by_digest.manifest_read_enabled) == (False, False)


def test_listings_leave_out_what_is_not_list_enabled(store: MetadataStore, reg: int) -> None:
    hidden = AttributeChanges(list_enabled=False)
    shown = AttributeChanges(list_enabled=True)
    digests = [put(store, reg, "app", f"m{i}", tag=f"t{i}") for i in range(4)]
    put(store, reg, "other", "x", tag="x")
    run(store.set_attributes(reg, "app", hidden, tag="t1"))
    run(store.set_attributes(reg, "app", hidden, digest=digests[2]))
    run(store.set_attributes(reg, "other", hidden))
    assert run(store.list_tags(reg, "app", None, None)) == ["t0", "t2", "t3"]
    # Paging steps over a hidden tag, also when ``last`` names it.
    assert run(store.list_tags(reg, "app", 1, "t0")) == ["t2"]
    assert run(store.list_tags(reg, "app", None, "t1")) == ["t2", "t3"]
    page = run(store.tag_page(reg, "app", limit=10, order="name"))
    assert page is not None and [tag.name for tag in page] == ["t0", "t2", "t3"]
    manifests = run(store.manifest_page(reg, "app", limit=10, order="timeasc"))
    assert manifests is not None
    assert [m.digest for m in manifests] == [digests[0], digests[1], digests[3]]
    # A listed manifest still names every tag it has (a hidden tag is not an untagged one).
    assert run(store.list_repositories(reg, None, None)) == ["app"]
    # Addressed directly, hidden things are still there.
    assert run(store.get_tag(reg, "app", "t1")) is not None
    assert run(store.repository_info(reg, "other")) is not None
    run(store.set_attributes(reg, "app", shown, tag="t1"))
    run(store.set_attributes(reg, "other", shown))
    assert run(store.list_tags(reg, "app", None, None)) == ["t0", "t1", "t2", "t3"]
    assert run(store.list_repositories(reg, None, None)) == ["app", "other"]


def test_a_listed_manifest_names_its_hidden_tags(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "m", tag="hidden")
    run(store.set_attributes(reg, "app", AttributeChanges(list_enabled=False), tag="hidden"))
    page = run(store.manifest_page(reg, "app", limit=10, order="name"))
    assert page is not None and [(m.digest, m.tags) for m in page] == [(digest, ("hidden",))]


def test_push_guard_sees_the_repository_and_the_tag(store: MetadataStore, reg: int) -> None:
    before = put(store, reg, "app", "v1", tag="latest")
    run(store.set_attributes(reg, "app", LOCKED_WRITE, tag="latest"))
    seen: list[AffectedContent] = []
    with pytest.raises(Refused):
        put(store, reg, "app", "v2", tag="latest", guard=refuse(seen))
    assert seen == [AffectedContent("app", flags(), tags=(("latest", flags(write=False)),))]
    record = run(store.get_manifest(reg, "app", tag="latest"))
    assert record is not None and record.digest == before
    assert run(store.get_manifest(reg, "app", digest=digest_bytes(manifest_body("v2")))) is None


def test_push_guard_refusal_leaves_no_new_repository(store: MetadataStore, reg: int) -> None:
    seen: list[AffectedContent] = []
    with pytest.raises(Refused):
        put(store, reg, "fresh", "new", tag="v1", guard=refuse(seen))
    assert seen == [AffectedContent("fresh", flags())]
    assert run(store.repository_exists(reg, "fresh")) is False


def test_delete_guards_see_what_the_delete_takes(store: MetadataStore, reg: int) -> None:
    layer = link(store, reg, "app", "layer")
    digest = put(store, reg, "app", "m", tag="b", blobs=(layer,))
    put(store, reg, "app", "m", tag="a", blobs=(layer,))
    other = put(store, reg, "app", "other", tag="c")
    run(store.set_attributes(reg, "app", AttributeChanges(delete_enabled=False), tag="a"))
    run(store.set_attributes(reg, "app", LOCKED_WRITE, digest=digest))
    seen: list[AffectedContent] = []
    with pytest.raises(Refused):
        run(store.delete_manifest(reg, "app", digest, guard=refuse(seen)))
    with pytest.raises(Refused):
        run(store.delete_tag(reg, "app", "a", guard=refuse(seen)))
    with pytest.raises(Refused):
        run(store.delete_repository(reg, "app", guard=refuse(seen)))
    with pytest.raises(Refused):
        run(store.unlink_blob(reg, "app", layer, guard=refuse(seen)))
    manifest = ((digest, flags(write=False)),)
    tags = (("a", flags(delete=False)), ("b", flags()))
    assert seen == [
        AffectedContent("app", flags(), manifests=manifest, tags=tags),
        AffectedContent("app", flags(), tags=(("a", flags(delete=False)),)),
        AffectedContent(
            "app",
            flags(),
            manifests=tuple(sorted([*manifest, (other, flags())])),
            tags=(*tags, ("c", flags())),
        ),
        AffectedContent("app", flags()),
    ]
    # Nothing was deleted.
    assert run(store.list_tags(reg, "app", None, None)) == ["a", "b", "c"]
    assert run(store.get_manifest(reg, "app", digest=digest)) is not None
    assert run(store.linked_blob_size(reg, "app", layer)) is not None
    # Misses answer before any guard runs.
    assert run(store.delete_tag(reg, "app", "nope", guard=refuse(seen))) is False
    assert run(store.delete_manifest(reg, "app", digest_bytes(b"x"), guard=refuse(seen))) is False
    assert len(seen) == 4
    # A guard that lets the write through.
    assert run(store.delete_tag(reg, "app", "c", guard=lambda found: None)) is True
    assert run(store.delete_repository(reg, "app", guard=lambda found: None)) is not None


def test_concurrent_lock_and_push_end_in_one_order(store: MetadataStore, reg: int) -> None:
    """A tag lock racing pushes under the tag: every push that the guard let through
    happened before the lock, and the tag ends on the last of those."""
    first = put(store, reg, "app", "v0", tag="latest")

    def guard(found: AffectedContent) -> None:
        if any(not attrs.write_enabled for _, attrs in found.tags):
            raise Refused

    def push(i: int) -> Awaitable[None]:
        return put_later(store, reg, "app", f"v{i}", tag="latest", guard=guard)

    order = [*range(1, 9), 0, *range(9, 17)]  # 0: the lock
    results = gather(
        *(push(i) for i in range(1, 9)),
        store.set_attributes(reg, "app", LOCKED_WRITE, tag="latest"),
        *(push(i) for i in range(9, 17)),
    )
    outcome = dict(zip(order, results, strict=True))
    assert outcome.pop(0) == flags(write=False)
    assert all(r is None or isinstance(r, Refused) for r in outcome.values()), outcome
    pushed = {digest_bytes(manifest_body(f"v{i}")) for i, r in outcome.items() if r is None}
    record = run(store.get_manifest(reg, "app", tag="latest"))
    assert record is not None
    # The tag ends on a push that went through before the lock, or where it was.
    assert record.digest in (pushed or {first})
    # And once locked, it stays put.
    with pytest.raises(Refused):
        run(push(99))
    tag = run(store.get_tag(reg, "app", "latest"))
    assert tag is not None and tag.attributes == flags(write=False)


# -- usage (show-usage's Size, the quota) ------------------------------------------------------


def size_of(*names: str) -> int:
    return sum(blob(n)[1] for n in names)


def test_usage_counts_each_referenced_blob_once(store: MetadataStore, reg: int) -> None:
    a, shared = link(store, reg, "app", "layer-a"), link(store, reg, "app", "shared")
    assert run(store.registry_size(reg)) == 0  # linked but unreferenced: not counted
    one = put(store, reg, "app", "one", tag="1", blobs=(a, shared))
    assert run(store.registry_size(reg)) == size_of("layer-a", "shared")
    # The shared layer in another repository and another manifest is counted once.
    link(store, reg, "other", "shared")
    b = link(store, reg, "other", "layer-b")
    put(store, reg, "other", "two", tag="1", blobs=(shared, b))
    assert run(store.registry_size(reg)) == size_of("layer-a", "shared", "layer-b")
    # Pushing the same manifest again, under another tag, changes nothing.
    put(store, reg, "app", "one", tag="again", blobs=(a, shared))
    assert run(store.registry_size(reg)) == size_of("layer-a", "shared", "layer-b")
    # Deleting it frees only what nothing else references, at once.
    assert run(store.delete_manifest(reg, "app", one))
    assert run(store.registry_size(reg)) == size_of("shared", "layer-b")
    assert run(store.delete_repository(reg, "other")) is not None
    assert run(store.registry_size(reg)) == 0


def test_usage_is_per_registry(store: MetadataStore, reg: int) -> None:
    other = run(store.ensure_registry("otherreg")).id
    a = link(store, reg, "app", "layer-a")
    link(store, other, "app", "layer-a")
    put(store, reg, "app", "one", blobs=(a,))
    put(store, other, "app", "one", blobs=(a,))
    assert run(store.registry_size(reg)) == run(store.registry_size(other)) == size_of("layer-a")
    assert run(store.delete_repository(other, "app")) is not None
    assert run(store.registry_size(other)) == 0
    assert run(store.registry_size(reg)) == size_of("layer-a")


def test_a_manifest_past_the_quota_stores_nothing(store: MetadataStore, reg: int) -> None:
    from hamn.metadata.store import QuotaExceeded

    a, b = link(store, reg, "app", "layer-a"), link(store, reg, "app", "layer-b")
    put(store, reg, "app", "one", tag="v1", blobs=(a,))
    quota = size_of("layer-a", "layer-b") - 1
    body = manifest_body("two")
    with pytest.raises(QuotaExceeded) as caught:
        run(
            store.put_manifest(
                reg, "app", digest=digest_bytes(body), media_type=OCI_MANIFEST,
                artifact_type=None, subject_digest=None, content=body, annotations=None,
                blobs=[a, b], children=[], tag="v2", quota=quota,
            )
        )  # fmt: skip
    assert (caught.value.usage, caught.value.adding, caught.value.quota) == (
        size_of("layer-a"),
        size_of("layer-b"),
        quota,
    )
    assert run(store.get_manifest(reg, "app", digest=digest_bytes(body))) is None
    assert run(store.get_tag(reg, "app", "v2")) is None
    assert run(store.registry_size(reg)) == size_of("layer-a")
    # What already counts never trips the quota: a manifest of counted blobs fits.
    put_ok = store.put_manifest(
        reg, "app", digest=digest_bytes(manifest_body("three")), media_type=OCI_MANIFEST,
        artifact_type=None, subject_digest=None, content=manifest_body("three"),
        annotations=None, blobs=[a], children=[], tag="v3", quota=size_of("layer-a"),
    )  # fmt: skip
    run(put_ok)
    assert run(store.registry_size(reg)) == size_of("layer-a")


def test_blob_over_quota(store: MetadataStore, reg: int) -> None:
    a = link(store, reg, "app", "layer-a")
    put(store, reg, "app", "one", blobs=(a,))
    new, new_size = blob("layer-new")
    used = size_of("layer-a")
    assert run(store.blob_over_quota(reg, new, new_size, used + new_size)) is None
    over = run(store.blob_over_quota(reg, new, new_size, used + new_size - 1))
    assert over is not None and (over.usage, over.adding) == (used, new_size)
    # A blob the registry already counts adds nothing, whatever the quota.
    assert run(store.blob_over_quota(reg, a, size_of("layer-a"), 1)) is None


def test_concurrent_pushes_and_deletes_keep_usage_exact(store: MetadataStore, reg: int) -> None:
    shared = link(store, reg, "app", "shared")
    own = [link(store, reg, "app", f"own-{i}") for i in range(12)]
    results = gather(
        *(put_later(store, reg, "app", f"m{i}", blobs=(shared, own[i])) for i in range(12))
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    expected = size_of("shared", *(f"own-{i}" for i in range(12)))
    assert run(store.registry_size(reg)) == expected
    digests = [digest_bytes(manifest_body(f"m{i}")) for i in range(12)]
    results = gather(*(store.delete_manifest(reg, "app", d) for d in digests[:11]))
    assert results == [True] * 11
    assert run(store.registry_size(reg)) == size_of("shared", "own-11")


def test_migration_0005_counts_what_exists(store: MetadataStore, reg: int, engine: Engine) -> None:
    a, shared = link(store, reg, "app", "layer-a"), link(store, reg, "app", "shared")
    link(store, reg, "other", "shared")
    put(store, reg, "app", "one", blobs=(a, shared))
    put(store, reg, "other", "two", blobs=(shared,))
    before = run(store.registry_size(reg))
    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("hamn.metadata").joinpath("migrations"))
    )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert "registry_usage" not in inspect(engine).get_table_names()
    migrate(engine)  # back to head: the usage is rebuilt from the references
    assert run(store.registry_size(reg)) == before == size_of("layer-a", "shared")
    put(store, reg, "app", "three", blobs=(a,))
    assert run(store.delete_manifest(reg, "app", digest_bytes(manifest_body("one"))))
    assert run(store.registry_size(reg)) == size_of("layer-a", "shared")


# -- an unreachable database -------------------------------------------------------------------


def test_an_unreachable_database_is_unavailable_not_a_bug(unused_tcp_port: int) -> None:
    """A PostgreSQL that refuses connections (down, restarting) raises MetadataUnavailable,
    which the HTTP edge answers with a retryable 503, for reads and writes alike."""
    from hamn.metadata.store import MetadataUnavailable

    eng = create_metadata_engine(f"postgresql+psycopg://hamn@127.0.0.1:{unused_tcp_port}/hamn")
    store = MetadataStore(eng, threads=2)
    try:
        with pytest.raises(MetadataUnavailable):
            run(store.get_registry("anything"))
        with pytest.raises(MetadataUnavailable):
            run(store.ensure_registry("anything"))
    finally:
        store.close()
        eng.dispose()


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
