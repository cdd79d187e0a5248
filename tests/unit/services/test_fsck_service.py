"""FsckService (and ``hamn fsck``) on a real data directory: a SQLite store and the
filesystem driver laid out as ``hamn serve`` lays them out, content pushed through
the registry and upload services, then damaged in every way fsck knows.

Time: files and rows carry real timestamps; the service's clock is moved forward
instead (``clock(hours=2)``) to put them past the grace period.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from hamn.cli.main import cli
from hamn.metadata.store import MetadataStore, create_metadata_engine, migrate
from hamn.oci.digest import digest_bytes
from hamn.services.fsck import FsckReport, FsckService, Problem
from hamn.services.registry import RegistryService, Target
from hamn.services.uploads import BlobUploadService
from hamn.storage.filesystem import FilesystemDriver

T = TypeVar("T")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HOUR = 3600.0


@dataclass
class Image:
    manifest: str
    config: str
    layers: list[str]


class World:
    """A data directory with a store, a driver and the services over them, on one loop."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "metadata.db"
        data_dir.mkdir(parents=True)
        engine = create_metadata_engine(f"sqlite:///{self.db_path}")
        migrate(engine)
        self.store = MetadataStore(engine)
        self.driver = FilesystemDriver(str(data_dir / "storage"), fsync=False)
        self.registry = RegistryService(
            self.store, self.driver, domain="localhost", default_registry="local"
        )
        self.uploads = BlobUploadService(self.store, self.driver)
        self.loop = asyncio.new_event_loop()
        self.target = Target(self.run(self.store.ensure_registry("local")), "app")

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def close(self) -> None:
        self.store.close()
        self.driver.close()
        self.loop.close()

    # -- pushing through the services ---------------------------------------------
    def push_blob(self, data: bytes, repository: str = "app") -> str:
        digest = digest_bytes(data)

        async def body() -> AsyncIterator[bytes]:
            yield data

        target = Target(self.target.registry, repository)
        self.run(self.uploads.upload_whole(target, digest, body(), len(data)))
        return digest

    def push_manifest(self, doc: dict[str, Any], reference: str, repository: str = "app") -> str:
        body = json.dumps(doc).encode()
        target = Target(self.target.registry, repository)
        return self.run(
            self.registry.put_manifest(target, reference, doc["mediaType"], body)
        ).digest

    def push_image(self, tag: str, repository: str = "app") -> Image:
        config = self.push_blob(json.dumps({"os": "linux", "tag": tag}).encode(), repository)
        layers = [self.push_blob(os.urandom(3000 + i), repository) for i in range(2)]

        def desc(d: str, t: str) -> dict[str, Any]:
            return {"mediaType": t, "digest": d, "size": self.run(self.driver.stat(d))}

        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [desc(d, "application/vnd.oci.image.layer.v1.tar") for d in layers],
        }
        return Image(self.push_manifest(doc, tag, repository), config, layers)

    # -- checking -----------------------------------------------------------------
    def fsck(self, *, hours: float = 0, repair: bool = False, **kw: Any) -> FsckReport:
        service = FsckService(self.store, self.driver, clock=lambda: time.time() + hours * HOUR)
        return self.run(service.check(repair=repair, **kw))

    # -- damaging -----------------------------------------------------------------
    def blob_file(self, digest: str) -> Path:
        return Path(self.driver.blob_path(digest))

    def sql(self, statement: str, *params: Any) -> None:
        """Change the database behind the store's back (foreign keys off, as damage is)."""
        conn = sqlite3.connect(self.db_path)
        try:
            conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "data")
    yield w
    w.close()


def only(report: FsckReport, kind: str) -> Problem:
    found = [p for p in report.problems if p.kind == kind]
    assert len(found) == 1, report.problems
    return found[0]


def kinds(report: FsckReport) -> list[str]:
    return sorted(p.kind for p in report.problems)


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def age(path: Path, hours: float) -> None:
    """Set a file's mtime back (its ctime moves to now: hence the clock in the tests)."""
    then = time.time() - hours * HOUR
    os.utime(path, (then, then))


# ------------------------------------------------------------------ clean


def test_a_clean_store_reports_clean_with_what_it_checked(world: World) -> None:
    image = world.push_image("v1")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": image.manifest, "size": 1}],
    }
    world.push_manifest(index, "multi")
    world.run(world.uploads.start(world.target))  # a session in progress is not a problem

    report = world.fsck()
    assert report.problems == () and report.clean, report.problems
    c = report.checked
    assert (c.blob_files, c.blob_rows, c.repository_blobs) == (3, 3, 3)
    assert (c.manifests, c.manifest_blobs, c.manifest_children, c.tags) == (2, 3, 1, 2)
    assert (c.uploads, c.upload_files) == (1, 1)
    assert c.blob_bytes == sum(world.blob_file(d).stat().st_size for d in image.layers) + (
        world.blob_file(image.config).stat().st_size
    )
    # Even hours later, with --repair: nothing to do, nothing touched.
    assert world.fsck(hours=2, repair=True).problems == ()
    assert all(world.blob_file(d).exists() for d in [image.config, *image.layers])


