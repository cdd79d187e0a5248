"""Online garbage collection racing live clients (SPEC §5.4, issue 4 point 5).

A private ``hamn serve`` with a grace period of 0 (every link nothing references
is garbage at once, the harshest setting) that collects every second itself;
``hamn gc`` runs again and again beside it while client threads push images that reuse
existing blobs, mount blobs across repositories, skip blobs a HEAD finds, upload
blobs they never use, and delete images. With grace 0 a push whose link a
collection removed before its manifest arrived is refused with
MANIFEST_BLOB_UNKNOWN, a clean failure: the client uploads again and retries.

What must hold at the end: every manifest the database stores is served, and
every blob it references is served with the right digest; usage is the sum of
the distinct blobs the manifests reference; every image a client pushed and did
not delete is still there; and the collections did remove garbage.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    connect,
    encode,
    error_codes,
    expect_status,
    image_manifest,
    push_blob,
    push_manifest,
    put_manifest,
    random_bytes,
    referenced_blobs,
    with_query,
)

from backend_support import hamn_command_env

CLIENTS = 4
#: Bounds of each client: operations, and seconds.
OPERATIONS = 400
CLIENT_SECONDS = 25.0
#: Bounds of the collector loop: runs, and seconds.
GC_RUNS = 100
GC_SECONDS = 60.0
#: Attempts at one push before a client gives it up (each attempt uploads again).
PUSH_ATTEMPTS = 8
BASE = "gcbase"


def hamn_gc(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hamn gc --data-dir <dir> --grace 0 ...``, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "hamn", "gc", "--data-dir", str(data_dir), "--grace", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=hamn_command_env(data_dir),
    )


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    """One client thread's pushes, mounts and deletes in its own repository."""

    def __init__(self, reg: Any, index: int, shared: list[bytes], tally: Counter[str]) -> None:
        self.reg = reg
        self.repo = f"gcrace{index}"
        self.rng = random.Random(index)
        self.shared = shared
        self.tally = tally
        self.kept: list[str] = []  # manifests pushed and not deleted
        self.lock = threading.Lock()

    def count(self, what: str) -> None:
        with self.lock:
            self.tally[what] += 1

    def place(self, client: httpx.Client, data: bytes, *, first_try: bool) -> None:
        """Make the blob available in the repository the way a client would: skip it if
        a HEAD finds it, mount it from another repository, or upload it."""
        digest = digest_of(data)
        if first_try and data in self.shared:
            way = self.rng.choice(["head", "mount-base", "mount-other"])
            head = client.head(f"/v2/{self.repo}/blobs/{digest}") if way == "head" else None
            if head is not None and head.status_code == 200:
                self.count("head-skip")
                return
            source = BASE if way == "mount-base" else f"gcrace{self.rng.randrange(CLIENTS)}"
            r = client.post(
                f"/v2/{self.repo}/blobs/uploads/", params={"mount": digest, "from": source}
            )
            if r.status_code == 201:
                self.count("mounted")
                return
            expect_status(r, 202)  # not there (any more): upload into the session opened
            loc = r.headers["Location"]
            expect_status(client.put(with_query(loc, digest=digest), content=data), 201)
            self.count("mount-fell-back")
            return
        push_blob(client, self.repo, data)

    def push(self, client: httpx.Client, n: int) -> None:
        layers = [*self.rng.sample(self.shared, 2), random_bytes(1024)]
        config = encode({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex})
        body = encode(image_manifest(config, layers))
        digest = digest_of(body)
        tag = f"t{n}" if self.rng.random() < 0.6 else digest
        for attempt in range(PUSH_ATTEMPTS):
            for data in (config, *layers):
                self.place(client, data, first_try=attempt == 0)
            r = put_manifest(client, self.repo, tag, body)
            if r.status_code == 201:
                self.kept.append(digest)
                self.count("pushed")
                return
            # The only allowed failure: a link the collector removed before the manifest came.
            assert r.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in error_codes(r), r.text
            self.count("manifest-blob-unknown")
        self.count("gave-up")

    def run(self, stop_at: float) -> None:
        with connect(self.reg) as client:
            for n in range(OPERATIONS):
                if time.monotonic() > stop_at:
                    return
                op = self.rng.random()
                if op < 0.15 and self.kept:
                    digest = self.kept.pop(self.rng.randrange(len(self.kept)))
                    expect_status(client.delete(f"/v2/{self.repo}/manifests/{digest}"), 202)
                    self.count("deleted")
                elif op < 0.25:
                    push_blob(client, self.repo, random_bytes(2048))  # uploaded, never used
                    self.count("abandoned-blob")
                else:
                    self.push(client, n)


