"""Real clients pull from a server whose blob GETs redirect (``HAMN_BLOB_REDIRECTS=true``,
SPEC §3.6): skopeo, buildah, oras and curl follow the ``307`` to the signed link
(hamn's own on the filesystem, the storage's on Azure or S3) and get the right bytes.

``curl -L -u`` and ``curl -L -H "Authorization: Basic ..."`` send the credentials
to the link again when it is on the same host and port (hamn's own link, which
ignores them) and not at all when it is elsewhere (Debian's curl 7.88 drops them
on a change of host *or port*), so neither ends in ACR's InvalidAuthenticationInfo.

When the links are hamn's own, ``/metrics`` must count the clients' GETs of
them: proof that they followed the redirect rather than being served directly.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest
from e2e_support import (
    BUSYBOX,
    LAYOUT_TAG,
    DirImage,
    Layout,
    Skopeo,
    StorageTool,
    missing,
    need,
    run,
    sha256_digest,
    unique_repo,
)
from prometheus_client.parser import text_string_to_metric_families

SIGNED_PREFIX = "/v2/_signed/blobs/"


@pytest.fixture(scope="module")
def redirecting(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A private server with blob redirects on (tests/conftest.py's start_hamn)."""
    root = Path(__file__).resolve().parent.parent / "conftest.py"
    hamn = pytestconfig.pluginmanager.get_plugin(str(root))
    assert hamn is not None, f"{root} is not loaded"
    reg = hamn.start_hamn(
        tmp_path_factory.mktemp("e2e-redirects") / "data", env={"HAMN_BLOB_REDIRECTS": "true"}
    )
    try:
        yield reg
    finally:
        hamn.stop_hamn(reg)


@pytest.fixture(scope="module")
def image(
    redirecting: Any,
    busybox_layout: Layout,
    client_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, str, dict[str, Any]]:
    """The base image pushed to the redirecting server: (reference, digest, manifest)."""
    tmp = tmp_path_factory.mktemp("e2e-redirects-push")
    skopeo = Skopeo({**client_env, "E2E_TMP": str(tmp)}, need("skopeo"), redirecting.creds)
    ref = f"{redirecting.host}/{unique_repo('redirect')}:v1"
    digest = skopeo.copy(busybox_layout.ref(LAYOUT_TAG), f"docker://{ref}")
    assert digest == busybox_layout.manifest_digest(LAYOUT_TAG)
    return ref, digest, busybox_layout.manifest(LAYOUT_TAG)


def blob_url(reg: Any, ref: str, digest: str) -> str:
    repo = ref.removeprefix(f"{reg.host}/").rsplit(":", 1)[0]
    return f"{reg.url}/v2/{repo}/blobs/{digest}"


def redirect_target(reg: Any, ref: str, digest: str) -> str:
    """Where a blob GET of the owner is sent (checking that it is sent somewhere)."""
    r = httpx.get(blob_url(reg, ref, digest), auth=reg.auth)
    assert r.status_code == 307, (r.status_code, r.text)
    return r.headers["Location"]


def link_fetches(reg: Any) -> float:
    """GETs of hamn's own links answered with the bytes, so far (from /metrics)."""
    text = httpx.get(f"{reg.url}/metrics", auth=reg.auth, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "hamn_http_requests_total"
        and sample.labels.get("route") == "signed_blob"
        and sample.labels.get("status") in ("200", "206")
    )


class FollowedLinks:
    """Checks that a client fetched at least ``n`` of hamn's own links meanwhile
    (nothing to check when the storage hands out its own)."""

    def __init__(self, reg: Any, ref: str, digest: str) -> None:
        self.reg = reg
        location = urlsplit(redirect_target(reg, ref, digest))
        self.own = location.netloc == reg.host and location.path.startswith(SIGNED_PREFIX)
        self.before = link_fetches(reg) if self.own else 0.0

    def at_least(self, n: int) -> None:
        if self.own:
            fetched = link_fetches(self.reg) - self.before
            assert fetched >= n, f"{fetched} link fetches; the client did not follow redirects"


def layer_digests(manifest: dict[str, Any]) -> list[str]:
    return [manifest["config"]["digest"], *(ly["digest"] for ly in manifest["layers"])]


def test_skopeo_copy_follows_redirects(
    redirecting: Any,
    image: tuple[str, str, dict[str, Any]],
    client_env: dict[str, str],
    tmp_path: Path,
) -> None:
    ref, digest, manifest = image
    followed = FollowedLinks(redirecting, ref, manifest["layers"][0]["digest"])
    skopeo = Skopeo({**client_env, "E2E_TMP": str(tmp_path)}, need("skopeo"), redirecting.creds)
    pulled = DirImage(tmp_path / "pulled")
    assert skopeo.copy(f"docker://{ref}", f"dir:{pulled.path}") == digest
    pulled.verify_blobs()
    assert pulled.files()["bin/busybox"] == BUSYBOX.read_bytes()
    followed.at_least(len(layer_digests(manifest)))


