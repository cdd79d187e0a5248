"""Faults of the services several servers share (issue 5 point 6): PostgreSQL
restarted while clients push, object storage answering errors, resetting
connections or answering slowly, and a server killed mid-push.

What must hold: clients see retryable answers (503 with Retry-After, 429 for a
busy upload), never a 500 and never wrong bytes; a request never hangs for long;
clients that retry finish; and afterwards every acknowledged push is whole, no
tag points to a manifest whose blobs are missing, and usage is exact.

The database of the restart test is a private PostgreSQL cluster (it is
stopped and started under the servers); the others use a database of their own
on ``HAMN_TEST_POSTGRES_URL``. Storage is a container of its own on the Azurite
of ``HAMN_TEST_AZURE_CONNECTION_STRING``, reached through a fault-injecting
proxy (:class:`cluster_support.FaultProxy`) where a test breaks it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    connect,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    image_manifest,
    kill9,
    location,
    put_manifest,
    random_bytes,
    slow_body,
    start_upload,
    with_query,
)
from cluster_support import (
    ONCE_IN_THE_MATRIX,
    Deployment,
    FaultProxy,
    PostgresServer,
    azure_or_skip,
    azure_storage,
    azure_through,
    blob_endpoint,
    check_image,
    fresh_database,
    postgres_url_or_skip,
    shared_storage,
    usage,
)

#: Statuses a client may retry (with the Retry-After they carry).
RETRYABLE = (429, 502, 503, 504)
#: The longest any one request may take while the database is away (seconds).
LONGEST_REQUEST = 6.0
#: ... while storage fails: the storage SDK retries each call a couple of times
#: (a second or so apart) before hamn answers 503, and a request makes a few calls.
LONGEST_STORAGE_REQUEST = 10.0

pytestmark = ONCE_IN_THE_MATRIX


class Retry(Exception):
    """A step met a retryable answer (or a broken connection) and is to be done again."""


@dataclass
class Tally:
    """What the clients of a fault test saw: statuses, retries, the slowest request."""

    statuses: Counter[int] = field(default_factory=Counter)
    without_retry_after: list[str] = field(default_factory=list)
    broken: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    slowest_request: str = ""
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def see(self, r: httpx.Response, seconds: float) -> httpx.Response:
        """Record ``r``; raise :class:`Retry` for a retryable answer."""
        with self.lock:
            self.statuses[r.status_code] += 1
            if seconds > self.slowest:
                self.slowest = seconds
                self.slowest_request = f"{r.request.method} {r.request.url.path} {r.status_code}"
            if r.status_code in RETRYABLE and "Retry-After" not in r.headers:
                self.without_retry_after.append(f"{r.request.method} {r.request.url.path}")
        if r.status_code in RETRYABLE:
            raise Retry(r.status_code)
        return r

    def request(self, c: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request, recorded; a broken connection is a :class:`Retry` as well."""
        started = time.monotonic()
        try:
            r = c.request(method, url, **kw)
        except httpx.TransportError as exc:
            with self.lock:
                self.broken[type(exc).__name__] += 1
                self.slowest = max(self.slowest, time.monotonic() - started)
            raise Retry(type(exc).__name__) from exc
        return self.see(r, time.monotonic() - started)

    def retrying(
        self, step: Callable[[], Any], deadline: float, stop: threading.Event | None = None
    ) -> Any:
        """Do ``step`` until it gets through without a :class:`Retry`; at ``deadline``
        or once ``stop`` is set, the last :class:`Retry` is raised."""
        while True:
            try:
                return step()
            except Retry:
                with self.lock:
                    self.retries += 1
                if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                    raise
                time.sleep(0.25)


def push_blob_recorded(tally: Tally, c: httpx.Client, repo: str, data: bytes) -> None:
    """POST a session and PUT the blob, each request recorded."""
    r = tally.request(c, "POST", f"/v2/{repo}/blobs/uploads/")
    expect_status(r, 202)
    r = tally.request(c, "PUT", with_query(location(r), digest=digest_of(data)), content=data)
    expect_status(r, 201)


