"""Garbage collection on every supported database: the finders of
hamn.metadata.garbage, and hamn.services.gc's collector over a filesystem driver.

Grace periods are respected, usage never changes, a removal re-checks what its
finder saw, and upload sessions in use are kept.
"""

# ruff: noqa: F811 - the store fixtures are imported from test_metadata_store

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from store_support import run
from test_metadata_store import engine, reg, store  # noqa: F401

from hamn.metadata import schema as t
from hamn.metadata.garbage import GarbageStore
from hamn.metadata.store import MetadataStore, MissingReferences
from hamn.oci.digest import digest_bytes
from hamn.services.gc import CollectionRunning, GarbageCollector
from hamn.storage.filesystem import FilesystemDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[FilesystemDriver]:
    d = FilesystemDriver(str(tmp_path / "storage"), fsync=False)
    yield d
    d.close()


def collector(
    store: MetadataStore, driver: FilesystemDriver, grace: float = 0.0, **kw: float
) -> GarbageCollector:
    return GarbageCollector(store, driver, grace=grace, batch=2, **kw)


def stored_blob(
    driver: FilesystemDriver, store: MetadataStore, reg: int, repo: str, name: str
) -> str:
    """A blob's bytes in storage, linked to ``repo`` (as a finished upload leaves it)."""
    data = f"blob {name}".encode()
    digest = digest_bytes(data)
    path = driver.blob_path(digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(data)
    run(store.link_blob(reg, repo, digest, len(data)))
    return digest


def put(
    store: MetadataStore,
    reg: int,
    repo: str,
    name: str,
    blobs: list[str],
    *,
    tag: str | None = None,
    children: tuple[str, ...] = (),
    subject: str | None = None,
) -> str:
    content = f"manifest {name}".encode()
    digest = digest_bytes(content)
    run(
        store.put_manifest(
            reg,
            repo,
            digest=digest,
            media_type=OCI_INDEX if children else OCI_MANIFEST,
            artifact_type=None,
            subject_digest=subject,
            content=content,
            annotations=None,
            blobs=blobs,
            children=children,
            tag=tag,
        )
    )
    return digest


def age_links(store: MetadataStore, seconds: float) -> None:
    """Make every blob link ``seconds`` older."""

    def op(conn: object) -> None:
        past = datetime.now(UTC) - timedelta(seconds=seconds)
        conn.execute(update(t.repository_blobs).values(created_at=past))  # type: ignore[attr-defined]

    run(store.run_write(op))  # type: ignore[arg-type]


# -- finders ---------------------------------------------------------------------------
def test_unreferenced_links_are_those_no_manifest_of_the_repository_names(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a = stored_blob(driver, store, reg, "app", "a")
    b = stored_blob(driver, store, reg, "app", "b")
    stored_blob(driver, store, reg, "other", "a")  # a is referenced in app, not in other
    put(store, reg, "app", "m1", [a], tag="v1")
    garbage = GarbageStore(store)
    found = run(garbage.unreferenced_links(LATER, None, 10))
    assert sorted((x.repository, x.digest) for x in found) == sorted(
        [("testreg/app", b), ("testreg/other", a)]
    )
    # Keyset paging walks the same links one at a time.
    first = run(garbage.unreferenced_links(LATER, None, 1))
    second = run(garbage.unreferenced_links(LATER, first[0], 1))
    assert first + second == found
    assert run(garbage.unreferenced_links(LATER, second[0], 1)) == []


def test_links_within_the_grace_period_are_not_garbage(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    stored_blob(driver, store, reg, "app", "a")
    garbage = GarbageStore(store)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert run(garbage.unreferenced_links(an_hour_ago, None, 10)) == []
    age_links(store, 7200)
    assert len(run(garbage.unreferenced_links(an_hour_ago, None, 10))) == 1


def test_linking_again_restarts_the_grace_period(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a = stored_blob(driver, store, reg, "app", "a")
    age_links(store, 7200)
    run(store.link_blob(reg, "app", a, 7))  # a mount, or the same layer uploaded again
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert run(GarbageStore(store).unreferenced_links(an_hour_ago, None, 10)) == []


def test_removing_a_link_re_checks_it(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a = stored_blob(driver, store, reg, "app", "a")
    b = stored_blob(driver, store, reg, "app", "b")
    garbage = GarbageStore(store)
    found = run(garbage.unreferenced_links(LATER, None, 10))
    assert len(found) == 2
    put(store, reg, "app", "m1", [a])  # a manifest names a after the finder looked
    gone = run(garbage.remove_links(found, LATER))
    assert [x.digest for x in gone] == [b]
    # The link is gone, so a manifest naming b is refused, never stored.
    with pytest.raises(MissingReferences):
        put(store, reg, "app", "m2", [b])


def test_blobs_nothing_names_and_the_dry_run_view(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a = stored_blob(driver, store, reg, "app", "a")
    b = stored_blob(driver, store, reg, "app", "b")
    put(store, reg, "app", "m1", [a])
    garbage = GarbageStore(store)
    assert run(garbage.unreferenced_blobs("", 10)) == []  # b is still linked
    would = run(garbage.unreferenced_blobs("", 10, links_before=LATER))
    assert [x.digest for x in would] == [b]
    run(garbage.remove_links(run(garbage.unreferenced_links(LATER, None, 10)), LATER))
    assert [x.digest for x in run(garbage.unreferenced_blobs("", 10))] == [b]
    run(store.link_blob(reg, "app", b, 6))  # linked again before removal: kept
    assert run(garbage.remove_blobs([b])) == []


def test_untagged_manifests_nothing_needs(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a = stored_blob(driver, store, reg, "app", "a")
    tagged = put(store, reg, "app", "tagged", [a], tag="v1")
    loose = put(store, reg, "app", "loose", [a])
    child = put(store, reg, "app", "child", [a])
    put(store, reg, "app", "index", [], children=(child,), tag="multi")
    put(store, reg, "app", "signature", [a], subject=tagged)  # its subject is held
    orphan_sig = put(store, reg, "app", "orphan-signature", [a], subject=digest_bytes(b"gone"))
    found = run(GarbageStore(store).untagged_manifests(reg))
    assert sorted(m.digest for m in found) == sorted([loose, orphan_sig])
    assert {m.repository for m in found} == {"testreg/app"}
    assert (
        run(
            GarbageStore(store).untagged_manifests(
                reg, created_before=datetime(2000, 1, 1, tzinfo=UTC)
            )
        )
        == []
    )


# -- the collector ---------------------------------------------------------------------------
def test_collection_removes_garbage_and_keeps_usage(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a = stored_blob(driver, store, reg, "app", "a")
    b = stored_blob(driver, store, reg, "app", "b")
    c = stored_blob(driver, store, reg, "scratch", "c")
    stored_blob(driver, store, reg, "scratch", "a")  # a mount nothing used
    kept = put(store, reg, "app", "m1", [a], tag="v1")
    untagged = put(store, reg, "app", "m2", [a])
    usage = run(store.registry_size(reg))

    dry = run(collector(store, driver).collect(dry_run=True))
    assert (dry.links.count, dry.blobs.count) == (3, 2)
    assert dry.blobs.bytes == 2 * len(b"blob b")
    assert run(driver.stat(b)) is not None  # a dry run removes nothing

    report = run(collector(store, driver).collect())
    assert (report.links.count, report.blobs.count) == (3, 2)
    assert sorted(report.blobs.items) == sorted([b, c])
    assert run(driver.stat(b)) is None and run(driver.stat(c)) is None
    assert run(driver.stat(a)) is not None
    assert run(store.registry_size(reg)) == usage
    for digest in (kept, untagged):  # untagged manifests are kept
        assert run(store.get_manifest(reg, "app", digest=digest)) is not None
    assert run(store.linked_blob_size(reg, "app", a)) is not None
    again = run(collector(store, driver).collect())
    assert (again.links.count, again.blobs.count, again.in_use) == (0, 0, 0)


def test_collection_respects_the_grace_period(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    b = stored_blob(driver, store, reg, "app", "b")
    report = run(collector(store, driver, grace=3600).collect())
    assert (report.links.count, report.blobs.count) == (0, 0)
    assert run(store.linked_blob_size(reg, "app", b)) is not None
    age_links(store, 7200)
    report = run(collector(store, driver, grace=3600).collect())
    assert (report.links.count, report.blobs.count) == (1, 1)


def test_blob_files_without_a_row(store: MetadataStore, reg: int, driver: FilesystemDriver) -> None:
    data = b"published, never linked"
    digest = digest_bytes(data)
    path = Path(driver.blob_path(digest))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    # Within the grace period it may be a publish whose row is being written.
    assert run(collector(store, driver, grace=3600).collect()).orphan_blob_files.count == 0
    time.sleep(0.05)
    report = run(collector(store, driver, grace=0.01).collect())
    assert report.orphan_blob_files.items == [digest] and not path.exists()


def test_abandoned_uploads_go_and_active_ones_stay(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    def session(upload_id: str) -> None:
        run(store.create_upload(upload_id, reg, "app"))

        async def write() -> None:
            writer = await driver.open_upload(upload_id, 0, create=True)
            await writer.write([b"some bytes"])
            await writer.close()

        run(write())
        run(store.advance_upload(upload_id, 0, 10))

    session("abandoned-1")
    session("held-00001")
    stray = Path(driver.upload_path("no-session-1"))
    stray.write_bytes(b"left by a crash")
    time.sleep(1.1)
    session("active-0001")

    async def collect_while_held() -> int:
        writer = await driver.open_upload("held-00001", 10, create=False)  # a PATCH in flight
        try:
            report = await collector(store, driver, grace=1.0, upload_timeout=1.0).collect()
        finally:
            await writer.close()
        assert report.orphan_upload_files.items == ["no-session-1"]
        assert report.in_use == 1
        return report.uploads.count

    assert run(collect_while_held()) == 1
    assert run(store.get_upload("abandoned-1")) is None
    assert not os.path.exists(driver.upload_path("abandoned-1"))
    assert run(store.get_upload("active-0001")) is not None
    assert run(store.get_upload("held-00001")) is not None
    assert os.path.exists(driver.upload_path("held-00001"))
    assert not stray.exists()


def test_one_collection_at_a_time(store: MetadataStore, reg: int, driver: FilesystemDriver) -> None:
    gc = collector(store, driver)
    digest = stored_blob(driver, store, reg, "x", "x")

    async def two() -> list[object]:
        async with driver.digest_lock(digest):
            first = asyncio.ensure_future(gc.collect())
            await asyncio.sleep(0.2)  # the first holds the collection lock, waiting on ours
            second = await asyncio.gather(gc.collect(), return_exceptions=True)
        return [await first, *second]

    age_links(store, 10)
    done, refused = run(two())
    assert isinstance(refused, CollectionRunning)
    assert done.blobs.count == 1  # type: ignore[attr-defined]