def test_buildah_pull_follows_redirects(
    redirecting: Any,
    image: tuple[str, str, dict[str, Any]],
    client_env: dict[str, str],
    tmp_path: Path,
) -> None:
    ref, digest, manifest = image
    followed = FollowedLinks(redirecting, ref, manifest["layers"][0]["digest"])
    store = tmp_path / "buildah-storage"
    buildah = StorageTool(
        need("buildah"),
        ["--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", "vfs"],
        {**client_env, "TMPDIR": str(tmp_path)},
        redirecting.creds,
    )
    buildah("pull", *buildah.remote, "--signature-policy", buildah.policy, f"docker://{ref}")
    pulled = buildah("inspect", "--type", "image", "--format", "{{.FromImageDigest}}", ref)
    assert pulled.stdout.strip() == digest
    followed.at_least(len(layer_digests(manifest)))
    ctr = buildah("from", "--pull=never", ref).stdout.strip().splitlines()[-1]
    try:
        out = buildah("run", "--isolation", "chroot", ctr, "--",
                      "/bin/busybox", "sha256sum", "/bin/busybox").stdout  # fmt: skip
        assert out.split()[0] == hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
    finally:
        buildah("rm", ctr, check=False)


@pytest.mark.parametrize("auth_backend", ["basic", "token"])
def test_oras_pull_follows_redirects(redirecting: Any, tmp_path: Path, auth_backend: str) -> None:
    try:
        import oras.client
    except ImportError as e:
        missing(f"the oras Python package is not installed ({e})")
    pusher = oras.client.OrasClient(hostname=redirecting.host, insecure=True, auth_backend="basic")
    pusher.auth.set_basic_auth(redirecting.username, redirecting.password)
    target = f"{redirecting.host}/{unique_repo('redirect-oras')}:v1"
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(400_000)
    (src / "payload.bin").write_bytes(payload)
    resp = pusher.push(
        target=target,
        files=[f"{src / 'payload.bin'}:application/vnd.hamn.file.v1"],
        disable_path_validation=True,
        quiet=True,
    )
    assert resp.status_code == 201, resp.text
    followed = FollowedLinks(redirecting, target, sha256_digest(payload))

    puller = oras.client.OrasClient(
        hostname=redirecting.host, insecure=True, auth_backend=auth_backend
    )
    # The token backend trades these for a bearer token, which it sends to the link too.
    puller.auth.set_basic_auth(redirecting.username, redirecting.password)
    out = tmp_path / "pulled"
    out.mkdir()
    pulled = puller.pull(target=target, outdir=str(out))
    assert [Path(p).name for p in pulled] == ["payload.bin"]
    assert (out / "payload.bin").read_bytes() == payload
    followed.at_least(1)


@pytest.mark.parametrize("how", ["-u", "-H"])
def test_curl_follows_the_redirect_with_the_original_authorization(
    redirecting: Any, image: tuple[str, str, dict[str, Any]], tmp_path: Path, how: str
) -> None:
    """The seed's failure: ``curl -L`` sent its Authorization header on to storage,
    which answered InvalidAuthenticationInfo instead of the blob."""
    ref, _, manifest = image
    layer = manifest["layers"][0]["digest"]
    credentials = f"{redirecting.username}:{redirecting.password}"
    if how == "-u":
        auth = ["-u", credentials]
    else:
        auth = ["-H", f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}"]
    out = tmp_path / f"blob-{uuid.uuid4().hex[:8]}"
    res = run(
        [need("curl"), "-sS", "-f", "-L", *auth, "-o", str(out),
         "-w", "%{http_code} %{num_redirects}", blob_url(redirecting, ref, layer)],
        timeout=60,
    )  # fmt: skip
    assert res.stdout.split() == ["200", "1"], res.stdout
    assert sha256_digest(out.read_bytes()) == layer


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Stands where object storage would: another port of the same host. Records the
    Authorization header of each GET; answers ``/redirect`` with a 307 to ``/blob``
    on the port in the query."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?port="):
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{self.path.split('=')[1]}/blob")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("how", ["-u", "-H"])
def test_curl_sends_no_credentials_to_storage_on_another_port(how: str) -> None:
    """What makes ``curl -L`` safe with Azure or S3 links: the credentials stay with the
    registry. Debian's curl (>= 7.83) drops them when the port changes, not only the
    host, which is the test matrix's case (Azurite or SeaweedFS beside hamn)."""
    servers = [http.server.HTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    registry, storage = (server.server_address[1] for server in servers)
    auth = ["-u", "user:secret"] if how == "-u" else ["-H", "Authorization: Basic dXNlcjpzZWNyZXQ="]
    try:
        _Recorder.seen.clear()
        res = run(
            [need("curl"), "-sS", "-f", "-L", *auth,
             f"http://127.0.0.1:{registry}/redirect?port={storage}"],
            timeout=30,
        )  # fmt: skip
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert res.stdout == "ok"
    assert _Recorder.seen == [None]
