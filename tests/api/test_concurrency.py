"""Concurrent pushes of the same blob and of the same tag from many clients end
in one consistent state, with no 500s (the shared server's log is checked too)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
from api_support import (
    OCI_MANIFEST,
    all_tags,
    check_repository_consistent,
    connect,
    digest_of,
    encode,
    expect_status,
    get_blob,
    image_manifest,
    location,
    push_blob,
    push_blob_chunked,
    push_blob_single_post,
    push_image,
    random_bytes,
    start_upload,
    unique_repo,
    with_query,
)

THREADS = 16
MIB = 1024 * 1024

T = TypeVar("T")


def in_parallel(reg: Any, n: int, fn: Callable[[httpx.Client, int], T]) -> list[T]:
    """Run ``fn(client, i)`` for i in range(n) at once, each on its own connection."""

    def one(i: int) -> T:
        with connect(reg, timeout=60) as client:
            return fn(client, i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def test_same_blob_monolithic(live_registry: Any, client: httpx.Client, repo: str) -> None:
    data = random_bytes(2 * MIB)
    digests = in_parallel(live_registry, THREADS, lambda c, _: push_blob(c, repo, data))
    assert set(digests) == {digest_of(data)}
    assert get_blob(client, repo, digest_of(data)) == data


def test_same_blob_chunked(live_registry: Any, client: httpx.Client, repo: str) -> None:
    data = random_bytes(3 * MIB + 17)
    digests = in_parallel(
        live_registry,
        THREADS,
        lambda c, i: push_blob_chunked(c, repo, data, 256 * 1024 + i * 1000),
    )
    assert set(digests) == {digest_of(data)}
    assert get_blob(client, repo, digest_of(data)) == data


def test_same_blob_every_way_into_many_repositories(
    live_registry: Any, client: httpx.Client
) -> None:
    data = random_bytes(MIB)
    repos = [unique_repo() for _ in range(THREADS)]

    def push(c: httpx.Client, i: int) -> str:
        way = (
            push_blob,
            push_blob_single_post,
            lambda c, r, d: push_blob_chunked(c, r, d, 100_000),
        )[i % 3]
        return way(c, repos[i], data)

    assert set(in_parallel(live_registry, THREADS, push)) == {digest_of(data)}
    for name in repos:
        assert get_blob(client, name, digest_of(data)) == data


def test_same_blob_push_and_mount_race(live_registry: Any, client: httpx.Client) -> None:
    data = random_bytes(500_000)
    source = unique_repo()
    push_blob(client, source, data)
    target = unique_repo()

    def act(c: httpx.Client, i: int) -> int:
        if i % 2:
            r = c.post(
                f"/v2/{target}/blobs/uploads/", params={"mount": digest_of(data), "from": source}
            )
            return expect_status(r, 201).status_code
        push_blob(c, target, data)
        return 201

    assert set(in_parallel(live_registry, THREADS, act)) == {201}
    assert get_blob(client, target, digest_of(data)) == data


def test_same_tag_from_many_clients(live_registry: Any, client: httpx.Client, repo: str) -> None:
    layer = random_bytes(10_000)
    push_blob(client, repo, layer)
    configs = [
        encode({"architecture": "amd64", "os": "linux", "client": i}) for i in range(THREADS)
    ]
    bodies = [encode(image_manifest(config, [layer])) for config in configs]

    def push(c: httpx.Client, i: int) -> str:
        push_blob(c, repo, configs[i])
        for _ in range(3):
            r = c.put(
                f"/v2/{repo}/manifests/latest",
                content=bodies[i],
                headers={"Content-Type": OCI_MANIFEST},
            )
            expect_status(r, 201)
        return str(r.headers["Docker-Content-Digest"])

    digests = in_parallel(live_registry, THREADS, push)
    assert digests == [digest_of(b) for b in bodies]
    assert all_tags(client, repo) == ["latest"]
    r = expect_status(client.get(f"/v2/{repo}/manifests/latest"), 200)
    assert r.content in bodies
    assert r.headers["Docker-Content-Digest"] == digest_of(r.content)
    head = expect_status(client.head(f"/v2/{repo}/manifests/latest"), 200)
    assert head.headers["Docker-Content-Digest"] == digest_of(r.content)
    for body in bodies:
        got = expect_status(client.get(f"/v2/{repo}/manifests/{digest_of(body)}"), 200)
        assert got.content == body
    check_repository_consistent(client, repo)


def test_same_manifest_many_tags_and_deletes(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    img = push_image(client, repo, "base")

    def act(c: httpx.Client, i: int) -> None:
        tag = f"t{i}"
        for _ in range(3):
            expect_status(
                c.put(
                    f"/v2/{repo}/manifests/{tag}",
                    content=img.manifest,
                    headers={"Content-Type": OCI_MANIFEST},
                ),
                201,
            )
            if i % 2:
                expect_status(c.delete(f"/v2/{repo}/manifests/{tag}"), 202)

    in_parallel(live_registry, THREADS, act)
    assert sorted(all_tags(client, repo)) == sorted(
        ["base", *(f"t{i}" for i in range(THREADS) if i % 2 == 0)]
    )
    check_repository_consistent(client, repo)


def test_concurrent_chunks_on_one_upload(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    """Many clients send the same first chunk to one session: exactly one is taken."""
    data = random_bytes(2 * MIB)
    loc = start_upload(client, repo)

    def send(c: httpx.Client, _: int) -> int:
        r = c.patch(loc, content=data[:MIB], headers={"Content-Range": f"0-{MIB - 1}"})
        assert r.status_code in (202, 409, 416), r.text
        if r.status_code != 202:
            code = r.json()["errors"][0]["code"]
            assert code in ("BLOB_UPLOAD_BUSY", "BLOB_UPLOAD_INVALID_RANGE"), r.text
        return r.status_code

    statuses = in_parallel(live_registry, THREADS, send)
    assert statuses.count(202) == 1, statuses
    r = expect_status(client.get(loc), 204)
    assert r.headers["Range"] == f"0-{MIB - 1}"
    r = client.patch(loc, content=data[MIB:], headers={"Content-Range": f"{MIB}-{2 * MIB - 1}"})
    expect_status(
        client.put(with_query(location(expect_status(r, 202)), digest=digest_of(data))), 201
    )
    assert get_blob(client, repo, digest_of(data)) == data


def test_concurrent_completions_of_one_upload(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    """Many clients complete the same session at once: one wins, the rest are refused."""
    data = random_bytes(MIB)
    loc = start_upload(client, repo)
    loc = location(expect_status(client.patch(loc, content=data), 202))

    def complete(c: httpx.Client, _: int) -> int:
        r = c.put(with_query(loc, digest=digest_of(data)))
        assert r.status_code in (201, 404, 409), r.text
        if r.status_code != 201:
            code = r.json()["errors"][0]["code"]
            assert code in ("BLOB_UPLOAD_BUSY", "BLOB_UPLOAD_UNKNOWN"), r.text
        return r.status_code

    statuses = in_parallel(live_registry, THREADS, complete)
    assert statuses.count(201) == 1, statuses
    assert get_blob(client, repo, digest_of(data)) == data
    r = client.get(loc)
    assert r.status_code == 404


def test_concurrent_cancel_and_append(live_registry: Any, client: httpx.Client, repo: str) -> None:
    loc = start_upload(client, repo)
    chunk = random_bytes(256 * 1024)

    def act(c: httpx.Client, i: int) -> int:
        if i == THREADS // 2:
            return c.delete(loc).status_code
        return c.patch(loc, content=chunk).status_code

    statuses = in_parallel(live_registry, THREADS, act)
    assert set(statuses) <= {202, 204, 404, 409}, statuses
    r = client.get(loc)
    assert r.status_code in (204, 404)
    if 204 in statuses:
        assert r.status_code == 404
