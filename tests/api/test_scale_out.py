"""Several ``hamn serve`` processes on one PostgreSQL database and one object storage
behave as one registry (issue 5 point 2).

Each test makes a database of its own on the PostgreSQL server of
``HAMN_TEST_POSTGRES_URL`` and a container of its own on the Azurite of
``HAMN_TEST_AZURE_CONNECTION_STRING``, and starts two servers A and B on them
with one secret key, each with a data directory of its own (nothing on local
disk is shared). What one server does, the other sees on its very next request:
there is no cache between them and the database. These tests choose their own
backends, so one run of the suite covers them whatever it was asked to test.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    OCI_MANIFEST,
    connect,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    image_manifest,
    location,
    push_blob,
    push_blob_chunked,
    push_image,
    put_manifest,
    random_bytes,
    start_upload,
    with_query,
)
from cluster_support import (
    ONCE_IN_THE_MATRIX,
    Deployment,
    check_image,
    fresh_database,
    postgres_url_or_skip,
    shared_storage,
    usage,
)

#: Lines a server writes when a request failed inside it.
_SERVER_FAULTS = ("request failed", "Traceback")

pytestmark = ONCE_IN_THE_MATRIX


#: The Standard SKU's quota on the cluster (the quota test's registry is Standard;
#: the others are Premium, and "local" Basic, with their default quotas).
QUOTA = 400_000


@dataclass(frozen=True)
class Cluster:
    """Servers A and B on one deployment."""

    deployment: Deployment
    a: Any
    b: Any


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, hamn_conftest: Any) -> Iterator[Cluster]:
    """Two servers on a fresh database and container, shared by this module's tests
    (each works in a registry of its own). At the end they must have logged no
    internal error."""
    base = tmp_path_factory.mktemp("cluster")
    with fresh_database(postgres_url_or_skip()) as url:
        quotas = json.dumps({"Standard": QUOTA})
        d = Deployment.create(hamn_conftest, base, url, shared_storage(base), storage_quotas=quotas)
        try:
            yield Cluster(d, d.start("a"), d.start("b"))
        finally:
            d.stop_all()
        faults = [ln for ln in d.logs().splitlines() if any(f in ln for f in _SERVER_FAULTS)]
        assert not faults, d.logs()


@pytest.fixture
def two(cluster: Cluster) -> tuple[Any, Any]:
    """Servers A and B."""
    return cluster.a, cluster.b


@pytest.fixture
def registry(cluster: Cluster) -> str:
    """A new Premium registry for the test (its usage is the test's alone)."""
    return new_registry(cluster.a, "Premium")


def new_registry(reg: Any, sku: str) -> str:
    """Create a registry of ``sku`` through ``reg``; its name."""
    name = f"scale{uuid.uuid4().hex[:10]}"
    with connect(reg) as c:
        expect_status(c.post("/api/registries", json={"name": name, "sku": sku}), 201)
    return name


def test_a_push_through_one_server_is_pulled_through_the_other(two: tuple[Any, Any]) -> None:
    a, b = two
    with connect(a) as ca, connect(b) as cb:
        image = push_image(ca, "app/web", "v1", layers=2, layer_size=300_000)
        # By tag and by digest, bytes for bytes, and the listings agree.
        check_image(cb, "app/web", "v1", image.manifest)
        check_image(cb, "app/web", image.digest, image.manifest)
        assert expect_status(cb.get("/v2/app/web/tags/list"), 200).json()["tags"] == ["v1"]
        assert "app/web" in expect_status(cb.get("/v2/_catalog"), 200).json()["repositories"]
        r = expect_status(cb.head(f"/v2/app/web/blobs/{digest_of(image.layers[0])}"), 200)
        assert r.headers["Content-Length"] == "300000"
        # A range read through B of a blob A stored.
        blob = digest_of(image.layers[1])
        r = expect_status(
            cb.get(f"/v2/app/web/blobs/{blob}", headers={"Range": "bytes=10-99"}), 206
        )
        assert r.content == image.layers[1][10:100]
        assert r.headers["Content-Range"] == "bytes 10-99/300000"


def test_a_delete_through_one_server_is_seen_by_the_other_at_once(
    two: tuple[Any, Any], registry: str
) -> None:
    a, b = two
    with connect(a) as ca, connect(b) as cb:
        for round_ in range(5):
            repo = f"{registry}/r{round_}"
            image = push_image(ca, repo, "v1")
            layer = digest_of(image.layers[0])
            # B reads everything first (whatever it might cache, it has now).
            check_image(cb, repo, "v1", image.manifest)
            expect_status(cb.get(f"/v2/{repo}/blobs/{layer}"), 200)
            expect_status(ca.delete(f"/v2/{repo}/manifests/v1"), 202)  # the tag only
            expect_error(cb.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
            expect_status(cb.get(f"/v2/{repo}/manifests/{image.digest}"), 200)
            expect_status(ca.delete(f"/v2/{repo}/manifests/{image.digest}"), 202)
            expect_error(cb.get(f"/v2/{repo}/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
            expect_status(ca.delete(f"/v2/{repo}/blobs/{layer}"), 202)
            expect_error(cb.get(f"/v2/{repo}/blobs/{layer}"), 404, "BLOB_UNKNOWN")
            expect_error(cb.head(f"/v2/{repo}/blobs/{layer}"), 404, "BLOB_UNKNOWN")
        assert usage(cb, registry) == 0


#: The concurrent test: clients, images they all push, rounds each.
CLIENTS = 8
IMAGES = 3
ROUNDS = 2


def test_many_clients_pushing_the_same_content_through_both_servers_end_consistent(
    two: tuple[Any, Any], registry: str
) -> None:
    a, b = two
    repo = f"{registry}/same"
    shared = random_bytes(200_000)
    configs = [encode({"image": i, "nonce": uuid.uuid4().hex}) for i in range(IMAGES)]
    layers = [[shared, random_bytes(50_000 + i), random_bytes(3_000)] for i in range(IMAGES)]
    manifests = [encode(image_manifest(configs[i], layers[i])) for i in range(IMAGES)]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(index)
        servers = [connect(a), connect(b)]
        try:
            for _ in range(ROUNDS):
                for i in rng.sample(range(IMAGES), IMAGES):
                    blobs_via, manifest_via = rng.sample(servers, 2)
                    for data in (configs[i], *layers[i]):
                        if rng.random() < 0.3:
                            push_blob_chunked(blobs_via, repo, data, 64 * 1024)
                        else:
                            push_blob(blobs_via, repo, data)
                    r = put_manifest(manifest_via, repo, f"t{i}", manifests[i])
                    with lock:
                        statuses[r.status_code] += 1
                    expect_status(r, 201)
        finally:
            for c in servers:
                c.close()

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client, n) for n in range(CLIENTS)]:
            future.result(timeout=120)
    elapsed = time.monotonic() - started
    assert statuses == Counter({201: CLIENTS * IMAGES * ROUNDS}), statuses
    with connect(a) as ca, connect(b) as cb:
        for c in (ca, cb):
            tags = expect_status(c.get(f"/v2/{repo}/tags/list"), 200).json()["tags"]
            assert sorted(tags) == [f"t{i}" for i in range(IMAGES)]
            for i in range(IMAGES):
                check_image(c, repo, f"t{i}", manifests[i])
        distinct = {digest_of(d): len(d) for d in (*configs, *[x for ls in layers for x in ls])}
        assert usage(ca, registry) == usage(cb, registry) == sum(distinct.values())
    print(f"{CLIENTS * IMAGES * ROUNDS} images pushed in {elapsed:.1f}s")


def test_a_chunked_upload_continues_on_the_other_server(two: tuple[Any, Any]) -> None:
    a, b = two
    data = random_bytes(3 * 1024 * 1024 + 12345)
    cut1, cut2 = 1024 * 1024 + 7, 2 * 1024 * 1024 + 99
    with connect(a) as ca, connect(b) as cb:
        loc = start_upload(ca, "chunks/app")
        for c, start, end in ((ca, 0, cut1), (cb, cut1, cut2), (ca, cut2, len(data) - 100)):
            r = c.patch(
                loc,
                content=data[start:end],
                headers={
                    "Content-Range": f"{start}-{end - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            expect_status(r, 202)
            assert r.headers["Range"] == f"0-{end - 1}"
            loc = location(r)
        # The other server knows where the upload stands, and refuses a chunk that does not follow.
        r = expect_status(cb.get(loc), 204)
        assert r.headers["Range"] == f"0-{len(data) - 101}"
        bad = cb.patch(
            loc,
            content=b"x" * 10,
            headers={"Content-Range": "5-14", "Content-Type": "application/octet-stream"},
        )
        expect_error(bad, 416, "BLOB_UPLOAD_INVALID_RANGE")
        digest = digest_of(data)
        r = ca.put(
            with_query(loc, digest=digest),
            content=data[-100:],
            headers={"Content-Type": "application/octet-stream"},
        )
        expect_status(r, 201)
        assert get_blob(cb, "chunks/app", digest) == data
        # A wrong digest through the other server: refused, nothing kept.
        loc = start_upload(cb, "chunks/app")
        r = expect_status(
            ca.patch(loc, content=b"abc", headers={"Content-Type": "application/octet-stream"}), 202
        )
        r = cb.put(with_query(location(r), digest=digest_of(b"abd")))
        expect_error(r, 400, "DIGEST_INVALID")
        expect_error(ca.head(f"/v2/chunks/app/blobs/{digest_of(b'abd')}"), 404, "BLOB_UNKNOWN")


def test_a_quota_holds_across_servers(two: tuple[Any, Any]) -> None:
    a, b = two
    registry = new_registry(a, "Standard")
    with connect(a) as ca, connect(b) as cb:
        # Eight clients through both servers race for room for about five images.
        accepted: list[bytes] = []
        refused: Counter[str] = Counter()
        lock = threading.Lock()

        def push(index: int) -> None:
            with connect(a if index % 2 else b) as c, connect(b if index % 2 else a) as other:
                config = encode({"n": index, "nonce": uuid.uuid4().hex})
                layer = random_bytes(75_000)
                for data in (config, layer):
                    r = c.put(
                        with_query(start_upload(c, f"{registry}/app"), digest=digest_of(data)),
                        content=data,
                    )
                    if r.status_code == 403:
                        expect_error(r, 403, "QUOTA_EXCEEDED")
                        with lock:
                            refused["blob"] += 1
                        return
                    expect_status(r, 201)
                body = encode(image_manifest(config, [layer]))
                r = put_manifest(other, f"{registry}/app", f"v{index}", body)
                with lock:
                    if r.status_code == 201:
                        accepted.append(body)
                    else:
                        expect_error(r, 403, "QUOTA_EXCEEDED")
                        refused["manifest"] += 1

        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(push, n) for n in range(8)]:
                future.result(timeout=60)
        used = usage(ca, registry)
        assert used == usage(cb, registry) <= QUOTA
        assert used == sum(
            sum(d["size"] for d in [json.loads(m)["config"], *json.loads(m)["layers"]])
            for m in accepted
        )
        assert 4 <= len(accepted) <= 5 and sum(refused.values()) == 8 - len(accepted), (
            accepted,
            refused,
        )
        # Both servers refuse the next image alike.
        for c in (ca, cb):
            big = random_bytes(QUOTA - used + 1)
            r = c.put(
                with_query(start_upload(c, f"{registry}/app"), digest=digest_of(big)), content=big
            )
            expect_error(r, 403, "QUOTA_EXCEEDED")


def test_garbage_made_through_one_server_is_collected_once_while_the_other_serves(
    cluster: Cluster, registry: str
) -> None:
    a, b = cluster.a, cluster.b
    keep, drop = f"{registry}/keep", f"{registry}/drop"
    with connect(a) as ca, connect(b) as cb:
        kept = push_image(ca, keep, "v1", layers=2, layer_size=100_000)
        doomed = push_image(ca, drop, "v1", layers=2, layer_size=100_000)
        strays = [push_blob(ca, drop, random_bytes(20_000)) for _ in range(3)]
        expect_status(ca.delete(f"/v2/{drop}/manifests/{doomed.digest}"), 202)
        garbage = {digest_of(d) for d in (doomed.config, *doomed.layers)} | set(strays)

        # B keeps serving the kept image while two collections run at once.
        stop = threading.Event()
        pulls: Counter[int] = Counter()

        def pull() -> None:
            with connect(b) as c:
                while not stop.is_set() and sum(pulls.values()) < 2000:
                    r = c.get(f"/v2/{keep}/blobs/{digest_of(kept.layers[0])}")
                    pulls[r.status_code] += 1

        puller = threading.Thread(target=pull)
        puller.start()
        try:
            with ThreadPoolExecutor(2) as pool:
                gc = ("gc", "--grace", "0")
                runs = list(pool.map(lambda _: cluster.deployment.hamn(*gc), range(2)))
        finally:
            stop.set()
            puller.join(30)
        # One collects; one that finds it collecting says so and leaves (exit 3), or
        # runs after it and finds nothing left.
        for run in runs:
            assert run.returncode == 0 or (
                run.returncode == 3 and "another garbage collection is running" in run.stderr
            ), run.stderr + run.stdout
        reports = [json.loads(run.stdout) for run in runs if run.returncode == 0]
        assert reports, [run.stderr for run in runs]
        removed = Counter(digest for report in reports for digest in report["blobs"])
        # Every garbage blob went, and once (earlier tests' garbage goes as well);
        # nothing the kept image needs went.
        assert garbage <= set(removed) and set(removed.values()) == {1}, reports
        assert not set(removed) & {digest_of(x) for x in (kept.config, *kept.layers)}
        assert set(pulls) == {200}, pulls
        for c in (ca, cb):
            check_image(c, keep, "v1", kept.manifest)
            for digest in garbage:
                expect_error(c.head(f"/v2/{drop}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert usage(cb, registry) == len(kept.config) + sum(len(x) for x in kept.layers)
        # Storage and database agree: fsck of the deployment finds nothing wrong.
        fsck = cluster.deployment.hamn("fsck", "--grace", "0")
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr


#: Behind a load balancer clients know one name; every server sees it as the Host.
PUBLIC_HOST = "registry.test"


def _token(reg: Any, scope: str) -> str:
    """A token ``reg`` issues to its owner for ``scope`` (service: the public name)."""
    with httpx.Client(base_url=reg.url, timeout=30) as c:
        r = c.get("/oauth2/token", headers={"Host": PUBLIC_HOST}, auth=reg.auth,
                  params={"service": PUBLIC_HOST, "scope": scope})  # fmt: skip
    return str(expect_status(r, 200).json()["token"])


def _pull_with(reg: Any, token: str | None) -> httpx.Response:
    headers = {"Host": PUBLIC_HOST, "Accept": OCI_MANIFEST}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=reg.url, timeout=30) as c:
        return c.get("/v2/tok/app/manifests/v1", headers=headers)


def test_a_token_issued_by_one_server_is_accepted_by_the_other(two: tuple[Any, Any]) -> None:
    a, b = two
    with connect(a) as ca:
        image = push_image(ca, "tok/app", "v1")
    for issuer, other in ((a, b), (b, a)):
        token = _token(issuer, "repository:tok/app:pull,push")
        assert expect_status(_pull_with(other, token), 200).content == image.manifest
        assert _pull_with(other, None).status_code == 401
        # A token for another repository does not open this one there either.
        assert _pull_with(other, _token(issuer, "repository:other:pull")).status_code in (401, 403)


def test_a_server_with_another_secret_key_refuses_to_start(cluster: Cluster) -> None:
    d = cluster.deployment
    with pytest.raises(RuntimeError) as failed:
        d.start("c", HAMN_SECRET_KEY=base64.b64encode(b"k" * 32).decode())
    d.servers.pop()
    assert "HAMN_SECRET_KEY" in str(failed.value), str(failed.value)[-3000:]
    with connect(cluster.a) as ca:  # the others serve on
        expect_status(ca.get("/v2/"), 200)


def test_servers_started_at_once_on_an_empty_database_agree(
    tmp_path: Path, hamn_conftest: Any
) -> None:
    with fresh_database(postgres_url_or_skip()) as url:
        d = Deployment.create(hamn_conftest, tmp_path, url, shared_storage(tmp_path))
        try:
            with ThreadPoolExecutor(2) as pool:
                servers = list(pool.map(lambda n: d.start(f"s{n}"), range(2)))
            image: Any = None
            for index, reg in enumerate(servers):
                with connect(reg) as c:
                    expect_status(c.get("/v2/"), 200)  # one owner, same password, on each
                    if image is None:
                        image = push_image(c, "start/app", "v1")
                    check_image(c, "start/app", "v1", image.manifest)
                    registries = expect_status(c.get("/api/registries"), 200).json()["value"]
                    assert [r["name"] for r in registries] == ["local"], (index, registries)
        finally:
            d.stop_all()
