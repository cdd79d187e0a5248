"""Writes are atomic: ``kill -9`` of the server (the granian parent and its
workers) in the middle of uploads and of manifest pushes leaves nothing corrupt
or half-visible, and the server starts again cleanly on the same data.

Each test runs its own server on its own data directory (``own_server``).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    OCI_INDEX,
    OCI_MANIFEST,
    all_tags,
    check_repository_consistent,
    connect,
    descriptor,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    image_manifest,
    kill9,
    location,
    push_blob,
    push_image,
    push_manifest,
    random_bytes,
    slow_body,
    start_upload,
    unique_repo,
    with_query,
)

MIB = 1024 * 1024

Server = Callable[[], Any]


def check_stored_blobs(data_dir: Path) -> int:
    """Every published blob file's bytes match the digest it is stored under."""
    root = data_dir / "storage" / "blobs"
    count = 0
    for path in root.glob("*/*/*"):
        algorithm = path.parent.parent.name
        actual = hashlib.new(algorithm, path.read_bytes()).hexdigest()
        assert actual == path.name, f"{path} holds bytes of {algorithm}:{actual}"
        count += 1
    return count


def check_clean_start(reg: Any) -> None:
    """The restarted server answers and logged no error while starting."""
    log = reg.log()
    start = log.rfind("serving the registry API")
    assert "Traceback" not in log[start:], log[start:][-3000:]