def test_an_empty_store_is_clean(world: World) -> None:
    report = world.fsck(repair=True)
    assert report.clean and report.checked.blob_files == 0


# ------------------------------------------------------------------ blobs


def test_a_flipped_byte_is_a_corrupt_blob_and_repair_quarantines_it(world: World) -> None:
    image = world.push_image("v1")
    layer = image.layers[0]
    flip_byte(world.blob_file(layer))

    report = world.fsck()
    problem = only(report, "corrupt-blob")
    assert kinds(report) == ["corrupt-blob"]
    assert problem.subject == layer and problem.severity == "damage"
    assert "hash to sha256:" in problem.problem and problem.repositories == ("local/app",)
    assert "quarantine" in problem.repair and problem.remedy and not report.clean

    repaired = world.fsck(repair=True)
    problem = only(repaired, "corrupt-blob")
    assert problem.outcome and problem.outcome.startswith("moved to ")
    assert not problem.repaired and not repaired.clean  # the content is still lost
    moved = Path(problem.outcome.removeprefix("moved to "))
    assert moved.parent == world.data_dir / "storage" / "quarantine" and moved.exists()
    assert not world.blob_file(layer).exists()
    assert world.run(world.store.count("blobs")) == 3  # the row manifests need stays

    # Afterwards it is a blob whose file is gone, until its bytes are uploaded again.
    assert kinds(world.fsck()) == ["missing-blob-file"]
    original = bytearray(moved.read_bytes())
    original[10] ^= 0xFF
    assert world.push_blob(bytes(original)) == layer
    assert world.fsck().problems == ()


def test_a_deleted_blob_file_is_reported_never_repaired_away(world: World) -> None:
    image = world.push_image("v1")
    world.blob_file(image.config).unlink()

    report = world.fsck(hours=2, repair=True)
    problem = only(report, "missing-blob-file")
    assert kinds(report) == ["missing-blob-file"]
    assert problem.subject == image.config and problem.repositories == ("local/app",)
    assert "upload the blob again" in (problem.remedy or "")
    assert not problem.repaired and not report.clean
    assert world.run(world.store.count("blobs")) == 3


def test_a_stray_blob_file_waits_out_the_grace_period_then_repair_removes_it(
    world: World,
) -> None:
    world.push_image("v1")
    data = os.urandom(500)
    stray = world.blob_file(digest_bytes(data))
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(data)
    age(stray, 3)  # an old mtime is not enough: it was renamed (published) just now

    fresh = world.fsck(repair=True)
    assert fresh.problems == () and fresh.in_grace == 1 and stray.exists()

    later = world.fsck(hours=2)
    problem = only(later, "unreferenced-blob-file")
    assert problem.subject == digest_bytes(data) and problem.severity == "garbage"
    assert problem.repair == "removes the file" and stray.exists() and not later.clean

    repaired = world.fsck(hours=2, repair=True)
    problem = only(repaired, "unreferenced-blob-file")
    assert problem.repaired and problem.outcome == "removed" and repaired.clean
    assert not stray.exists()
    assert world.fsck(hours=2).problems == ()


def test_a_shorter_grace_counts_younger_files(world: World) -> None:
    data = os.urandom(100)
    stray = world.blob_file(digest_bytes(data))
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(data)
    assert world.fsck(hours=0.5).in_grace == 1
    assert kinds(world.fsck(hours=0.5, grace=60)) == ["unreferenced-blob-file"]


def test_a_file_not_named_like_a_blob_is_a_stray_left_alone(world: World) -> None:
    world.push_image("v1")
    odd = world.data_dir / "storage" / "blobs" / "sha256" / "ab" / "notes.txt"
    odd.parent.mkdir(parents=True, exist_ok=True)
    odd.write_text("hello")
    (world.data_dir / "storage" / "uploads" / "x.tmp").write_text("?")

    report = world.fsck(hours=2, repair=True)
    assert kinds(report) == ["stray-file", "stray-file"]
    assert {p.subject for p in report.problems} == {
        "blobs/sha256/ab/notes.txt",
        "uploads/x.tmp",
    }
    assert not any(p.repaired for p in report.problems) and odd.exists()


def test_a_dropped_blob_row_keeps_its_still_needed_file(world: World) -> None:
    image = world.push_image("v1")
    layer = image.layers[1]
    world.sql("DELETE FROM blobs WHERE digest = ?", layer)

    report = world.fsck(hours=2, repair=True)
    assert kinds(report) == ["dangling-blob-link", "missing-manifest-blob", "unrecorded-blob-file"]
    assert all(p.subject == layer and not p.repaired for p in report.problems)
    assert only(report, "dangling-blob-link").repositories == ("local/app",)
    assert image.manifest in only(report, "missing-manifest-blob").problem
    assert world.blob_file(layer).exists()  # needed: never garbage


