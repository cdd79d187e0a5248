"""The untagged-manifest retention policy on every supported database: the store's
``untagged_at`` bookkeeping (set when a manifest is stored without a tag or loses
its last one, cleared when tagged again, in the transaction that changes the tags),
migration 0006, and the collector applying enabled policies (days, the time the
policy was enabled, locks, index children and referrers kept, usage exact).
"""

# ruff: noqa: F811 - the store fixtures are imported from test_metadata_store

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, select, update
from store_support import gather, run
from test_metadata_store import engine, put, reg, store  # noqa: F401

from hamn.metadata import schema as t
from hamn.metadata.garbage import GarbageStore
from hamn.metadata.models import AttributeChanges
from hamn.metadata.store import MetadataStore, migrate
from hamn.oci.digest import digest_bytes
from hamn.services.gc import GarbageCollector
from hamn.services.retention import with_retention
from hamn.storage.filesystem import FilesystemDriver

DAY = timedelta(days=1)


def untagged_at(store: MetadataStore, digest: str) -> datetime | None:
    def op(conn: Connection) -> Any:
        return conn.execute(
            select(t.manifests.c.untagged_at).where(t.manifests.c.digest == digest)
        ).scalar_one()

    value = run(store.run_read(op))
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def set_untagged_at(store: MetadataStore, digest: str, when: datetime | None) -> None:
    def op(conn: Connection) -> None:
        conn.execute(
            update(t.manifests).where(t.manifests.c.digest == digest).values(untagged_at=when)
        )

    run(store.run_write(op))


def set_policy(
    store: MetadataStore, reg: int, enabled_at: datetime, days: int, status: str
) -> None:
    policies, _ = with_retention(None, enabled_at, status=status, days=days)

    def op(conn: Connection) -> None:
        conn.execute(
            update(t.registries)
            .where(t.registries.c.id == reg)
            .values(policies=orjson.dumps(policies).decode())
        )

    run(store.run_write(op))


def recent(value: datetime | None, since: datetime) -> bool:
    return value is not None and since - timedelta(seconds=1) <= value <= datetime.now(UTC)


# -- untagged_at -------------------------------------------------------------------------------
def test_stored_without_a_tag_is_untagged_with_a_tag_is_not(store: MetadataStore, reg: int) -> None:
    start = datetime.now(UTC)
    loose = put(store, reg, "app", "loose")
    tagged = put(store, reg, "app", "tagged", tag="v1")
    assert recent(untagged_at(store, loose), start)
    assert untagged_at(store, tagged) is None


def test_tagging_clears_and_losing_the_last_tag_sets(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "m")
    put(store, reg, "app", "m", tag="v1")  # tagged afterwards
    assert untagged_at(store, digest) is None
    put(store, reg, "app", "m", tag="v2")
    assert run(store.delete_tag(reg, "app", "v1"))
    assert untagged_at(store, digest) is None  # v2 still points at it
    start = datetime.now(UTC)
    assert run(store.delete_tag(reg, "app", "v2"))
    assert recent(untagged_at(store, digest), start)
    assert not run(store.delete_tag(reg, "app", "v2"))  # absent: nothing changes


def test_a_tag_moved_away_untags_the_manifest_it_left(store: MetadataStore, reg: int) -> None:
    old = put(store, reg, "app", "old", tag="latest")
    put(store, reg, "app", "old", tag="keep")
    first = put(store, reg, "app", "first", tag="latest")
    assert untagged_at(store, old) is None  # "keep" holds it
    put(store, reg, "app", "old", tag="keep")  # pushed again under its own tag: no change
    assert untagged_at(store, old) is None
    start = datetime.now(UTC)
    put(store, reg, "app", "second", tag="keep")
    assert recent(untagged_at(store, old), start)
    put(store, reg, "app", "second", tag="latest")
    assert recent(untagged_at(store, first), start)


def test_pushed_again_by_digest_keeps_its_untagged_time(store: MetadataStore, reg: int) -> None:
    digest = put(store, reg, "app", "m")
    past = datetime.now(UTC) - DAY
    set_untagged_at(store, digest, past)
    put(store, reg, "app", "m")
    assert untagged_at(store, digest) == past


def test_concurrent_removals_of_the_last_two_tags_record_it(store: MetadataStore, reg: int) -> None:
    for i in range(5):
        digest = put(store, reg, "app", f"m{i}", tag=f"a{i}")
        put(store, reg, "app", f"m{i}", tag=f"b{i}")
        results = gather(
            store.delete_tag(reg, "app", f"a{i}"), store.delete_tag(reg, "app", f"b{i}")
        )
        assert results == [True, True]
        assert untagged_at(store, digest) is not None, i


def test_migration_0006_marks_what_is_untagged_now(
    store: MetadataStore, reg: int, engine: Engine
) -> None:
    loose = put(store, reg, "app", "loose")
    tagged = put(store, reg, "app", "tagged", tag="v1")
    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("hamn.metadata").joinpath("migrations"))
    )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    start = datetime.now(UTC)
    migrate(engine)
    assert recent(untagged_at(store, loose), start)
    assert untagged_at(store, tagged) is None