class Background(threading.Thread):
    """Runs ``fn`` in a thread and keeps what it returned or raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- kill -9 mid-upload ----------------------------------------------------------------


@pytest.mark.filesystem_storage  # counts the blob files published
def test_kill_mid_upload(own_server: Server) -> None:
    reg = own_server()
    repo = unique_repo("crash")
    with connect(reg) as client:
        before = push_image(client, repo, "before", layers=2, layer_size=300_000)

        # An idle session with one acknowledged chunk.
        idle_data = random_bytes(3 * MIB)
        idle = start_upload(client, repo)
        idle = location(
            expect_status(
                client.patch(
                    idle, content=idle_data[:MIB], headers={"Content-Range": f"0-{MIB - 1}"}
                ),
                202,
            )
        )

        # A session with one acknowledged chunk and a second, slow chunk in flight.
        busy_data = random_bytes(8 * MIB)
        busy = start_upload(client, repo)
        busy = location(
            expect_status(
                client.patch(
                    busy, content=busy_data[:MIB], headers={"Content-Range": f"0-{MIB - 1}"}
                ),
                202,
            )
        )

        # A slow monolithic PUT and a slow single-POST upload in flight.
        mono_data = random_bytes(8 * MIB)
        mono = start_upload(client, repo)
        post_data = random_bytes(8 * MIB)

    sent = {name: [0] for name in ("busy", "mono", "post")}

    def slow(name: str, data: bytes) -> Any:
        return slow_body(data, 64 * 1024, 0.01, sent[name])

    def run(method: str, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        with connect(reg) as c:
            return c.request(method, url, content=body, headers=headers)

    threads = [
        Background(lambda: run("PATCH", busy, slow("busy", busy_data[MIB:]))),
        Background(
            lambda: run(
                "PUT", with_query(mono, digest=digest_of(mono_data)), slow("mono", mono_data)
            )
        ),
        Background(
            lambda: run(
                "POST",
                f"/v2/{repo}/blobs/uploads/?digest={digest_of(post_data)}",
                slow("post", post_data),
            )
        ),
    ]
    for t in threads:
        t.start()
    _wait_for(lambda: all(s[0] >= 2 * MIB for s in sent.values()), "the slow bodies")
    kill9(reg.process)
    for t in threads:
        t.join(timeout=30)
        # No request finished: each was cut off by the kill.
        assert t.error is not None, t.result

    reg = own_server()
    check_clean_start(reg)
    assert check_stored_blobs(reg.data_dir) >= 3
    with connect(reg) as client:
        assert check_repository_consistent(client, repo) == {"before": before.manifest}
        # Nothing that was in flight became visible.
        for data in (busy_data, mono_data, post_data):
            expect_error(client.head(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")

        # The idle session survived exactly as acknowledged and completes.
        r = expect_status(client.get(idle), 204)
        assert r.headers["Range"] == f"0-{MIB - 1}"
        _finish(client, repo, idle, idle_data, MIB)

        # The interrupted sessions are at their acknowledged offset, or cleanly unknown.
        for loc, data, acknowledged in ((busy, busy_data, MIB), (mono, mono_data, 0)):
            r = client.get(loc)
            if r.status_code == 404:
                expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
                continue
            expect_status(r, 204)
            assert r.headers["Range"] == f"0-{max(acknowledged - 1, 0)}"
            _finish(client, repo, loc, data, acknowledged)
    check_stored_blobs(reg.data_dir)


def _finish(client: httpx.Client, repo: str, loc: str, data: bytes, offset: int) -> None:
    """Send the rest of ``data`` from ``offset`` and complete; the blob must be exact.

    On object storage the upload's writer lease of the killed server is normally taken
    over at once (a dead process of this host); should the kill not have completed yet,
    the upload is busy until the lease expires, and a client retries after Retry-After,
    as this does (bounded by the lease's 30 s).
    """
    deadline = time.monotonic() + 40
    while True:
        r = client.patch(
            loc, content=data[offset:], headers={"Content-Range": f"{offset}-{len(data) - 1}"}
        )
        if r.status_code != 409 or time.monotonic() > deadline:
            break
        expect_error(r, 409, "BLOB_UPLOAD_BUSY")
        time.sleep(float(r.headers["Retry-After"]))
    loc = location(expect_status(r, 202))
    expect_status(client.put(with_query(loc, digest=digest_of(data))), 201)
    assert get_blob(client, repo, digest_of(data)) == data


# -- kill -9 mid-manifest-push ---------------------------------------------------------


@dataclass
class PushLog:
    """What one pushing thread saw: acknowledged pushes, and what was in flight at the kill."""

    tag: str
    #: The manifest the tag named when the round began.
    before: str | None = None
    acknowledged: list[str] = field(default_factory=list)
    in_flight: str | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    blob_in_flight: bytes | None = None


def _push_forever(
    reg: Any, repo: str, base: list[Any], log: PushLog, stop: threading.Event, seed: int
) -> None:
    """Push manifests (images and indexes over ``base``) to one tag, and small blobs,
    until the server dies; record each acknowledgement."""
    rng = random.Random(seed)
    with connect(reg, timeout=10) as client:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if n % 3 == 0:
                    data = random_bytes(rng.randint(1, 40_000))
                    log.blob_in_flight = data
                    push_blob(client, repo, data)
                    log.blobs[digest_of(data)] = data
                    log.blob_in_flight = None
                    continue
                if n % 3 == 1:
                    img = rng.choice(base)
                    doc = image_manifest(
                        img.config, img.layers, annotations={"n": f"{log.tag}-{n}"}
                    )
                    media_type = OCI_MANIFEST
                else:
                    children = rng.sample(base, 2)
                    doc = {
                        "schemaVersion": 2,
                        "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, c.manifest) for c in children],
                        "annotations": {"n": f"{log.tag}-{n}"},
                    }
                    media_type = OCI_INDEX
                body = encode(doc)
                log.in_flight = digest_of(body)
                r = client.put(
                    f"/v2/{repo}/manifests/{log.tag}",
                    content=body,
                    headers={"Content-Type": media_type},
                )
                expect_status(r, 201)
                log.acknowledged.append(digest_of(body))
                log.in_flight = None
            except httpx.TransportError:
                return


@dataclass
class ChunkLog:
    """One chunked upload fed until the kill: the acknowledged offset and the chunk in flight."""

    data: bytes
    location: str = ""
    acknowledged: int = 0
    in_flight_end: int | None = None


def _chunks_forever(reg: Any, repo: str, log: ChunkLog, stop: threading.Event) -> None:
    """PATCH 64 KiB chunks of ``log.data`` into one session until the server dies."""
    piece = 64 * 1024
    with connect(reg, timeout=10) as client:
        try:
            log.location = start_upload(client, repo)
            while not stop.is_set() and log.acknowledged < len(log.data):
                start = log.acknowledged
                end = min(start + piece, len(log.data))
                log.in_flight_end = end
                r = client.patch(
                    log.location,
                    content=log.data[start:end],
                    headers={"Content-Range": f"{start}-{end - 1}"},
                )
                expect_status(r, 202)
                assert r.headers["Range"] == f"0-{end - 1}"
                log.location = location(r)
                log.acknowledged = end
                log.in_flight_end = None
        except httpx.TransportError:
            return


def _check_chunked_upload_after_kill(client: httpx.Client, repo: str, log: ChunkLog) -> None:
    """The session stands at the acknowledged offset (or at the end of the chunk cut off,
    if the server took it but could not answer), or is cleanly unknown; it completes."""
    if not log.location:
        return
    r = client.get(log.location)
    if r.status_code == 404:
        expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
        return
    expect_status(r, 204)
    # Chunks are 64 KiB, so "0-0" is an empty upload, never a one-byte one.
    offset = 0 if r.headers["Range"] == "0-0" else int(r.headers["Range"].split("-")[1]) + 1
    allowed = {log.acknowledged, *([log.in_flight_end] if log.in_flight_end else [])}
    assert offset in allowed, (offset, allowed)
    _finish(client, repo, location(r), log.data, offset)


def _check_after_kill(client: httpx.Client, repo: str, logs: list[PushLog]) -> None:
    tags = set(all_tags(client, repo))
    for log in logs:
        # Every acknowledged manifest and blob survived, byte for byte.
        for digest in log.acknowledged:
            r = expect_status(client.get(f"/v2/{repo}/manifests/{digest}"), 200)
            assert digest_of(r.content) == digest
        for digest, data in log.blobs.items():
            assert get_blob(client, repo, digest) == data
        if log.blob_in_flight is not None:
            r = client.get(f"/v2/{repo}/blobs/{digest_of(log.blob_in_flight)}")
            assert r.status_code in (200, 404)
            if r.status_code == 200:
                assert r.content == log.blob_in_flight
        # The tag is the last acknowledged push (or what it was before the round, when
        # none was acknowledged), or the push cut off by the kill; never anything else.
        allowed = {*(log.acknowledged[-1:] or [log.before]), log.in_flight} - {None}
        if log.tag not in tags:
            assert not log.acknowledged and log.before is None, f"tag {log.tag} lost"
            continue
        r = expect_status(client.head(f"/v2/{repo}/manifests/{log.tag}"), 200)
        assert r.headers["Docker-Content-Digest"] in allowed, (log.tag, allowed)
    # Every tag resolves; every blob and child manifest a tagged manifest names exists.
    check_repository_consistent(client, repo)
    for tag in tags:
        r = expect_status(client.get(f"/v2/{repo}/manifests/{tag}"), 200)
        for child in r.json().get("manifests", []):
            expect_status(client.head(f"/v2/{repo}/manifests/{child['digest']}"), 200)


def test_kill_mid_manifest_pushes(own_server: Server) -> None:
    reg = own_server()
    repo = unique_repo("crash")
    with connect(reg) as client:
        base = [push_image(client, repo, None, layers=2, layer_size=2000) for _ in range(4)]
    before: dict[str, str] = {}
    for round_ in range(2):
        stop = threading.Event()
        logs = [PushLog(f"t{i}", before.get(f"t{i}")) for i in range(6)]
        chunked = ChunkLog(random_bytes(16 * MIB))
        threads = [
            Background(partial(_push_forever, reg, repo, base, log, stop, round_ * 100 + i))
            for i, log in enumerate(logs)
        ]
        threads.append(Background(partial(_chunks_forever, reg, repo, chunked, stop)))
        for t in threads:
            t.start()
        _wait_for(
            lambda logs=logs: sum(len(g.acknowledged) for g in logs) >= 30,
            "the first manifest pushes",
        )
        time.sleep(random.uniform(0.05, 0.3))
        kill9(reg.process)
        stop.set()
        for t in threads:
            t.join(timeout=30)
            assert t.error is None, t.error

        reg = own_server()
        check_clean_start(reg)
        check_stored_blobs(reg.data_dir)
        with connect(reg) as client:
            _check_after_kill(client, repo, logs)
            _check_chunked_upload_after_kill(client, repo, chunked)
            # The restarted server takes new pushes to the same tags.
            for log in logs:
                img = base[0]
                doc = image_manifest(img.config, img.layers, annotations={"after": log.tag})
                before[log.tag] = push_manifest(client, repo, log.tag, doc)


def test_upload_session_survives_a_clean_restart(
    own_server: Server, stop_server: Callable[[Any], None]
) -> None:
    reg = own_server()
    repo = unique_repo("restart")
    data = random_bytes(2 * MIB)
    with connect(reg) as client:
        loc = start_upload(client, repo)
        loc = location(
            expect_status(
                client.patch(loc, content=data[:MIB], headers={"Content-Range": f"0-{MIB - 1}"}),
                202,
            )
        )
    stop_server(reg)
    reg = own_server()
    check_clean_start(reg)
    with connect(reg) as client:
        r = expect_status(client.get(loc), 204)
        assert r.headers["Range"] == f"0-{MIB - 1}"
        _finish(client, repo, loc, data, MIB)
