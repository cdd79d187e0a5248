"""Blob pull and push over HTTP (OCI Distribution Spec v1.1, "Pull" and "Push"):
monolithic, single-POST, chunked and streamed uploads, upload status and cancel,
cross-repository mounts, Range reads, blob deletes, sha256 and sha512."""

from __future__ import annotations

import httpx
import pytest
from api_support import (
    digest_of,
    expect_error,
    expect_status,
    get_blob,
    location,
    push_blob,
    push_blob_chunked,
    push_blob_single_post,
    push_blob_streamed,
    random_bytes,
    start_upload,
    unique_repo,
    with_query,
)


def test_base_endpoint_answers_with_api_version(client: httpx.Client) -> None:
    r = expect_status(client.get("/v2/"), 200)
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_monolithic_push_then_pull(client: httpx.Client, repo: str, algorithm: str) -> None:
    data = random_bytes(300_000)
    digest = digest_of(data, algorithm)
    r = expect_status(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    r = client.put(
        with_query(location(r), digest=digest),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect_status(r, 201)
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest

    head = expect_status(client.head(f"/v2/{repo}/blobs/{digest}"), 200)
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.content == b""
    r = expect_status(client.get(f"/v2/{repo}/blobs/{digest}"), 200)
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest


def test_upload_session_ends_with_its_completion(client: httpx.Client, repo: str) -> None:
    data = random_bytes(1000)
    loc = start_upload(client, repo)
    expect_status(client.put(with_query(loc, digest=digest_of(data)), content=data), 201)
    expect_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.patch(loc, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.put(with_query(loc, digest=digest_of(data))), 404, "BLOB_UPLOAD_UNKNOWN")
    assert get_blob(client, repo, digest_of(data)) == data


def test_single_post_push(client: httpx.Client, repo: str) -> None:
    data = random_bytes(70_000)
    r = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest_of(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect_status(r, 201)
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{digest_of(data)}"
    assert r.headers["Docker-Content-Digest"] == digest_of(data)
    assert get_blob(client, repo, digest_of(data)) == data


def test_empty_blob(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"")
    head = expect_status(client.head(f"/v2/{repo}/blobs/{digest}"), 200)
    assert head.headers["Content-Length"] == "0"
    assert get_blob(client, repo, digest) == b""


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("chunk_size", [1, 4096, 1_000_000, 3_000_000])
def test_chunked_push_with_content_range(
    client: httpx.Client, repo: str, chunk_size: int, algorithm: str
) -> None:
    data = random_bytes({1: 7, 4096: 50_000}.get(chunk_size, 2_500_000))
    digest = push_blob_chunked(client, repo, data, chunk_size, algorithm)
    assert get_blob(client, repo, digest) == data


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_chunked_push_with_a_new_connection_per_chunk(
    client: httpx.Client, repo: str, algorithm: str
) -> None:
    """Chunks on fresh connections land on either worker process, so some arrive
    where the hash state is not held; the completion must still verify the whole
    upload (hashing it once), and a wrong digest must still be refused."""
    data = random_bytes(3_000_000)
    loc = start_upload(client, repo)
    for start in range(0, len(data), 250_000):
        chunk = data[start : start + 250_000]
        with httpx.Client(base_url=client.base_url, auth=client.auth, timeout=30) as fresh:
            r = fresh.patch(
                loc, content=chunk, headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"}
            )
        expect_status(r, 202)
        loc = location(r)
    wrong = digest_of(data + b"x", algorithm)
    with httpx.Client(base_url=client.base_url, auth=client.auth, timeout=30) as fresh:
        expect_error(fresh.put(with_query(loc, digest=wrong)), 400, "DIGEST_INVALID")
    data2 = random_bytes(1_000_000)
    loc = start_upload(client, repo)
    for start in range(0, len(data2), 100_000):
        with httpx.Client(base_url=client.base_url, auth=client.auth, timeout=30) as fresh:
            r = fresh.patch(loc, content=data2[start : start + 100_000])
        loc = location(expect_status(r, 202))
    with httpx.Client(base_url=client.base_url, auth=client.auth, timeout=30) as fresh:
        r = fresh.put(with_query(loc, digest=digest_of(data2, algorithm)))
    expect_status(r, 201)
    assert get_blob(client, repo, digest_of(data2, algorithm)) == data2


def test_chunked_push_with_final_chunk_in_put(client: httpx.Client, repo: str) -> None:
    data = random_bytes(10_000)
    loc = start_upload(client, repo)
    r = client.patch(loc, content=data[:6000], headers={"Content-Range": "0-5999"})
    expect_status(r, 202)
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    r = client.put(
        with_query(location(r), digest=digest_of(data)),
        content=data[6000:],
        headers={"Content-Range": "6000-9999", "Content-Type": "application/octet-stream"},
    )
    expect_status(r, 201)
    assert get_blob(client, repo, digest_of(data)) == data


def test_streamed_push_without_content_length(client: httpx.Client, repo: str) -> None:
    parts = [random_bytes(n) for n in (1, 65_536, 1_500_000, 17)]
    data = b"".join(parts)
    digest = push_blob_streamed(client, repo, parts, digest_of(data))
    assert get_blob(client, repo, digest) == data


def test_streamed_patches_without_content_range_append(client: httpx.Client, repo: str) -> None:
    data = random_bytes(30_000)
    loc = start_upload(client, repo)
    for start in range(0, len(data), 10_000):
        r = expect_status(client.patch(loc, content=iter([data[start : start + 10_000]])), 202)
        assert r.headers["Range"] == f"0-{start + 9_999}"
        loc = location(r)
    expect_status(client.put(with_query(loc, digest=digest_of(data))), 201)
    assert get_blob(client, repo, digest_of(data)) == data


def test_upload_status_reports_the_acknowledged_range(client: httpx.Client, repo: str) -> None:
    loc = start_upload(client, repo)
    r = expect_status(client.get(loc), 204)
    assert r.headers["Range"] == "0-0"
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"]
    expect_status(client.patch(loc, content=b"x" * 1234, headers={"Content-Range": "0-1233"}), 202)
    r = expect_status(client.get(loc), 204)
    assert r.headers["Range"] == "0-1233"
    assert r.content == b""


def test_cancel_upload(client: httpx.Client, repo: str) -> None:
    data = random_bytes(5000)
    loc = start_upload(client, repo)
    expect_status(client.patch(loc, content=data, headers={"Content-Range": "0-4999"}), 202)
    expect_status(client.delete(loc), 204)
    expect_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.put(with_query(loc, digest=digest_of(data))), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.head(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")


def test_upload_session_belongs_to_its_repository(client: httpx.Client, repo: str) -> None:
    loc = start_upload(client, repo)
    other = unique_repo()
    foreign = loc.replace(f"/v2/{repo}/", f"/v2/{other}/")
    expect_error(client.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.patch(foreign, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_status(client.get(loc), 204)


def test_pushing_an_existing_blob_again_succeeds(client: httpx.Client, repo: str) -> None:
    data = random_bytes(4000)
    push_blob(client, repo, data)
    push_blob(client, repo, data)
    push_blob_chunked(client, repo, data, 1500)
    push_blob_single_post(client, repo, data)
    assert get_blob(client, repo, digest_of(data)) == data


def test_blob_of_another_repository_is_unknown(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, random_bytes(100))
    other = unique_repo()
    expect_error(client.get(f"/v2/{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    r = client.head(f"/v2/{other}/blobs/{digest}")
    assert r.status_code == 404 and r.content == b""


# -- Range reads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=65000-", 65000, 99_999),
        ("bytes=-100", 99_900, 99_999),
        ("bytes=99990-200000", 99_990, 99_999),
    ],
)
def test_range_get(client: httpx.Client, repo: str, header: str, start: int, end: int) -> None:
    data = random_bytes(100_000)
    digest = push_blob(client, repo, data)
    r = expect_status(client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header}), 206)
    assert r.content == data[start : end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.headers["Content-Length"] == str(end - start + 1)


def test_unsatisfiable_range_is_416(client: httpx.Client, repo: str) -> None:
    data = random_bytes(1000)
    digest = push_blob(client, repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=1000-2000"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */1000"


def test_blob_get_advertises_ranges(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, random_bytes(10))
    r = expect_status(client.head(f"/v2/{repo}/blobs/{digest}"), 200)
    assert r.headers["Accept-Ranges"] == "bytes"


# -- cross-repository mount ------------------------------------------------------


def test_mount_from_a_repository(client: httpx.Client, repo: str) -> None:
    data = random_bytes(2000)
    digest = push_blob(client, repo, data)
    target = unique_repo()
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    expect_status(r, 201)
    assert r.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert get_blob(client, target, digest) == data
    assert get_blob(client, repo, digest) == data


def test_mount_without_from_finds_the_blob(client: httpx.Client, repo: str) -> None:
    data = random_bytes(2000)
    digest = push_blob(client, repo, data)
    target = unique_repo()
    r = expect_status(client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest}), 201)
    assert r.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert get_blob(client, target, digest) == data


def test_mount_of_unknown_blob_starts_an_upload(client: httpx.Client, repo: str) -> None:
    data = random_bytes(100)
    r = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": digest_of(data), "from": unique_repo()}
    )
    expect_status(r, 202)
    loc = location(r)
    assert loc.startswith(f"/v2/{repo}/blobs/uploads/")
    expect_status(client.put(with_query(loc, digest=digest_of(data)), content=data), 201)
    assert get_blob(client, repo, digest_of(data)) == data


def test_mount_from_a_repository_without_the_blob_starts_an_upload(
    client: httpx.Client, repo: str
) -> None:
    digest = push_blob(client, repo, random_bytes(100))
    elsewhere = unique_repo()
    push_blob(client, elsewhere, random_bytes(100))
    target = unique_repo()
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": elsewhere})
    expect_status(r, 202)
    expect_error(client.head(f"/v2/{target}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


# -- deletes ---------------------------------------------------------------------


def test_delete_blob(client: httpx.Client, repo: str) -> None:
    data = random_bytes(500)
    digest = push_blob(client, repo, data)
    mirror = unique_repo()
    expect_status(client.post(f"/v2/{mirror}/blobs/uploads/", params={"mount": digest}), 201)
    expect_status(client.delete(f"/v2/{repo}/blobs/{digest}"), 202)
    expect_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    expect_error(client.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # The other repository's link is untouched.
    assert get_blob(client, mirror, digest) == data