def stored_manifests(data_dir: Path) -> list[tuple[str, str]]:
    """Every (repository, manifest digest) the server's database holds."""
    db = sqlite3.connect(f"file:{data_dir / 'metadata.db'}?mode=ro", uri=True)
    try:
        return list(
            db.execute(
                "SELECT r.name, m.digest FROM manifests m "
                "JOIN repositories r ON r.id = m.repository_id ORDER BY r.name, m.digest"
            )
        )
    finally:
        db.close()


@pytest.mark.sqlite_database  # stored_manifests reads metadata.db
def test_gc_races_pushes_mounts_and_deletes(start_server: Any) -> None:
    # The server collects every second too: its workers and ``hamn gc`` take turns.
    reg = start_server(env={"HAMN_GC_GRACE": "0", "HAMN_GC_INTERVAL": "1"})
    data_dir: Path = reg.data_dir
    shared = [random_bytes(4096 + i) for i in range(6)]
    tally: Counter[str] = Counter()
    with connect(reg) as client:
        # The base image keeps the shared layers referenced whatever the clients do.
        config = encode({"architecture": "amd64", "os": "linux"})
        for data in (config, *shared):
            push_blob(client, BASE, data)
        push_manifest(client, BASE, "latest", image_manifest(config, shared))

    clients = [Client(reg, i, shared, tally) for i in range(CLIENTS)]
    stop_at = time.monotonic() + CLIENT_SECONDS
    failures: list[BaseException] = []

    def guarded(c: Client) -> None:
        try:
            c.run(stop_at)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    removed: Counter[str] = Counter()
    runs = 0
    gc_stop = time.monotonic() + GC_SECONDS
    while any(t.is_alive() for t in threads) and runs < GC_RUNS and time.monotonic() < gc_stop:
        done = hamn_gc(data_dir)
        runs += 1
        if done.returncode == 3 and "another garbage collection" in done.stderr:
            continue  # the server's own collection was running
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        removed.update({k: v for k, v in report["removed"].items() if isinstance(v, int)})
    for t in threads:
        t.join(timeout=CLIENT_SECONDS + 30)
        assert not t.is_alive(), "a client did not finish in time"
    if failures:
        raise failures[0]
    for _ in range(20):  # once more after the clients, unless the server is collecting
        final = hamn_gc(data_dir)
        if final.returncode != 3:
            break
        time.sleep(0.2)
    assert final.returncode == 0, final.stdout + final.stderr

    # The race happened, and the collector had garbage to take.
    assert runs >= 3, runs
    assert tally["pushed"] >= CLIENTS * 5, tally
    assert tally["mounted"] and tally["deleted"] and tally["abandoned-blob"], tally
    assert removed["blobLinks"] > 0 and removed["blobs"] > 0, removed
    print(f"{runs} collections removed {dict(removed)}; clients: {dict(tally)}")

    # Every stored manifest, and every blob it references, is served with the right digest.
    stored = stored_manifests(data_dir)
    sizes: dict[str, int] = {}
    with connect(reg) as client:
        for repo, digest in stored:
            r = expect_status(client.get(f"/v2/{repo}/manifests/{digest}"), 200)
            assert digest_of(r.content) == digest
            for blob in referenced_blobs(r.content):
                got = client.get(f"/v2/{repo}/blobs/{blob}", follow_redirects=True)
                assert got.status_code == 200, (repo, digest, blob, got.text)
                assert digest_of(got.content) == blob, (repo, blob)
                sizes[blob] = len(got.content)
        # Nothing a client kept vanished.
        have = set(stored)
        for c in clients:
            for digest in c.kept:
                assert (c.repo, digest) in have, (c.repo, digest)
        usage = expect_status(client.get("/api/registries/local/usages"), 200).json()["value"]
        size = next(int(u["currentValue"]) for u in usage if u["name"] == "Size")
    assert size == sum(sizes.values()), (size, sum(sizes.values()))
    log = reg.log()
    assert "Traceback" not in log and "request failed" not in log, log[-4000:]
