"""Soft delete on every supported database: deletes into the recycle bin (manifests by
digest, tags, whole repositories) hidden from every read, listed, restored (with the
tags no other manifest took), revived by a push, counted in usage until the collector
purges what is older than the policy's days through the hard delete."""

# ruff: noqa: F811 - the store fixtures are imported from test_metadata_store

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Connection, update
from store_support import run
from test_metadata_store import blob, engine, link, put, reg, store  # noqa: F401

from hamn.metadata import schema as t
from hamn.metadata.audit import MetadataAudit
from hamn.metadata.garbage import GarbageStore
from hamn.metadata.store import MetadataStore
from hamn.services.gc import GarbageCollector
from hamn.storage.filesystem import FilesystemDriver

DAY = timedelta(days=1)


def set_soft_delete(store: MetadataStore, reg: int, days: int, status: str = "enabled") -> None:
    policy = {"status": status, "retentionDays": days, "lastUpdatedTime": "2026-11-27T00:00:00Z"}

    def op(conn: Connection) -> None:
        conn.execute(
            update(t.registries)
            .where(t.registries.c.id == reg)
            .values(policies=orjson.dumps({"softDeletePolicy": policy}).decode())
        )

    run(store.run_write(op))


def age_deleted(store: MetadataStore, days: float) -> None:
    """Move every deletion ``days`` into the past."""
    when = datetime.now(UTC) - timedelta(days=days)

    def op(conn: Connection) -> None:
        conn.execute(
            update(t.manifests).where(t.manifests.c.deleted_at.is_not(None)).values(deleted_at=when)
        )
        conn.execute(update(t.deleted_tags).values(deleted_at=when))
        conn.execute(
            update(t.repositories)
            .where(t.repositories.c.deleted_at.is_not(None))
            .values(deleted_at=when)
        )

    run(store.run_write(op))


def image(store: MetadataStore, reg: int, repo: str, name: str, **options: object) -> str:
    layer = link(store, reg, repo, f"layer {name}")
    return put(store, reg, repo, name, blobs=(layer,), **options)


def collector(store: MetadataStore, tmp_path: Path) -> GarbageCollector:
    driver = FilesystemDriver(str(tmp_path / "blobs"))
    return GarbageCollector(store, driver, grace=0)


def test_soft_deleted_manifest_is_hidden_listed_and_still_counted(
    store: MetadataStore, reg: int
) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    usage = run(store.registry_size(reg))
    assert usage > 0
    assert run(store.delete_manifest(reg, "app", d, soft=True))
    assert run(store.get_manifest(reg, "app", digest=d)) is None
    assert run(store.get_manifest(reg, "app", tag="v1")) is None
    assert run(store.get_manifest_info(reg, "app", d)) is None
    assert run(store.list_tags(reg, "app", None, None)) == []
    assert run(store.manifest_page(reg, "app", limit=10, order="name")) == []
    info = run(store.repository_info(reg, "app"))
    assert info is not None and (info.manifest_count, info.tag_count) == (0, 0)
    assert run(store.registry_size(reg)) == usage  # counts until purged
    assert not run(store.delete_manifest(reg, "app", d, soft=True))  # already deleted
    deleted = run(store.deleted_manifest_page(reg, "app", limit=10))
    assert deleted is not None and [(m.info.digest, m.info.tags) for m in deleted] == [(d, ("v1",))]
    tags = run(store.deleted_tag_page(reg, "app", limit=10))
    assert tags is not None and [(x.name, x.digest) for x in tags] == [("v1", d)]
    assert run(store.deleted_repositories(reg, 10, None)) == ["app"]


def test_restore_brings_back_the_manifest_and_its_tags(store: MetadataStore, reg: int) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    put(store, reg, "app", "one", tag="v2")
    run(store.delete_manifest(reg, "app", d, soft=True))
    assert run(store.restore_manifest(reg, "app", d)) == "restored"
    record = run(store.get_manifest(reg, "app", tag="v2"))
    assert record is not None and record.digest == d
    assert run(store.list_tags(reg, "app", None, None)) == ["v1", "v2"]
    assert run(store.deleted_manifest_page(reg, "app", limit=10)) == []
    assert run(store.deleted_tag_page(reg, "app", limit=10)) == []
    assert run(store.deleted_repositories(reg, 10, None)) == []
    assert run(store.restore_manifest(reg, "app", d)) == "unknown"  # nothing of it in the bin


def test_restore_skips_tags_taken_meanwhile_or_restores_one(store: MetadataStore, reg: int) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    put(store, reg, "app", "one", tag="v2")
    run(store.delete_manifest(reg, "app", d, soft=True))
    other = image(store, reg, "app", "two", tag="v1")
    assert run(store.restore_manifest(reg, "app", d, tag="v1")) == "tag_taken"
    assert run(store.restore_manifest(reg, "app", d, tag="nope")) == "tag_unknown"
    assert run(store.restore_manifest(reg, "app", d)) == "restored"
    assert run(store.list_tags(reg, "app", None, None)) == ["v1", "v2"]
    v1 = run(store.get_manifest(reg, "app", tag="v1"))
    assert v1 is not None and v1.digest == other


