"""Plain helpers for the api tier: pushing blobs and manifests over HTTP, raw
sockets for misbehaving clients, and checks of a registry's visible state.

Fixtures live in conftest.py, which imports these; tests import them as
``from api_support import ...``. Everything here speaks the OCI Distribution
Spec to a live server through httpx (or a bare socket), never hamn's code.

Every request carries the server's credentials (``reg.auth``, the bootstrap
owner: see tests/conftest.py); a test about anonymous access says so and
passes ``anonymous=True`` or builds its own client without ``auth``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ALL_MANIFESTS = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))

EMPTY_JSON = b"{}"


# ------------------------------------------------------------------ credentials


def connect(reg: Any, *, timeout: float = 30) -> httpx.Client:
    """A new httpx client on ``reg`` (a LiveRegistry) that authenticates as its owner."""
    return httpx.Client(base_url=reg.url, auth=reg.auth, timeout=timeout)


def authorization_line(reg: Any) -> str:
    """The ``Authorization: Basic ...`` header line (with CRLF) for a hand-made request
    to ``reg``; empty for a server without credentials."""
    if not reg.username:
        return ""
    token = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


# ----------------------------------------------------------------------- naming


def token_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, read without checking the signature (what a test looks at)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "==")))


def unique_repo(prefix: str = "t") -> str:
    """A repository name no other test uses (tests share one server per worker)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest string of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def random_bytes(size: int) -> bytes:
    """Content no other test pushes (so dedup never hides a bug)."""
    return os.urandom(size)


# ------------------------------------------------------------------------ errors


def error_codes(resp: httpx.Response) -> list[str]:
    """The ``code`` of every entry in an ``{"errors": [...]}`` body."""
    try:
        body = resp.json()
    except ValueError as exc:
        raise AssertionError(
            f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: "
            f"body is not JSON: {resp.content[:300]!r}"
        ) from exc
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), body
    return [e["code"] for e in body["errors"]]


def expect_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an error response with ``status`` and ``code``; return that error entry.

    A HEAD response has no body to carry the code, so only its status is checked.
    """
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code}, want {status}: "
        f"{resp.content[:500]!r}"
    )
    assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0", resp.headers
    if resp.request.method == "HEAD":
        assert resp.content == b""
        return {}
    codes = error_codes(resp)
    assert code in codes, f"want {code}, got {codes}: {resp.text[:500]}"
    entry: dict[str, Any] = resp.json()["errors"][codes.index(code)]
    assert isinstance(entry.get("message"), str) and entry["message"], entry
    return entry


def expect_status(resp: httpx.Response, *status: int) -> httpx.Response:
    """Assert one of ``status`` with a readable failure; return ``resp``."""
    assert resp.status_code in status, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code}, want {status}: "
        f"{resp.content[:500]!r}"
    )
    assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0", resp.headers
    return resp


# ------------------------------------------------------------------------- blobs


def start_upload(client: httpx.Client, repo: str) -> str:
    """POST a new upload session; return its Location (a path, maybe with a query)."""
    r = expect_status(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    assert r.headers.get("Docker-Upload-UUID"), r.headers
    return location(r)


def location(resp: httpx.Response) -> str:
    """The Location header as a path relative to the server (absolute URLs are trimmed)."""
    loc = resp.headers["Location"]
    if loc.startswith(("http://", "https://")):
        url = httpx.URL(loc)
        loc = url.raw_path.decode()
    return loc


def with_query(loc: str, **params: str) -> str:
    """``loc`` with query parameters appended (it may already have some)."""
    extra = str(httpx.QueryParams(params))
    return f"{loc}{'&' if '?' in loc else '?'}{extra}"


def push_blob(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    """Monolithic push: POST a session, PUT the whole body with ``?digest=``."""
    digest = digest_of(data, algorithm)
    loc = start_upload(client, repo)
    r = client.put(
        with_query(loc, digest=digest),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == digest
    return digest


def push_blob_single_post(client: httpx.Client, repo: str, data: bytes) -> str:
    """Single-request push: ``POST /blobs/uploads/?digest=`` with the body."""
    digest = digest_of(data)
    r = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect_status(r, 201)
    return digest


def push_blob_chunked(
    client: httpx.Client, repo: str, data: bytes, chunk_size: int, algorithm: str = "sha256"
) -> str:
    """Chunked push: PATCHes with Content-Range, then an empty PUT with ``?digest=``."""
    digest = digest_of(data, algorithm)
    loc = start_upload(client, repo)
    for start in range(0, len(data), chunk_size):
        chunk = data[start : start + chunk_size]
        r = client.patch(
            loc,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(chunk) - 1}",
            },
        )
        expect_status(r, 202)
        assert r.headers["Range"] == f"0-{start + len(chunk) - 1}"
        loc = location(r)
    r = client.put(with_query(loc, digest=digest))
    expect_status(r, 201)
    return digest


def push_blob_streamed(client: httpx.Client, repo: str, parts: Iterable[bytes], digest: str) -> str:
    """Streamed push: one PATCH with a chunked-encoded body (no Content-Length), then PUT."""
    loc = start_upload(client, repo)
    r = client.patch(loc, content=iter(parts), headers={"Content-Type": "application/octet-stream"})
    expect_status(r, 202)
    r = client.put(with_query(location(r), digest=digest))
    expect_status(r, 201)
    return digest


def get_blob(client: httpx.Client, repo: str, digest: str) -> bytes:
    """GET a blob's bytes (following a redirect if the server sends one)."""
    r = expect_status(client.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True), 200)
    return r.content