# -- the finder's window -------------------------------------------------------------------------
def test_untagged_between_bounds_the_untagged_time(store: MetadataStore, reg: int) -> None:
    now = datetime.now(UTC)
    a = put(store, reg, "app", "a")
    b = put(store, reg, "app", "b")
    c = put(store, reg, "app", "c")
    set_untagged_at(store, a, now - 3 * DAY)
    set_untagged_at(store, b, now - 10 * DAY)
    set_untagged_at(store, c, None)  # untagged before untagged_at was kept
    found = run(
        GarbageStore(store).untagged_manifests(reg, untagged_between=(now - 5 * DAY, now - 2 * DAY))
    )
    assert [m.digest for m in found] == [a]
    assert found[0].untagged_at == now - 3 * DAY


# -- the collector applying the policy -------------------------------------------------------------
@pytest.fixture
def driver(tmp_path: Path) -> Iterator[FilesystemDriver]:
    d = FilesystemDriver(str(tmp_path / "storage"), fsync=False)
    yield d
    d.close()


def collector(store: MetadataStore, driver: FilesystemDriver) -> GarbageCollector:
    return GarbageCollector(store, driver, grace=3600.0, batch=2)


def test_enabled_policy_deletes_what_was_untagged_after_enabling_and_days_ago(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    now = datetime.now(UTC)
    enabled = now - 30 * DAY
    set_policy(store, reg, enabled, 7, "enabled")
    digests = {name: put(store, reg, "app", name) for name in ("old", "young", "before", "null")}
    tagged = put(store, reg, "app", "tagged", tag="v1")
    set_untagged_at(store, digests["old"], now - 8 * DAY)  # past its days: goes
    set_untagged_at(store, digests["young"], now - 6 * DAY)  # not yet
    set_untagged_at(store, digests["before"], enabled - DAY)  # before enabling: stays
    set_untagged_at(store, digests["null"], None)
    dry = run(collector(store, driver).collect(dry_run=True))
    assert dry.untagged_manifests.items == [f"testreg/app@{digests['old']}"]
    assert run(store.get_manifest_info(reg, "app", digests["old"])) is not None
    report = run(collector(store, driver).collect())
    assert report.untagged_manifests.count == 1
    assert report.untagged_manifests.items == [f"testreg/app@{digests['old']}"]
    assert run(store.get_manifest_info(reg, "app", digests["old"])) is None
    for name in ("young", "before", "null"):
        assert run(store.get_manifest_info(reg, "app", digests[name])) is not None, name
    assert run(store.get_manifest_info(reg, "app", tagged)) is not None


def test_disabled_policy_deletes_nothing(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    now = datetime.now(UTC)
    set_policy(store, reg, now - 30 * DAY, 0, "disabled")
    digest = put(store, reg, "app", "old")
    set_untagged_at(store, digest, now - DAY)
    assert run(collector(store, driver).collect()).untagged_manifests.count == 0
    assert run(store.get_manifest_info(reg, "app", digest)) is not None


def test_days_zero_keeps_locks_index_children_referrers_and_usage(
    store: MetadataStore, reg: int, driver: FilesystemDriver
) -> None:
    a, size = digest_bytes(b"layer"), 5
    run(store.link_blob(reg, "app", a, size))
    run(store.link_blob(reg, "locked", a, size))
    set_policy(store, reg, datetime.now(UTC) - DAY, 0, "enabled")
    image = put(store, reg, "app", "image", tag="v1", blobs=(a,))
    child = put(store, reg, "app", "child", blobs=(a,))
    put(store, reg, "app", "index", children=(child,), tag="multi")
    put(store, reg, "app", "signature", subject=image)
    loose = put(store, reg, "app", "loose", blobs=(a,))
    write_locked = put(store, reg, "app", "write-locked")
    delete_locked = put(store, reg, "app", "delete-locked")
    in_locked_repo = put(store, reg, "locked", "in-locked-repo", blobs=(a,))
    run(
        store.set_attributes(reg, "app", AttributeChanges(write_enabled=False), digest=write_locked)
    )
    run(
        store.set_attributes(
            reg, "app", AttributeChanges(delete_enabled=False), digest=delete_locked
        )
    )
    run(store.set_attributes(reg, "locked", AttributeChanges(delete_enabled=False)))
    usage = run(store.registry_size(reg))
    report = run(collector(store, driver).collect())
    assert report.untagged_manifests.items == [f"testreg/app@{loose}"]
    assert report.in_use == 0
    assert run(store.get_manifest_info(reg, "app", loose)) is None
    for digest in (image, child, write_locked, delete_locked):
        assert run(store.get_manifest_info(reg, "app", digest)) is not None
    assert run(store.get_manifest_info(reg, "locked", in_locked_repo)) is not None
    assert run(store.registry_size(reg)) == usage  # the layer is still referenced
    # Untagging the image: it goes, and then its signature (a referrer of nothing held).
    run(store.delete_tag(reg, "app", "v1"))
    first = run(collector(store, driver).collect())
    assert f"testreg/app@{image}" in first.untagged_manifests.items
    assert run(store.get_manifest_info(reg, "app", image)) is None