@dataclass
class Pusher:
    """A client thread pushing small images (blobs through one server, the manifest
    through the next), retrying every step, until stopped or its count is done."""

    servers: list[Any]
    tally: Tally
    index: int
    deadline: float
    stop: threading.Event
    registry: str = "local"
    limit: int = 60
    acknowledged: dict[str, bytes] = field(default_factory=dict)
    attempted: dict[str, bytes] = field(default_factory=dict)

    def run(self) -> None:
        clients = [connect(reg, timeout=LONGEST_REQUEST * 2) for reg in self.servers]
        try:
            for n in range(self.limit):
                if self.stop.is_set() or time.monotonic() > self.deadline:
                    return
                self._push(clients[n % len(clients)], clients[(n + 1) % len(clients)], n)
        except Retry:
            pass  # stopped, or out of time, while its server was away: not acknowledged
        finally:
            for c in clients:
                c.close()

    def _push(self, blobs_via: httpx.Client, manifest_via: httpx.Client, n: int) -> None:
        repo = f"{self.registry}/c{self.index}"
        config = encode({"client": self.index, "n": n, "nonce": uuid.uuid4().hex})
        layer = random_bytes(20_000 + n)
        body = encode(image_manifest(config, [layer]))
        tag = f"v{n}"
        self.attempted[tag] = body
        for data in (config, layer):
            self.tally.retrying(
                lambda d=data: push_blob_recorded(self.tally, blobs_via, repo, d),  # type: ignore[misc]
                self.deadline,
                self.stop,
            )

        def put() -> None:
            r = self.tally.request(
                manifest_via,
                "PUT",
                f"/v2/{repo}/manifests/{tag}",
                content=body,
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
            expect_status(r, 201)

        self.tally.retrying(put, self.deadline, self.stop)
        self.acknowledged[tag] = body


def run_pushers(
    servers: list[Any], count: int, seconds: float, registry: str = "local"
) -> tuple[list[Pusher], Tally, Callable[[], None]]:
    """Start ``count`` pusher threads for at most ``seconds``; returns them, their tally
    and a function that stops them and waits for them."""
    tally = Tally()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    pushers = [Pusher(servers, tally, i, deadline, stop, registry) for i in range(count)]
    threads = [threading.Thread(target=p.run) for p in pushers]
    for t in threads:
        t.start()

    def finish() -> None:
        stop.set()
        for t in threads:
            t.join(seconds + 30)
        assert not any(t.is_alive() for t in threads), "a pusher hangs"

    return pushers, tally, finish


def check_pushers(c: httpx.Client, pushers: list[Pusher]) -> int:
    """Every acknowledged image is whole; every tag there is one a client sent, whole;
    usage is the distinct blobs of what is there. Returns the images found."""
    found: dict[str, int] = {}
    images = 0
    for p in pushers:
        repo = f"{p.registry}/c{p.index}"
        r = c.get(f"/v2/{repo}/tags/list")
        tags = r.json()["tags"] if r.status_code == 200 else []
        assert set(p.acknowledged) <= set(tags), (repo, sorted(p.acknowledged), tags)
        for tag in tags:
            # Nothing half-visible: a tag there serves what its client sent, blobs and all.
            check_image(c, repo, tag, p.attempted[tag])
            images += 1
            found.update(blob_sizes(p.attempted[tag]))
    assert usage(c, pushers[0].registry) == sum(found.values())
    return images


def blob_sizes(manifest: bytes) -> dict[str, int]:
    """digest -> size of the blobs an image manifest names."""
    doc = json.loads(manifest)
    return {d["digest"]: d["size"] for d in [doc["config"], *doc["layers"]]}


# ------------------------------------------------------------ PostgreSQL restart


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    postgres_url_or_skip()  # CI's sign that PostgreSQL is installed and wanted
    pg = PostgresServer()
    try:
        yield pg
    finally:
        pg.destroy()


def test_pushes_ride_out_postgresql_restarts(
    tmp_path: Path, hamn_conftest: Any, private_postgres: PostgresServer
) -> None:
    pg = private_postgres
    d = Deployment.create(hamn_conftest, tmp_path, pg.url, shared_storage(tmp_path))
    try:
        a, b = d.start("a"), d.start("b")
        pushers, tally, finish = run_pushers([a, b], 4, seconds=40)
        outages = []
        try:
            for mode in ("fast", "immediate"):
                time.sleep(1.5)
                started = time.monotonic()
                pg.stop(mode)
                time.sleep(2.0)
                pg.start()
                outages.append(round(time.monotonic() - started, 1))
            # Every client that retries gets on: two more images each after the restarts.
            after = [len(p.acknowledged) for p in pushers]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(
                len(p.acknowledged) < n + 2 for p, n in zip(pushers, after, strict=True)
            ):
                time.sleep(0.1)
        finally:
            finish()
        print(
            f"outages {outages}s; {dict(tally.statuses)}; broken {dict(tally.broken)}; "
            f"retries {tally.retries}; slowest {tally.slowest:.2f}s; "
            f"pushed {sum(len(p.acknowledged) for p in pushers)}"
        )
        assert 500 not in tally.statuses, (tally.statuses, d.logs())
        assert not d.internal_errors(), d.internal_errors()[:20]
        assert tally.statuses[503] > 0, "no request met the outage: the test proves nothing"
        assert not tally.without_retry_after, tally.without_retry_after
        assert not tally.broken, tally.broken
        assert tally.slowest < LONGEST_REQUEST, tally.slowest
        for p, n in zip(pushers, after, strict=True):
            assert len(p.acknowledged) >= n + 2, (p.index, n, len(p.acknowledged))
        with connect(b) as cb:
            images = check_pushers(cb, pushers)
        assert images >= sum(len(p.acknowledged) for p in pushers)
    finally:
        d.stop_all()


# --------------------------------------------------------------- storage faults


@dataclass
class Proxied:
    """A deployment whose Azure storage is reached through a fault proxy, and its server A."""

    deployment: Deployment
    proxy: FaultProxy
    a: Any


@pytest.fixture(scope="module")
def proxied_cluster(
    tmp_path_factory: pytest.TempPathFactory, hamn_conftest: Any
) -> Iterator[Proxied]:
    conn = azure_or_skip()
    base = tmp_path_factory.mktemp("proxied")
    proxy = FaultProxy(blob_endpoint(conn)).start()
    with fresh_database(postgres_url_or_skip()) as url:
        storage = azure_storage(azure_through(conn, proxy.port))
        d = Deployment.create(hamn_conftest, base, url, storage)
        try:
            yield Proxied(d, proxy, d.start("a"))
        finally:
            proxy.mode = "pass"
            d.stop_all()
            proxy.stop()


@pytest.fixture
def proxied(proxied_cluster: Proxied) -> Iterator[Proxied]:
    """The proxied deployment, its proxy passing traffic again after the test."""
    proxied_cluster.proxy.mode = "pass"
    proxied_cluster.proxy.faults = 0
    yield proxied_cluster
    proxied_cluster.proxy.mode = "pass"


#: The storage faults of the storage test: proxy mode and the status it answers.
STORAGE_FAULTS = (("error", 503), ("error", 500), ("reset", 0))


def test_storage_failures_answer_503_and_retries_succeed(proxied: Proxied) -> None:
    proxy = proxied.proxy
    with connect(proxied.a, timeout=LONGEST_STORAGE_REQUEST * 2) as c:
        kept = random_bytes(300_000)
        push_blob_recorded(Tally(), c, "store/app", kept)
        seen: dict[str, Tally] = {}
        for mode, status in STORAGE_FAULTS:
            tally = seen[f"{mode} {status}"] = Tally()
            proxy.mode, proxy.status, proxy.faults = mode, status, 0
            fresh = random_bytes(200_000)

            def pull(c: httpx.Client = c, tally: Tally = tally) -> None:
                r = tally.request(c, "GET", f"/v2/store/app/blobs/{digest_of(kept)}")
                assert r.status_code != 200 or r.content == kept  # a 200 is never wrong

            # A push and a pull at once, each on its own connection.
            with ThreadPoolExecutor(2) as pool, connect(proxied.a, timeout=c.timeout) as other:
                pushing = pool.submit(push_blob_recorded, tally, other, "store/app", fresh)
                for future in (pushing, pool.submit(pull)):
                    with contextlib.suppress(Retry):
                        future.result()
            # What needs only the database still answers.
            expect_status(c.get("/v2/"), 200)
            expect_status(c.head(f"/v2/store/app/blobs/{digest_of(kept)}"), 200)
            assert proxy.faults > 0, mode  # storage was asked, and failed
            # Storage is back: the same requests succeed, with the right bytes.
            proxy.mode = "pass"
            push_blob_recorded(tally, c, "store/app", fresh)
            assert get_blob(c, "store/app", digest_of(fresh)) == fresh
        for name, tally in seen.items():
            print(
                f"storage {name}: {dict(tally.statuses)}; broken {dict(tally.broken)}; "
                f"slowest {tally.slowest:.2f}s ({tally.slowest_request})"
            )
        for name, tally in seen.items():
            assert 500 not in tally.statuses and not tally.broken, (name, tally)
            assert tally.statuses[503] > 0 and not tally.without_retry_after, (name, tally)
            assert tally.slowest < LONGEST_STORAGE_REQUEST, (name, tally.slowest)
        assert get_blob(c, "store/app", digest_of(kept)) == kept
    assert not proxied.deployment.internal_errors(), proxied.deployment.internal_errors()[:20]


def read_blob_through(c: httpx.Client, path: str, data: bytes) -> str:
    """GET a blob and say how it ended: ``whole``, ``503`` (UNAVAILABLE with
    Retry-After), or the transport error that broke the connection part-way. A 200
    that ends short, or any wrong byte, fails."""
    received = b""
    try:
        with c.stream("GET", path) as r:
            if r.status_code != 200:
                r.read()
                expect_error(r, 503, "UNAVAILABLE")
                assert "Retry-After" in r.headers
                return "503"
            for chunk in r.iter_raw():
                received += chunk
    except httpx.TransportError as exc:
        # The connection broke: the client knows the body is incomplete.
        assert data.startswith(received)
        return type(exc).__name__
    assert received == data, f"a 200 with {len(received)} of {len(data)} bytes"
    return "whole"


#: Blob reads from object storage go in parts of this size (the Azure driver's block).
READ_PART = 4 * 1024 * 1024


def test_a_blob_read_cut_mid_stream_breaks_the_connection(proxied: Proxied) -> None:
    proxy = proxied.proxy
    data = random_bytes(READ_PART + 2 * 1024 * 1024)
    with connect(proxied.a) as c:
        push_blob_recorded(Tally(), c, "cut/app", data)
        # The first part goes through whole; storage breaks inside the second.
        proxy.mode, proxy.cut_after, proxy.passed = "cut", READ_PART + 512 * 1024, 0
        outcomes = Counter([read_blob_through(c, f"/v2/cut/app/blobs/{digest_of(data)}", data)])
        faults = proxy.faults
        proxy.mode = "pass"
        print(f"reads cut mid-stream: {dict(outcomes)}; storage responses cut {faults}")
        assert faults > 0 and "whole" not in outcomes, outcomes
        assert "503" not in outcomes  # the 200 had begun: only a broken connection tells
        assert get_blob(c, "cut/app", digest_of(data)) == data


def test_a_blob_read_failing_at_once_answers_503(proxied: Proxied) -> None:
    proxy = proxied.proxy
    data = random_bytes(1024 * 1024)
    with connect(proxied.a) as c:
        push_blob_recorded(Tally(), c, "cut/app", data)
        proxy.mode, proxy.cut_after, proxy.passed = "cut", 1000, 0
        outcome = read_blob_through(c, f"/v2/cut/app/blobs/{digest_of(data)}", data)
        proxy.mode = "pass"
        assert outcome == "503", outcome


def test_slow_storage_slows_pushes_but_not_the_rest(proxied: Proxied) -> None:
    proxy = proxied.proxy
    proxy.mode, proxy.delay = "delay", 1.0
    done: list[float] = []

    def push() -> None:
        started = time.monotonic()
        with connect(proxied.a) as c:
            config, layer = encode({"slow": uuid.uuid4().hex}), random_bytes(100_000)
            for data in (config, layer):
                push_blob_recorded(Tally(), c, "slow/app", data)
            body = encode(image_manifest(config, [layer]))
            expect_status(put_manifest(c, "slow/app", "v1", body), 201)
        done.append(time.monotonic() - started)

    pusher = threading.Thread(target=push)
    pusher.start()
    quick: list[float] = []
    with connect(proxied.a) as c:
        while pusher.is_alive() and len(quick) < 400:
            started = time.monotonic()
            expect_status(c.get("/v2/"), 200)
            assert c.get("/healthz").status_code == 200
            quick.append(time.monotonic() - started)
            time.sleep(0.05)
    pusher.join(120)
    proxy.mode = "pass"
    print(
        f"slow storage: push {done}, {len(quick)} pairs of quick requests, "
        f"slowest {max(quick):.3f}s"
    )
    assert done and done[0] > 2.0, done  # the push met the delays
    assert quick and max(quick) < 0.5, max(quick)


# ------------------------------------------------------------- a server killed


def test_a_server_killed_mid_push_leaves_nothing_half_visible(proxied: Proxied) -> None:
    d, a = proxied.deployment, proxied.a
    registry = f"kill{uuid.uuid4().hex[:10]}"
    with connect(a) as ca:
        expect_status(ca.post("/api/registries", json={"name": registry, "sku": "Premium"}), 201)
    k = d.start("k")
    big = random_bytes(8 * 1024 * 1024)
    digest = digest_of(big)
    repo = f"{registry}/big"
    # A large blob streaming into K, and manifests pushed through K, when K dies.
    with connect(k) as ck:
        session = start_upload(ck, repo)
    sent = [0]

    def upload() -> None:
        with contextlib.suppress(httpx.TransportError), connect(k) as c:
            c.patch(session, content=slow_body(big, 256 * 1024, 0.2, sent))

    uploader = threading.Thread(target=upload)
    uploader.start()
    pushers, tally, finish = run_pushers([k], 3, seconds=30, registry=registry)
    # K dies once the clients have pushed a few images and the blob is part-way in.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        sent[0] < 2 * 1024 * 1024 or sum(len(p.acknowledged) for p in pushers) < 6
    ):
        time.sleep(0.02)
    kill9(k.process)
    finish()
    uploader.join(30)
    assert 0 < sent[0] < len(big), sent
    with connect(a) as c:
        # No partial blob is visible; every tag serves a whole image.
        expect_error(c.head(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        images = check_pushers(c, pushers)
        # The interrupted session: A knows where it stands (nothing was acknowledged),
        # and the dead writer's lease keeps it busy until it expires: a retryable answer.
        r = expect_status(c.get(session), 204)
        assert r.headers["Range"] == "0-0", r.headers
        r = c.patch(session, content=big[:1000], headers={"Content-Range": "0-999"})
        if r.status_code != 202:
            expect_error(r, 409, "BLOB_UPLOAD_BUSY")
            assert "Retry-After" in r.headers
        # The push, started again, succeeds through A.
        loc = start_upload(c, repo)
        expect_status(c.put(with_query(loc, digest=digest), content=big), 201)
        assert get_blob(c, repo, digest) == big
    print(
        f"killed mid-push: {images} images whole; {dict(tally.statuses)}; "
        f"broken {dict(tally.broken)}; blob bytes sent {sent[0]}"
    )
    assert images >= 6, images
    # Storage and database agree: fsck finds nothing wrong (the session is recent).
    fsck = d.hamn("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