def test_a_blob_row_whose_size_is_wrong(world: World) -> None:
    image = world.push_image("v1")
    world.sql("UPDATE blobs SET size = 7 WHERE digest = ?", image.config)
    problem = only(world.fsck(), "blob-size-mismatch")
    assert problem.subject == image.config and "records 7" in problem.problem


# ------------------------------------------------------------------ references


def test_a_corrupt_manifest_and_lost_references(world: World) -> None:
    image = world.push_image("v1")
    other = world.push_image("v2")
    world.sql(
        "UPDATE manifests SET content = CAST(content || ' ' AS BLOB) WHERE digest = ?",
        image.manifest,
    )
    world.sql("DELETE FROM manifest_blobs WHERE digest = ?", other.layers[0])

    report = world.fsck()
    assert kinds(report) == ["corrupt-manifest", "manifest-references-mismatch"]
    corrupt = only(report, "corrupt-manifest")
    assert corrupt.subject == image.manifest and "delete manifest" in (corrupt.remedy or "")
    mismatch = only(report, "manifest-references-mismatch")
    assert mismatch.subject == other.manifest
    assert f"names {other.layers[0]} without a recorded reference" in mismatch.problem


def test_a_recorded_reference_the_manifest_does_not_name(world: World) -> None:
    image = world.push_image("v1")
    extra = world.push_blob(b"extra")
    world.sql(
        "INSERT INTO manifest_blobs (manifest_id, digest) "
        "SELECT id, ? FROM manifests WHERE digest = ?",
        extra,
        image.manifest,
    )
    problem = only(world.fsck(), "manifest-references-mismatch")
    assert f"recorded to {extra} that it does not name" in problem.problem


def test_an_index_whose_child_was_deleted_and_a_tag_pointing_nowhere(world: World) -> None:
    image = world.push_image("v1")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": image.manifest, "size": 1}],
    }
    index_digest = world.push_manifest(index, "multi")
    world.run(world.registry.delete_manifest(world.target, image.manifest))
    world.push_image("v2")
    world.sql("UPDATE tags SET manifest_id = 9999 WHERE name = 'v2'")

    report = world.fsck()
    assert kinds(report) == ["dangling-tag", "missing-child-manifest"]
    child = only(report, "missing-child-manifest")
    assert child.subject == image.manifest and index_digest in child.problem
    tag = only(report, "dangling-tag")
    assert tag.subject == "local/app:v2" and "manifest #9999" in tag.problem


def test_a_tag_pointing_into_another_repository(world: World) -> None:
    world.push_image("v1", "app")
    other = world.push_image("v1", "other")
    world.sql(
        "UPDATE tags SET manifest_id = (SELECT id FROM manifests WHERE digest = ?) "
        "WHERE repository_id = (SELECT id FROM repositories WHERE name = 'app')",
        other.manifest,
    )
    problem = only(world.fsck(), "dangling-tag")
    assert problem.subject == "local/app:v1" and "another repository" in problem.problem


# ------------------------------------------------------------------ uploads


def test_upload_sessions_orphaned_either_way(world: World) -> None:
    lost_bytes = world.run(world.uploads.start(world.target)).id
    Path(world.driver.upload_path(lost_bytes)).unlink()
    orphan = Path(world.driver.upload_path("0123456789abcdef"))
    orphan.write_bytes(b"partial")

    assert world.fsck(repair=True).in_grace == 2 and orphan.exists()
    report = world.fsck(hours=2)
    assert kinds(report) == ["orphaned-upload-file", "orphaned-upload-row"]
    assert only(report, "orphaned-upload-row").subject == lost_bytes
    assert only(report, "orphaned-upload-file").subject == "0123456789abcdef"

    repaired = world.fsck(hours=2, repair=True)
    assert repaired.clean and all(p.repaired for p in repaired.problems)
    assert not orphan.exists()
    assert world.run(world.store.get_upload(lost_bytes)) is None
    assert world.fsck(hours=2).problems == ()


def test_broken_and_abandoned_upload_sessions(world: World) -> None:
    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    broken = world.run(world.uploads.start(world.target)).id
    world.run(world.uploads.append(world.target, broken, body(b"x" * 100),
                                   content_range=None, content_length=100))  # fmt: skip
    os.truncate(world.driver.upload_path(broken), 40)
    idle = world.run(world.uploads.start(world.target)).id

    report = world.fsck()
    problem = only(report, "broken-upload")
    assert problem.subject == broken and "acknowledged 100 bytes" in problem.problem
    assert kinds(report) == ["broken-upload"]  # the idle session is only minutes old

    later = world.fsck(hours=24 * 8, repair=True)
    assert kinds(later) == ["abandoned-upload", "broken-upload"]
    assert only(later, "abandoned-upload").subject == idle
    assert later.clean
    for upload_id in (broken, idle):
        assert world.run(world.store.get_upload(upload_id)) is None
        assert not Path(world.driver.upload_path(upload_id)).exists()