# --------------------------------------------------------------------- manifests


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """An OCI descriptor for ``data``."""
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def encode(doc: dict[str, Any]) -> bytes:
    """A manifest's bytes, as a client would send them (stable key order)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def image_manifest(
    config: bytes,
    layers: Iterable[bytes],
    *,
    media_type: str = OCI_MANIFEST,
    config_type: str | None = None,
    layer_type: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An image manifest (OCI by default, or Docker schema 2) for config and layer bytes."""
    docker = media_type == DOCKER_MANIFEST
    config_type = config_type or (DOCKER_CONFIG if docker else OCI_CONFIG)
    layer_type = layer_type or (DOCKER_LAYER if docker else OCI_LAYER)
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type, config),
        "layers": [descriptor(layer_type, layer) for layer in layers],
        **extra,
    }


def put_manifest(
    client: httpx.Client,
    repo: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
) -> httpx.Response:
    """PUT a manifest's bytes under a tag or digest; returns the response unchecked."""
    return client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )


def push_manifest(
    client: httpx.Client,
    repo: str,
    reference: str,
    doc: dict[str, Any] | bytes,
    media_type: str | None = None,
) -> str:
    """PUT a manifest (a dict or its bytes), assert 201 and the digest; return the digest."""
    body = doc if isinstance(doc, bytes) else encode(doc)
    if media_type is None:
        media_type = json.loads(body).get("mediaType", OCI_MANIFEST)
    digest = digest_of(body)
    r = expect_status(put_manifest(client, repo, reference, body, media_type), 201)
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"].endswith(f"/v2/{repo}/manifests/{digest}"), r.headers
    return digest


@dataclass(frozen=True)
class Image:
    """A pushed image: its manifest bytes and digest, and the blobs it references."""

    repo: str
    manifest: bytes
    digest: str
    config: bytes
    layers: tuple[bytes, ...]


def push_image(
    client: httpx.Client,
    repo: str,
    tag: str | None = "latest",
    *,
    layers: int = 1,
    layer_size: int = 1024,
    media_type: str = OCI_MANIFEST,
    **extra: Any,
) -> Image:
    """Push fresh config and layer blobs and a manifest naming them (tagged, or by digest)."""
    config = encode({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex})
    blobs = tuple(random_bytes(layer_size) for _ in range(layers))
    for data in (config, *blobs):
        push_blob(client, repo, data)
    doc = image_manifest(config, blobs, media_type=media_type, **extra)
    body = encode(doc)
    digest = push_manifest(client, repo, tag or digest_of(body), body, media_type)
    return Image(repo, body, digest, config, blobs)


def push_empty_config(client: httpx.Client, repo: str) -> dict[str, Any]:
    """Push the OCI empty JSON blob and return its descriptor (for artifacts)."""
    push_blob(client, repo, EMPTY_JSON)
    return descriptor(OCI_EMPTY, EMPTY_JSON)


def push_artifact(
    client: httpx.Client,
    repo: str,
    subject: Image,
    artifact_type: str,
    *,
    annotations: dict[str, str] | None = None,
) -> str:
    """Push an artifact manifest whose subject is ``subject``, by digest; return its digest."""
    layer = random_bytes(64)
    push_blob(client, repo, layer)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": push_empty_config(client, repo),
        "layers": [descriptor("application/octet-stream", layer)],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": subject.digest,
            "size": len(subject.manifest),
        },
    }
    if annotations:
        doc["annotations"] = annotations
    body = encode(doc)
    digest = digest_of(body)
    r = expect_status(put_manifest(client, repo, digest, body), 201)
    assert r.headers.get("OCI-Subject") == subject.digest, r.headers
    return digest


