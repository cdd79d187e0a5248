"""Misbehaving clients, over raw sockets where httpx would not misbehave: a
client that stops sending mid-body, a client that stalls, bodies past the
manifest limit, and what the server does with the connection afterwards."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import (
    OCI_MANIFEST,
    authorization_line,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    image_manifest,
    location,
    push_blob,
    push_image,
    random_bytes,
    raw_request,
    reply_body,
    send_truncated,
    start_upload,
    status_line,
    with_query,
)

MIB = 1024 * 1024


def _server_still_answers(client: httpx.Client) -> None:
    expect_status(client.get("/v2/"), 200)


def _upload_files(reg: Any) -> dict[str, int]:
    """Upload id -> size of the server's upload files (empty for an external server)."""
    if reg.data_dir is None:
        return {}
    root = reg.data_dir / "storage" / "uploads"
    return {p.name: p.stat().st_size for p in root.iterdir()}


def _upload_file_size(reg: Any, loc: str) -> int | None:
    """Bytes the server holds on disk for the upload at ``loc`` (None for an external server)."""
    if reg.data_dir is None:
        return None
    upload_id = loc.split("?", 1)[0].rstrip("/").rsplit("/", 1)[1]
    return _upload_files(reg)[upload_id]


# -- a client that stops sending mid-body -----------------------------------------------