def test_an_upload_a_writer_holds_is_never_removed(world: World) -> None:
    upload_id = world.run(world.uploads.start(world.target)).id
    writer = world.run(world.driver.open_upload(upload_id, 0, create=False))
    try:
        assert not world.run(world.driver.remove_upload_if_idle(upload_id, float("inf")))
    finally:
        world.run(writer.close())
    assert world.run(world.driver.remove_upload_if_idle(upload_id, float("inf")))


def test_a_blob_published_again_is_never_removed(world: World) -> None:
    data = os.urandom(64)
    digest = digest_bytes(data)
    path = world.blob_file(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    # Its last change (the publish) is after the cut-off: left, as a live push's blob is.
    assert not world.run(world.driver.remove_blob_if_unchanged(digest, time.time() - HOUR))
    assert world.run(world.driver.quarantine_blob(digest, time.time() - HOUR)) is None
    assert path.exists()
    assert world.run(world.driver.remove_blob_if_unchanged(digest, time.time() + 1))
    assert not path.exists()


# ------------------------------------------------------------------ the command


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["fsck", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_command_exit_status_is_the_ci_contract(world: World) -> None:
    image = world.push_image("v1")
    data_dir = str(world.data_dir)

    status, out, err = invoke("--data-dir", data_dir)
    report = json.loads(out)
    assert status == 0, err
    assert report["status"] == "clean" and report["problems"] == []
    assert report["checked"]["blobFiles"] == 3 and report["checked"]["manifests"] == 1

    flip_byte(world.blob_file(image.layers[0]))
    status, out, err = invoke("--data-dir", data_dir, "-o", "table")
    assert status == 1
    assert "corrupt-blob" in out and image.layers[0] in out
    assert "WARNING: fsck found 1 problem(s): 1 corrupt-blob" in err

    stray = world.blob_file(digest_bytes(b"stray"))
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    world.blob_file(image.layers[0]).unlink()  # the corrupt one: now simply missing
    status, out, _ = invoke("--data-dir", data_dir, "--grace", "0", "--repair")
    report = json.loads(out)
    assert status == 1 and report["status"] == "problems" and report["remaining"] == 1
    assert report["problemCounts"] == {"missing-blob-file": 1, "unreferenced-blob-file": 1}
    assert not stray.exists()

    world.push_blob(b"stray")  # not what was missing: still damaged
    status, out, _ = invoke("--data-dir", data_dir, "--query", "status", "-o", "tsv")
    assert (status, out) == (1, "problems\n")


def test_the_command_repairs_to_exit_0(world: World) -> None:
    world.push_image("v1")
    orphan = Path(world.driver.upload_path("0123456789abcdef"))
    orphan.write_bytes(b"partial")
    status, out, _ = invoke("--data-dir", str(world.data_dir), "--grace", "0s", "--repair")
    assert status == 0 and json.loads(out)["status"] == "repaired" and not orphan.exists()


def test_the_command_refuses_a_place_without_a_deployment(tmp_path: Path) -> None:
    status, _, err = invoke("--data-dir", str(tmp_path / "nothing"))
    assert status == 3 and "No hamn database at" in err
    assert not (tmp_path / "nothing").exists()  # looked, created nothing


def test_the_command_reads_durations(world: World) -> None:
    status, _, err = invoke("--data-dir", str(world.data_dir), "--grace", "soon")
    assert status == 2 and "not a duration" in err
    for good in ("90m", "1h30m", "7d", "0", "3600", "1.5h"):
        assert invoke("--data-dir", str(world.data_dir), "--grace", good)[0] == 0


@pytest.mark.parametrize("hours", [0, 2])
def test_concurrent_pushes_never_show_as_problems(world: World, hours: float) -> None:
    """Blobs published and manifests stored during a check are never garbage."""

    async def push_while_checking() -> FsckReport:
        service = FsckService(world.store, world.driver, clock=lambda: time.time() + hours * HOUR)
        check = asyncio.ensure_future(service.check(repair=True, grace=HOUR * 3))

        async def body(data: bytes) -> AsyncIterator[bytes]:
            yield data

        for i in range(20):
            data = os.urandom(2000 + i)
            await world.uploads.upload_whole(world.target, digest_bytes(data), body(data), None)
        return await check

    world.push_image("v1")
    report = world.run(push_while_checking())
    assert report.problems == ()
    assert world.fsck().problems == ()