# ----------------------------------------------------------------- raw sockets


def raw_request(
    reg: Any, head: str, body: bytes = b"", *, timeout: float = 10, anonymous: bool = False
) -> bytes:
    """Send ``head`` (request line and headers, no blank line) and ``body`` to ``reg``
    with its credentials (none if ``anonymous``); read the reply.

    The connection is closed by asking for it, so the whole reply is read.
    """
    host_name, port = reg.host.rsplit(":", 1)
    auth = "" if anonymous else authorization_line(reg)
    with socket.create_connection((host_name, int(port)), timeout=timeout) as s:
        s.sendall(
            head.encode()
            + f"\r\nHost: {reg.host}\r\n{auth}Connection: close\r\n\r\n".encode()
            + body
        )
        return _read_all(s)


def _read_all(s: socket.socket) -> bytes:
    parts = []
    while True:
        try:
            data = s.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        parts.append(data)
    return b"".join(parts)


def send_truncated(
    reg: Any, method: str, path: str, announced: int, sent: bytes, *, pause: float = 0.2
) -> None:
    """A client of ``reg`` (with its credentials) that announces ``announced`` bytes,
    sends ``sent`` (fewer), then closes."""
    assert len(sent) < announced
    host_name, port = reg.host.rsplit(":", 1)
    with socket.create_connection((host_name, int(port)), timeout=10) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {reg.host}\r\n{authorization_line(reg)}"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {announced}\r\n\r\n".encode()
        )
        s.sendall(sent)
        time.sleep(pause)  # let the server take in what was sent before the close
        s.shutdown(socket.SHUT_RDWR)


def status_line(reply: bytes) -> int:
    """The status code of a raw HTTP reply."""
    first = reply.split(b"\r\n", 1)[0]
    assert first.startswith(b"HTTP/1."), reply[:200]
    return int(first.split()[1])


def reply_body(reply: bytes) -> bytes:
    """The body of a raw, non-chunked HTTP reply."""
    return reply.split(b"\r\n\r\n", 1)[1]


# ------------------------------------------------------------ whole-state checks


def catalog(client: httpx.Client) -> list[str]:
    """Every repository name, following Link pagination."""
    names: list[str] = []
    url: str | None = "/v2/_catalog?n=1000"
    while url:
        r = expect_status(client.get(url), 200)
        names += r.json()["repositories"]
        url = _next_link(r)
    return names


def all_tags(client: httpx.Client, repo: str) -> list[str]:
    """Every tag of a repository, following Link pagination."""
    tags: list[str] = []
    url: str | None = f"/v2/{repo}/tags/list?n=1000"
    while url:
        r = expect_status(client.get(url), 200)
        tags += r.json()["tags"] or []
        url = _next_link(r)
    return tags


def _next_link(resp: httpx.Response) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    target = link.split(";", 1)[0].strip()
    assert target.startswith("<") and target.endswith(">"), link
    return target[1:-1]


def referenced_blobs(manifest: bytes) -> list[str]:
    """The config and layer digests an image manifest names."""
    doc = json.loads(manifest)
    out = [doc["config"]["digest"]] if "config" in doc else []
    return out + [layer["digest"] for layer in doc.get("layers", [])]


def check_repository_consistent(client: httpx.Client, repo: str) -> dict[str, bytes]:
    """Every tag resolves to a manifest whose bytes match its digest and whose blobs
    exist with matching bytes. Returns tag -> manifest bytes."""
    out: dict[str, bytes] = {}
    for tag in all_tags(client, repo):
        r = expect_status(
            client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ALL_MANIFESTS}), 200
        )
        assert r.headers["Docker-Content-Digest"] == digest_of(r.content), (repo, tag)
        for blob in referenced_blobs(r.content):
            data = get_blob(client, repo, blob)
            assert digest_of(data, blob.split(":")[0]) == blob, (repo, tag, blob)
        out[tag] = r.content
    return out


# ------------------------------------------------------------------ processes


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc), i.e. granian's workers."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised command, which may hold spaces) is the parent.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def kill9(process: Any) -> None:
    """SIGKILL a ``hamn serve`` we started and its worker processes, and reap it."""
    pids = [process.pid, *child_pids(process.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in pids[1:]):
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (from /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def slow_body(data: bytes, piece: int, delay: float, sent: list[int]) -> Iterator[bytes]:
    """Yield ``data`` in pieces with a pause between them, recording bytes handed over."""
    for start in range(0, len(data), piece):
        chunk = data[start : start + piece]
        yield chunk
        sent[0] += len(chunk)
        time.sleep(delay)