@pytest.mark.filesystem_storage  # _upload_files reads the driver's upload files
def test_truncated_patch_leaves_the_upload_where_it_was(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(3 * MIB)
    loc = start_upload(client, repo)
    expect_status(
        client.patch(loc, content=data[:MIB], headers={"Content-Range": f"0-{MIB - 1}"}), 202
    )
    send_truncated(live_registry, "PATCH", loc, 2 * MIB, data[MIB : MIB + 700_000])
    # The failed chunk is rolled back: the upload is where it was acknowledged.
    r = _settled_status(client, loc)
    assert r.headers["Range"] == f"0-{MIB - 1}"
    assert _upload_file_size(live_registry, loc) in (MIB, None)
    r = client.patch(loc, content=data[MIB:], headers={"Content-Range": f"{MIB}-{3 * MIB - 1}"})
    loc = location(expect_status(r, 202))
    expect_status(client.put(with_query(loc, digest=digest_of(data))), 201)
    assert get_blob(client, repo, digest_of(data)) == data


@pytest.mark.filesystem_storage  # _upload_files reads the driver's upload files
@pytest.mark.parametrize(("announced", "sent"), [(5000, 100), (1000, 999), (64 * 1024, 1)])
def test_truncated_small_patch(
    live_registry: Any, client: httpx.Client, repo: str, announced: int, sent: int
) -> None:
    data = random_bytes(1000 + announced)
    loc = start_upload(client, repo)
    expect_status(client.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"}), 202)
    send_truncated(live_registry, "PATCH", loc, announced, data[1000 : 1000 + sent])
    r = _settled_status(client, loc)
    assert r.headers["Range"] == "0-999"
    assert _upload_file_size(live_registry, loc) in (1000, None)
    r = client.patch(loc, content=data[1000:], headers={"Content-Range": f"1000-{len(data) - 1}"})
    expect_status(
        client.put(with_query(location(expect_status(r, 202)), digest=digest_of(data))), 201
    )
    assert get_blob(client, repo, digest_of(data)) == data


def test_truncated_patch_without_content_range(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(2 * MIB)
    loc = start_upload(client, repo)
    send_truncated(live_registry, "PATCH", loc, len(data), data[: MIB + 5])
    r = _settled_status(client, loc)
    assert r.headers["Range"] == "0-0"
    expect_status(client.put(with_query(loc, digest=digest_of(data)), content=data), 201)
    assert get_blob(client, repo, digest_of(data)) == data


@pytest.mark.filesystem_storage  # _upload_files reads the driver's upload files
def test_truncated_monolithic_put_publishes_nothing(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(2 * MIB)
    loc = start_upload(client, repo)
    send_truncated(
        live_registry, "PUT", with_query(loc, digest=digest_of(data)), len(data), data[:MIB]
    )
    r = _settled_status(client, loc)
    assert r.headers["Range"] == "0-0"
    assert _upload_file_size(live_registry, loc) in (0, None)
    expect_error(client.head(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")
    # The client can retry on the same session.
    expect_status(client.put(with_query(loc, digest=digest_of(data)), content=data), 201)
    assert get_blob(client, repo, digest_of(data)) == data


@pytest.mark.filesystem_storage  # _upload_files reads the driver's upload files
def test_truncated_single_post_publishes_nothing(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(2 * MIB)
    before = set(_upload_files(live_registry))
    send_truncated(
        live_registry,
        "POST",
        f"/v2/{repo}/blobs/uploads/?digest={digest_of(data)}",
        len(data),
        data[:-1],
    )
    time.sleep(0.2)
    expect_error(client.head(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")
    _server_still_answers(client)
    # The single-request upload's session and bytes are gone, not left behind.
    deadline = time.monotonic() + 10
    while set(_upload_files(live_registry)) - before:
        assert time.monotonic() < deadline, set(_upload_files(live_registry)) - before
        time.sleep(0.05)


def test_truncated_manifest_put_stores_nothing(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    img = push_image(client, repo, "v1")
    other = push_image(client, repo, None)
    # The tag must keep pointing at v1's manifest: a half-sent one changes nothing.
    send_truncated(
        live_registry,
        "PUT",
        f"/v2/{repo}/manifests/v1",
        len(other.manifest),
        other.manifest[: len(other.manifest) // 2],
    )
    send_truncated(
        live_registry,
        "PUT",
        f"/v2/{repo}/manifests/v2",
        len(other.manifest),
        other.manifest[:-1],
    )
    time.sleep(0.2)
    r = expect_status(client.get(f"/v2/{repo}/manifests/v1"), 200)
    assert r.content == img.manifest
    expect_error(client.get(f"/v2/{repo}/manifests/v2"), 404, "MANIFEST_UNKNOWN")
    assert expect_status(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"] == ["v1"]


def test_truncated_chunk_in_completing_put(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(2 * MIB)
    loc = start_upload(client, repo)
    loc = location(
        expect_status(
            client.patch(loc, content=data[:MIB], headers={"Content-Range": f"0-{MIB - 1}"}), 202
        )
    )
    host, port = live_registry.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"PUT {with_query(loc, digest=digest_of(data))} HTTP/1.1\r\nHost: {host}\r\n"
            f"{authorization_line(live_registry)}"
            f"Content-Range: {MIB}-{2 * MIB - 1}\r\nContent-Length: {MIB}\r\n\r\n".encode()
        )
        s.sendall(data[MIB : MIB + 1000])
        time.sleep(0.2)
    r = _settled_status(client, loc)
    assert r.headers["Range"] == f"0-{MIB - 1}"
    expect_error(client.head(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")
    expect_status(
        client.put(
            with_query(loc, digest=digest_of(data)),
            content=data[MIB:],
            headers={"Content-Range": f"{MIB}-{2 * MIB - 1}"},
        ),
        201,
    )
    assert get_blob(client, repo, digest_of(data)) == data


def _settled_status(client: httpx.Client, loc: str) -> httpx.Response:
    """The upload's status once the server has noticed the client went away.

    Until it has, the aborted request still holds the upload, and writes to it
    are refused as busy (409, Retry-After); that must end within moments, never
    hang. An empty PATCH is the probe: it appends nothing but needs the upload.
    """
    deadline = time.monotonic() + 10
    while True:
        r = client.patch(loc, content=b"")
        if r.status_code != 409:
            break
        expect_error(r, 409, "BLOB_UPLOAD_BUSY")
        assert time.monotonic() < deadline, "the aborted request still holds the upload"
        time.sleep(0.05)
    expect_status(r, 202)
    return expect_status(client.get(loc), 204)


# -- a client that stalls mid-body -------------------------------------------------------


def test_stalled_client_does_not_block_others(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(MIB)
    loc = start_upload(client, repo)
    host, port = live_registry.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"PATCH {loc} HTTP/1.1\r\nHost: {host}\r\n{authorization_line(live_registry)}"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data[:1000]
        )
        time.sleep(0.2)
        # While the stalled request holds the upload, others are answered at once.
        start = time.monotonic()
        r = client.patch(loc, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
        expect_error(r, 409, "BLOB_UPLOAD_BUSY")
        assert r.headers.get("Retry-After")
        other = push_blob(client, repo, random_bytes(100))
        assert get_blob(client, repo, other)
        expect_status(client.get(loc), 204)
        assert time.monotonic() - start < 5
    r = _settled_status(client, loc)
    assert r.headers["Range"] == "0-0"
    expect_status(client.put(with_query(loc, digest=digest_of(data)), content=data), 201)


# -- the manifest body limit -------------------------------------------------------------


def test_declared_oversized_manifest_is_refused_before_its_body(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    """413 as soon as the headers arrive: the server neither waits for nor reads the body."""
    host, port = live_registry.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            f"PUT /v2/{repo}/manifests/big HTTP/1.1\r\nHost: {host}\r\n"
            f"{authorization_line(live_registry)}"
            f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {64 * MIB}\r\n\r\n".encode()
        )
        reply = s.recv(65536)
    assert status_line(reply) == 413, reply[:300]
    assert b"MANIFEST_TOO_LARGE" in reply
    _server_still_answers(client)


def _streamed_oversized_manifest() -> Iterator[bytes]:
    yield b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","pad":"'
    for _ in range(5):
        yield b"x" * MIB
    yield b'"}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_requests_after_the_manifest_body_limit(
    client: httpx.Client, repo: str, declared: bool
) -> None:
    """After a 413 the same client's next requests are answered: the server either
    reads past the rest of the refused body or closes the connection and says so
    (``Connection: close``), never leaves it open to fail the next request."""
    img = push_image(client, repo, "v1")
    for _ in range(5):
        body: Any = _streamed_oversized_manifest()
        if declared:
            body = b"".join(body)
        r = client.put(
            f"/v2/{repo}/manifests/big", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        expect_error(r, 413, "MANIFEST_TOO_LARGE")
        r = expect_status(client.get(f"/v2/{repo}/manifests/v1"), 200)
        assert r.content == img.manifest
        expect_error(client.get(f"/v2/{repo}/manifests/big"), 404, "MANIFEST_UNKNOWN")


def test_request_after_an_overlong_chunk(client: httpx.Client, repo: str) -> None:
    """A chunk longer than its Content-Range, streamed: refused part-way through its body."""
    loc = start_upload(client, repo)
    for _ in range(5):
        parts = iter([random_bytes(MIB) for _ in range(4)])
        r = client.patch(loc, content=parts, headers={"Content-Range": "0-99"})
        expect_error(r, 400, "SIZE_INVALID")
        r = expect_status(client.get(loc), 204)
        assert r.headers["Range"] == "0-0"


def test_pipelined_request_after_refused_body_is_not_misread(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    """Bytes of a refused body are never parsed as a request of their own."""
    img = push_image(client, repo, "v1")
    # The smuggled request carries credentials too: were it run, it could delete.
    auth = authorization_line(live_registry)
    smuggled = f"DELETE /v2/{repo}/manifests/v1 HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    pad = b" " * (4 * MIB + 10)
    body = pad + smuggled
    host, port = live_registry.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            f"PUT /v2/{repo}/manifests/big HTTP/1.1\r\nHost: {host}\r\n{auth}"
            f"Content-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        # The server may close the connection once it has refused the body.
        with contextlib.suppress(OSError):
            s.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        replies = b""
        try:
            while chunk := s.recv(65536):
                replies += chunk
        except OSError:
            pass
    assert status_line(replies) == 413
    assert replies.count(b"HTTP/1.1 ") == 1, replies[:1000]
    r = expect_status(client.get(f"/v2/{repo}/manifests/v1"), 200)
    assert r.content == img.manifest


# -- other raw-protocol faults -----------------------------------------------------------


def test_garbage_request_line(live_registry: Any, client: httpx.Client) -> None:
    reply = raw_request(live_registry, "BLAH /v2/ HTTP/9.9")
    assert 400 <= status_line(reply) < 500 or status_line(reply) == 505
    _server_still_answers(client)


def test_many_aborted_uploads_leave_the_server_healthy(
    live_registry: Any, client: httpx.Client, repo: str
) -> None:
    locs = [start_upload(client, repo) for _ in range(8)]
    threads = [
        threading.Thread(
            target=send_truncated,
            args=(live_registry, "PATCH", loc, 2 * MIB, random_bytes(300_000)),
        )
        for loc in locs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for loc in locs:
        assert _settled_status(client, loc).headers["Range"] == "0-0"
        expect_status(client.delete(loc), 204)
    config, layer = random_bytes(10), random_bytes(10)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    body = encode(image_manifest(config, [layer]))
    expect_status(
        client.put(
            f"/v2/{repo}/manifests/ok", content=body, headers={"Content-Type": OCI_MANIFEST}
        ),
        201,
    )


def test_raw_bad_name_reply_is_json(live_registry: Any) -> None:
    reply = raw_request(live_registry, "GET /v2/%2e%2e/%2e%2e/tags/list HTTP/1.1")
    assert status_line(reply) == 400
    assert b'"NAME_INVALID"' in reply_body(reply)
