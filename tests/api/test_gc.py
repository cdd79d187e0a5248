"""``hamn gc`` beside a live ``hamn serve``, and the server's own periodic collection
(a ``gc`` job its job worker runs) with its abandoned-upload clean-up (SPEC §5.4).

Each test starts its own server (its own data directory and settings).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from api_support import (
    connect,
    digest_of,
    expect_status,
    push_blob,
    push_image,
    random_bytes,
    start_upload,
)

from backend_support import hamn_command_env


def hamn_gc(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hamn", "gc", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=hamn_command_env(data_dir),
    )


def usage(client: Any) -> int:
    value = expect_status(client.get("/api/registries/local/usages"), 200).json()["value"]
    return next(int(u["currentValue"]) for u in value if u["name"] == "Size")


@pytest.mark.filesystem_storage  # counts the blob files left
def test_gc_command_dry_run_then_collect(start_server: Any) -> None:
    reg = start_server(env={"HAMN_GC_INTERVAL": "0"})
    with connect(reg) as client:
        kept = push_image(client, "app", "v1", layers=2)
        gone = push_image(client, "app", "v2", layers=1)
        loose = random_bytes(3000)
        push_blob(client, "scratch", loose)  # uploaded, never used
        expect_status(client.delete(f"/v2/app/manifests/{gone.digest}"), 202)
        before = usage(client)

        # The default grace (1h) protects every link made just now.
        done = hamn_gc(reg.data_dir)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["removed"]["blobs"] == 0

        dry = hamn_gc(reg.data_dir, "--grace", "0", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        report = json.loads(dry.stdout)
        garbage = {digest_of(loose), digest_of(gone.config), digest_of(gone.layers[0])}
        assert report["dryRun"] is True and set(report["blobs"]) == garbage
        assert report["removed"]["blobLinks"] == 3
        expected_bytes = len(loose) + len(gone.config) + len(gone.layers[0])
        assert report["removed"]["blobBytes"] == expected_bytes == report["bytesFreed"]
        expect_status(client.head(f"/v2/scratch/blobs/{digest_of(loose)}"), 200)

        table = hamn_gc(reg.data_dir, "--grace", "0", "-o", "table")
        assert table.returncode == 0, table.stderr
        assert "Bytes freed" in table.stdout and str(expected_bytes) in table.stdout

        assert client.head(f"/v2/scratch/blobs/{digest_of(loose)}").status_code == 404
        for data in (gone.config, *gone.layers):
            assert client.head(f"/v2/app/blobs/{digest_of(data)}").status_code == 404
        # The kept image is whole, and usage did not move.
        expect_status(client.get("/v2/app/manifests/v1"), 200)
        for data in (kept.config, *kept.layers):
            got = expect_status(client.get(f"/v2/app/blobs/{digest_of(data)}"), 200)
            assert got.content == data
        assert usage(client) == before
        storage = reg.data_dir / "storage" / "blobs"
        assert len([p for p in storage.rglob("*") if p.is_file()]) == 3

        again = json.loads(hamn_gc(reg.data_dir, "--grace", "0").stdout)
        assert again["bytesFreed"] == 0 and again["blobs"] == []


@pytest.mark.sqlite_database  # no metadata.db in the data directory
def test_gc_command_refuses_a_missing_deployment(tmp_path: Path) -> None:
    done = hamn_gc(tmp_path / "nothing")
    assert done.returncode == 3
    assert "No hamn database" in done.stderr


@pytest.mark.sqlite_database  # reads the jobs table from metadata.db
def test_server_collects_and_cleans_abandoned_uploads(start_server: Any) -> None:
    reg = start_server(
        env={"HAMN_GC_INTERVAL": "1", "HAMN_GC_GRACE": "2s", "HAMN_UPLOAD_TIMEOUT": "3s"}
    )
    with connect(reg) as client:
        image = push_image(client, "app", "v1")
        loose = random_bytes(2000)
        push_blob(client, "scratch", loose)
        abandoned = start_upload(client, "app")
        active = start_upload(client, "app")
        written = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # The active session is written to every half second: it must stay.
            chunk = random_bytes(100)
            r = client.patch(
                active,
                content=chunk,
                headers={"Content-Range": f"{written}-{written + 99}", "Content-Length": "100"},
            )
            expect_status(r, 202)
            active = r.headers["Location"]
            written += 100
            blob_gone = client.head(f"/v2/scratch/blobs/{digest_of(loose)}").status_code == 404
            upload_gone = client.get(abandoned).status_code == 404
            if blob_gone and upload_gone:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the server did not collect within 30 s:\n" + reg.log()[-3000:])
        expect_status(client.get(active), 204)
        expect_status(client.get("/v2/app/manifests/v1"), 200)
        for data in (image.config, *image.layers):
            expect_status(client.get(f"/v2/app/blobs/{digest_of(data)}"), 200)
    # The collections ran as jobs, one per turn of gc_interval, each once.
    with sqlite3.connect(reg.data_dir / "metadata.db") as db:
        rows = db.execute("SELECT state, attempts, unique_key FROM jobs WHERE kind = 'gc'")
        done = [(state, attempts) for state, attempts, key in rows if state != "queued"]
    assert done and set(done) <= {("succeeded", 1), ("running", 1)}, done


def test_delete_untagged_removes_untagged_images_nothing_needs(start_server: Any) -> None:
    """``hamn gc --delete-untagged`` (Distribution's option; off by default, as ACR keeps
    untagged images): an image pushed by digest goes; tagged images and an index's
    untagged children stay."""
    reg = start_server(env={"HAMN_GC_INTERVAL": "0"})
    with connect(reg) as client:
        tagged = push_image(client, "keep", "v1")
        loose = push_image(client, "loose", None)  # by digest: untagged
        child = push_image(client, "multi", None)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": child.digest,
                    "size": len(child.manifest),
                }
            ],
        }
        body = json.dumps(index).encode()
        expect_status(
            client.put(
                "/v2/multi/manifests/latest",
                content=body,
                headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
            ),
            201,
        )
        before = usage(client)

        # Without the option, nothing untagged goes (ACR's behaviour).
        plain = json.loads(hamn_gc(reg.data_dir, "--grace", "0").stdout)
        assert plain["removed"]["untaggedManifests"] == 0
        expect_status(client.get(f"/v2/loose/manifests/{loose.digest}"), 200)

        done = hamn_gc(reg.data_dir, "--grace", "0", "--delete-untagged")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["untaggedManifests"] == [f"local/loose@{loose.digest}"], report
        assert client.get(f"/v2/loose/manifests/{loose.digest}").status_code == 404
        assert expect_status(client.get("/v2/keep/manifests/v1"), 200).content == tagged.manifest
        expect_status(client.get(f"/v2/multi/manifests/{child.digest}"), 200)
        assert usage(client) == before - len(loose.config) - sum(map(len, loose.layers))
        for data in (loose.config, *loose.layers):
            assert client.head(f"/v2/loose/blobs/{digest_of(data)}").status_code == 404