def test_untag_goes_to_the_bin_and_its_tag_comes_back(store: MetadataStore, reg: int) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    assert run(store.delete_tag(reg, "app", "v1", soft=True))
    assert run(store.get_manifest(reg, "app", digest=d)) is not None  # the manifest stays
    tags = run(store.deleted_tag_page(reg, "app", limit=10))
    assert tags is not None and [x.name for x in tags] == ["v1"]
    assert run(store.restore_manifest(reg, "app", d, tag="v1")) == "restored"
    assert run(store.list_tags(reg, "app", None, None)) == ["v1"]


def test_a_push_of_a_deleted_digest_makes_it_live_again(store: MetadataStore, reg: int) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    usage = run(store.registry_size(reg))
    run(store.delete_manifest(reg, "app", d, soft=True))
    image(store, reg, "app", "one")
    assert run(store.get_manifest(reg, "app", digest=d)) is not None
    assert run(store.registry_size(reg)) == usage  # counted once, as before
    assert run(store.deleted_manifest_page(reg, "app", limit=10)) == []
    assert run(store.restore_manifest(reg, "app", d)) == "live"  # 409: pushed again
    assert run(store.restore_manifest(reg, "app", d, tag="v1")) == "restored"


def test_soft_repository_delete_leaves_the_catalog_and_restores(
    store: MetadataStore, reg: int
) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    image(store, reg, "other", "two", tag="v1")
    deleted = run(store.delete_repository(reg, "app", soft=True))
    assert deleted is not None and deleted.manifests == [d] and deleted.tags == ["v1"]
    assert run(store.list_repositories(reg, None, None)) == ["other"]
    assert run(store.repository_info(reg, "app")) is None
    assert run(store.delete_repository(reg, "app", soft=True)) is None
    assert run(store.deleted_repositories(reg, 10, None)) == ["app"]
    assert run(store.restore_manifest(reg, "app", d)) == "restored"
    assert run(store.list_repositories(reg, None, None)) == ["app", "other"]
    assert run(store.list_tags(reg, "app", None, None)) == ["v1"]


def test_hard_deletes_are_unchanged(store: MetadataStore, reg: int) -> None:
    d = image(store, reg, "app", "one", tag="v1")
    assert run(store.delete_manifest(reg, "app", d))
    assert run(store.registry_size(reg)) == 0
    assert run(store.deleted_manifest_page(reg, "app", limit=10)) == []
    assert run(store.restore_manifest(reg, "app", d)) == "unknown"


def test_deleted_manifests_are_not_retention_candidates_and_fsck_finds_them_valid(
    store: MetadataStore, reg: int
) -> None:
    d = image(store, reg, "app", "one")
    run(store.delete_manifest(reg, "app", d, soft=True))
    assert run(GarbageStore(store).untagged_manifests(reg)) == []
    assert run(MetadataAudit(store).dangling_references()) == []
    # Its blob link stays: a deleted manifest still references it.
    layer, _ = blob("layer one")
    assert run(store.linked_blob_size(reg, "app", layer)) is not None


def test_the_collector_purges_what_is_older_than_the_days(
    store: MetadataStore, reg: int, tmp_path: Path
) -> None:
    set_soft_delete(store, reg, days=3)
    d = image(store, reg, "app", "one", tag="v1")
    keep = image(store, reg, "app", "two", tag="v2")
    run(store.delete_manifest(reg, "app", d, soft=True))
    run(store.delete_tag(reg, "app", "v2", soft=True))
    usage = run(store.registry_size(reg))
    gc = collector(store, tmp_path)
    report = run(gc.collect())
    assert report.purged_manifests.count == 0
    assert run(store.registry_size(reg)) == usage
    age_deleted(store, 2.9)
    assert run(gc.collect()).purged_manifests.count == 0
    age_deleted(store, 3.1)
    report = run(gc.collect())
    assert report.purged_manifests.items == [f"testreg/app@{d}"]
    assert run(store.registry_size(reg)) < usage  # the purge released its blobs
    assert run(store.deleted_manifest_page(reg, "app", limit=10)) == []
    assert run(store.deleted_tag_page(reg, "app", limit=10)) == []
    assert run(store.get_manifest(reg, "app", digest=keep)) is not None
    assert run(store.restore_manifest(reg, "app", d)) == "unknown"


def test_the_collector_purges_a_deleted_repository(
    store: MetadataStore, reg: int, tmp_path: Path
) -> None:
    set_soft_delete(store, reg, days=1)
    image(store, reg, "app", "one", tag="v1")
    run(store.delete_repository(reg, "app", soft=True))
    age_deleted(store, 2)
    run(collector(store, tmp_path).collect())
    assert run(store.registry_size(reg)) == 0
    assert run(store.deleted_repositories(reg, 10, None)) == []
    assert not run(store.repository_exists(reg, "app"))
