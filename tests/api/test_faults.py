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
#: The longest any one request may take while a service is away (seconds).
LONGEST_REQUEST = 6.0

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
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def see(self, r: httpx.Response, seconds: float) -> httpx.Response:
        """Record ``r``; raise :class:`Retry` for a retryable answer."""
        with self.lock:
            self.statuses[r.status_code] += 1
            self.slowest = max(self.slowest, seconds)
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

    def retrying(self, step: Callable[[], Any], deadline: float) -> Any:
        """Do ``step`` until it gets through without a :class:`Retry`, or ``deadline``."""
        while True:
            try:
                return step()
            except Retry:
                with self.lock:
                    self.retries += 1
                if time.monotonic() > deadline:
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
        finally:
            for c in clients:
                c.close()

    def _push(self, blobs_via: httpx.Client, manifest_via: httpx.Client, n: int) -> None:
        repo = f"fault/c{self.index}"
        config = encode({"client": self.index, "n": n, "nonce": uuid.uuid4().hex})
        layer = random_bytes(20_000 + n)
        body = encode(image_manifest(config, [layer]))
        tag = f"v{n}"
        self.attempted[tag] = body
        for data in (config, layer):
            self.tally.retrying(
                lambda d=data: push_blob_recorded(self.tally, blobs_via, repo, d),  # type: ignore[misc]
                self.deadline,
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

        self.tally.retrying(put, self.deadline)
        self.acknowledged[tag] = body


def run_pushers(
    servers: list[Any], count: int, seconds: float
) -> tuple[list[Pusher], Tally, Callable[[], None]]:
    """Start ``count`` pusher threads for at most ``seconds``; returns them, their tally
    and a function that stops them and waits for them."""
    tally = Tally()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    pushers = [Pusher(servers, tally, i, deadline, stop) for i in range(count)]
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
        repo = f"fault/c{p.index}"
        r = c.get(f"/v2/{repo}/tags/list")
        tags = r.json()["tags"] if r.status_code == 200 else []
        assert set(p.acknowledged) <= set(tags), (repo, sorted(p.acknowledged), tags)
        for tag in tags:
            # Nothing half-visible: a tag there serves what its client sent, blobs and all.
            check_image(c, repo, tag, p.attempted[tag])
            images += 1
            found.update(blob_sizes(p.attempted[tag]))
    assert usage(c) == sum(found.values())
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
            time.sleep(2.0)
        finally:
            finish()
        print(
            f"outages {outages}s; {dict(tally.statuses)}; broken {dict(tally.broken)}; "
            f"retries {tally.retries}; slowest {tally.slowest:.2f}s; "
            f"pushed {sum(len(p.acknowledged) for p in pushers)}"
        )
        assert 500 not in tally.statuses, (tally.statuses, d.logs())
        assert tally.statuses[503] > 0, "no request met the outage: the test proves nothing"
        assert not tally.without_retry_after, tally.without_retry_after
        assert not tally.broken, tally.broken
        assert tally.slowest < LONGEST_REQUEST, tally.slowest
        for p in pushers:
            assert len(p.acknowledged) >= 3, (p.index, len(p.acknowledged))
        with connect(b) as cb:
            images = check_pushers(cb, pushers)
        assert images >= sum(len(p.acknowledged) for p in pushers)
    finally:
        d.stop_all()


# --------------------------------------------------------------- storage faults


@pytest.fixture
def proxied(tmp_path: Path, hamn_conftest: Any) -> Iterator[tuple[Deployment, FaultProxy]]:
    """A deployment whose Azure storage is reached through a :class:`FaultProxy`."""
    conn = azure_or_skip()
    proxy = FaultProxy(blob_endpoint(conn)).start()
    with fresh_database(postgres_url_or_skip()) as url:
        storage = azure_storage(azure_through(conn, proxy.port))
        d = Deployment.create(hamn_conftest, tmp_path, url, storage)
        try:
            yield d, proxy
        finally:
            proxy.mode = "pass"
            d.stop_all()
            proxy.stop()


@pytest.mark.parametrize(
    ("mode", "status"), [("error", 503), ("error", 500), ("reset", 0)], ids=["503", "500", "reset"]
)
def test_storage_failures_answer_503_and_retries_succeed(
    proxied: tuple[Deployment, FaultProxy], mode: str, status: int
) -> None:
    d, proxy = proxied
    a = d.start("a")
    tally = Tally()
    with connect(a, timeout=LONGEST_REQUEST * 3) as c:
        kept = random_bytes(300_000)
        push_blob_recorded(tally, c, "store/app", kept)
        proxy.mode, proxy.status = mode, status
        fresh = random_bytes(200_000)
        for _ in range(3):
            with contextlib.suppress(Retry):
                push_blob_recorded(tally, c, "store/app", fresh)
            with contextlib.suppress(Retry):
                r = tally.request(c, "GET", f"/v2/store/app/blobs/{digest_of(kept)}")
                assert r.content == kept  # a 200 is never wrong
            # What needs only the database still answers.
            expect_status(c.get("/v2/"), 200)
            expect_status(c.head(f"/v2/store/app/blobs/{digest_of(kept)}"), 200)
        faults = proxy.faults
        proxy.mode = "pass"
        print(
            f"{mode} {status}: {dict(tally.statuses)}; broken {dict(tally.broken)}; "
            f"storage requests failed {faults}; slowest {tally.slowest:.2f}s"
        )
        assert faults > 0
        assert 500 not in tally.statuses, (dict(tally.statuses), d.logs())
        assert tally.statuses[503] > 0 and not tally.without_retry_after, tally
        assert tally.slowest < LONGEST_REQUEST, tally.slowest
        # Storage is back: the same requests succeed, with the right bytes.
        push_blob_recorded(tally, c, "store/app", fresh)
        assert get_blob(c, "store/app", digest_of(fresh)) == fresh
        assert get_blob(c, "store/app", digest_of(kept)) == kept


def test_a_blob_read_cut_mid_stream_never_ends_as_a_short_200(
    proxied: tuple[Deployment, FaultProxy],
) -> None:
    d, proxy = proxied
    a = d.start("a")
    data = random_bytes(6 * 1024 * 1024)
    digest = digest_of(data)
    with connect(a) as c:
        push_blob_recorded(Tally(), c, "cut/app", data)
        proxy.mode, proxy.cut_after = "cut", 512 * 1024
        outcomes: Counter[str] = Counter()
        for _ in range(3):
            received = b""
            try:
                with c.stream("GET", f"/v2/cut/app/blobs/{digest}") as r:
                    if r.status_code != 200:
                        expect_error(r.read() and r, 503, "UNAVAILABLE")
                        assert "Retry-After" in r.headers
                        outcomes["503"] += 1
                        continue
                    for chunk in r.iter_raw():
                        received += chunk
            except httpx.TransportError as exc:
                # The connection broke: the client knows the body is incomplete.
                assert data.startswith(received)
                outcomes[type(exc).__name__] += 1
                continue
            assert received == data, f"a 200 with {len(received)} of {len(data)} bytes"
            outcomes["whole"] += 1
        proxy.mode = "pass"
        print(f"cut reads: {dict(outcomes)}")
        assert proxy.faults > 0
        assert get_blob(c, "cut/app", digest) == data


def test_slow_storage_slows_pushes_but_not_the_rest(proxied: tuple[Deployment, FaultProxy]) -> None:
    d, proxy = proxied
    a = d.start("a")
    proxy.mode, proxy.delay = "delay", 1.5
    done: list[float] = []

    def push() -> None:
        started = time.monotonic()
        with connect(a) as c:
            config, layer = encode({"slow": uuid.uuid4().hex}), random_bytes(100_000)
            for data in (config, layer):
                push_blob_recorded(Tally(), c, "slow/app", data)
            expect_status(
                put_manifest(c, "slow/app", "v1", encode(image_manifest(config, [layer]))), 201
            )
        done.append(time.monotonic() - started)

    pusher = threading.Thread(target=push)
    pusher.start()
    quick: list[float] = []
    with connect(a) as c:
        while pusher.is_alive() and len(quick) < 200:
            for path in ("/v2/", "/healthz"):
                started = time.monotonic()
                expect_status(c.get(path), 200) if path == "/v2/" else c.get(
                    path
                ).raise_for_status()
                quick.append(time.monotonic() - started)
            time.sleep(0.05)
    pusher.join(120)
    proxy.mode = "pass"
    print(f"slow storage: push {done}, {len(quick)} quick requests, slowest {max(quick):.3f}s")
    assert done and done[0] > 1.5, done  # the push met the delay
    assert quick and max(quick) < 0.5, max(quick)


# ------------------------------------------------------------- a server killed


def test_a_server_killed_mid_push_leaves_nothing_half_visible(
    tmp_path: Path, hamn_conftest: Any
) -> None:
    conn = azure_or_skip()
    with fresh_database(postgres_url_or_skip()) as url:
        d = Deployment.create(hamn_conftest, tmp_path, url, azure_storage(conn))
        try:
            _killed_mid_push(d)
        finally:
            d.stop_all()


def _killed_mid_push(d: Deployment) -> None:
    a, b = d.start("a"), d.start("b")
    big = random_bytes(8 * 1024 * 1024)
    digest = digest_of(big)
    # A large blob streaming into A, and manifests pushed through A, when A dies.
    with connect(a) as ca:
        session = start_upload(ca, "kill/app")
    sent = [0]

    def upload() -> None:
        with contextlib.suppress(httpx.TransportError), connect(a) as c:
            c.patch(session, content=slow_body(big, 256 * 1024, 0.05, sent))

    uploader = threading.Thread(target=upload)
    uploader.start()
    pushers, tally, finish = run_pushers([a], 3, seconds=30)
    deadline = time.monotonic() + 20
    while sent[0] < 2 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.02)
    kill9(a.process)
    finish()
    uploader.join(30)
    assert 0 < sent[0] < len(big), sent
    with connect(b) as cb:
        # No partial blob is visible; every tag serves a whole image.
        expect_error(cb.head(f"/v2/kill/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        images = check_pushers(cb, pushers)
        # The interrupted session: B knows where it stands (nothing was acknowledged),
        # and its writer's lease keeps it busy until it expires: a retryable answer.
        r = expect_status(cb.get(session), 204)
        assert r.headers["Range"] == "0-0", r.headers
        r = cb.patch(session, content=big[:1000], headers={"Content-Range": "0-999"})
        assert r.status_code in (202, 429), r.text
        if r.status_code == 429:
            assert "Retry-After" in r.headers
        # The push, started again, succeeds through B.
        loc = start_upload(cb, "kill/app")
        expect_status(cb.put(with_query(loc, digest=digest), content=big), 201)
        assert get_blob(cb, "kill/app", digest) == big
    print(f"killed mid-push: {images} images whole; {dict(tally.statuses)}; sent {sent[0]}")
    # Storage and database agree: fsck finds nothing wrong (the session is recent).
    fsck = d.hamn("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # A restarted on its data directory serves what B stored.
    d.servers.remove(a)
    a2 = d.start("a")
    with connect(a2) as c:
        assert get_blob(c, "kill/app", digest) == big
