"""skopeo against a live registry: copies from an OCI layout, a docker-archive
and another repository, inspect, list-tags over many tags, delete, pull back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    BUSYBOX,
    DOCKER_MANIFEST,
    LAYOUT_TAG,
    MARKER_PATH,
    MARKER_TEXT,
    OCI_MANIFEST,
    CommandFailed,
    DirImage,
    Layout,
    Skopeo,
    assert_unauthorized,
    layer_tar_bytes,
    sha256_digest,
    unique_repo,
)

PushBase = Callable[..., tuple[str, str]]


def layer_digests(manifest: dict[str, Any]) -> list[str]:
    return [layer["digest"] for layer in manifest["layers"]]


def test_copy_oci_layout_to_registry(
    live_registry: Any, skopeo: Skopeo, busybox_layout: Layout
) -> None:
    repo = unique_repo("skopeo-oci")
    ref = f"docker://{live_registry.host}/{repo}:v1"

    pushed = skopeo.copy(busybox_layout.ref(LAYOUT_TAG), ref)

    want = busybox_layout.manifest_digest(LAYOUT_TAG)
    assert pushed == want, "the registry must store the manifest unchanged"
    raw = skopeo.raw(ref)
    assert raw == busybox_layout.blob(want)
    assert sha256_digest(raw) == want
    # every blob the manifest names comes back byte for byte
    manifest = json.loads(raw)
    for d in [manifest["config"]["digest"], *layer_digests(manifest)]:
        r = httpx.get(
            f"{live_registry.url}/v2/{repo}/blobs/{d}",
            auth=live_registry.auth,
            follow_redirects=True,
        )
        assert r.status_code == 200, r.text
        assert r.content == busybox_layout.blob(d)


def test_copy_docker_archive_to_registry(
    live_registry: Any, skopeo: Skopeo, busybox_layout: Layout, tmp_path: Path
) -> None:
    archive = tmp_path / "image.tar"
    skopeo.copy(
        busybox_layout.ref(LAYOUT_TAG),
        f"docker-archive:{archive}:e2e/archived:v1",
        preserve_digests=False,  # OCI -> Docker manifest: a conversion
    )
    repo = unique_repo("skopeo-archive")
    ref = f"docker://{live_registry.host}/{repo}:v1"

    pushed = skopeo.copy(f"docker-archive:{archive}", ref)

    raw = skopeo.raw(ref)
    assert sha256_digest(raw) == pushed
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST, "a docker-archive pushes as Docker schema 2"
    assert skopeo.inspect(ref)["Digest"] == pushed

    pulled = DirImage(tmp_path / "pulled")
    skopeo.copy(ref, f"dir:{pulled.path}")
    assert pulled.manifest_bytes() == raw
    pulled.verify_blobs()
    # the config survives the trip unchanged, and each layer unpacks to its diff_id
    source_config = busybox_layout.manifest(LAYOUT_TAG)["config"]["digest"]
    assert manifest["config"]["digest"] == source_config
    config = json.loads(pulled.blob(source_config))
    diff_ids = [sha256_digest(layer_tar_bytes(pulled.blob(d))) for d in layer_digests(manifest)]
    assert diff_ids == config["rootfs"]["diff_ids"]
    files = pulled.files()
    assert files["bin/busybox"] == BUSYBOX.read_bytes()
    assert files[MARKER_PATH].decode() == MARKER_TEXT


def test_copy_between_repositories(
    live_registry: Any, skopeo: Skopeo, push_base: PushBase, tmp_path: Path
) -> None:
    src_repo, digest = push_base("skopeo-from")
    dst_repo = unique_repo("skopeo-to")
    src = f"docker://{live_registry.host}/{src_repo}:v1"
    dst = f"docker://{live_registry.host}/{dst_repo}:copied"

    copied = skopeo.copy(src, dst)

    assert copied == digest
    assert skopeo.inspect(dst)["Digest"] == digest
    assert skopeo.raw(dst) == skopeo.raw(src)
    tags = json.loads(skopeo.list_tags(dst.rsplit(":", 1)[0]).stdout)
    assert tags["Tags"] == ["copied"]
    # the blobs are really there in the new repository (mounted or uploaded)
    pulled = DirImage(tmp_path / "pulled")
    skopeo.copy(f"docker://{live_registry.host}/{dst_repo}@{digest}", f"dir:{pulled.path}")
    pulled.verify_blobs()
    assert pulled.files()["bin/busybox"] == BUSYBOX.read_bytes()


def test_inspect_shows_pushed_digest(
    live_registry: Any, skopeo: Skopeo, push_base: PushBase, busybox_layout: Layout
) -> None:
    repo, digest = push_base("skopeo-inspect")
    by_tag = f"docker://{live_registry.host}/{repo}:v1"
    by_digest = f"docker://{live_registry.host}/{repo}@{digest}"
    source = busybox_layout.manifest(LAYOUT_TAG)
    source_config = json.loads(busybox_layout.blob(source["config"]["digest"]))

    for ref in (by_tag, by_digest):
        info = skopeo.inspect(ref)
        assert info["Digest"] == digest
        assert info["Layers"] == layer_digests(source)
        assert info["RepoTags"] == ["v1"]
        assert info["Architecture"] == source_config["architecture"]
        assert info["Os"] == source_config["os"]
        assert info["Labels"]["org.opencontainers.image.title"] == "hamn-e2e-busybox"

        raw = skopeo.raw(ref)
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
        assert json.loads(raw)["config"] == source["config"]

        config = skopeo.raw(ref, "--config")
        assert sha256_digest(config) == source["config"]["digest"]


def test_list_tags_returns_every_tag(
    live_registry: Any, skopeo: Skopeo, push_base: PushBase
) -> None:
    repo, digest = push_base("skopeo-tags", tag="base")
    raw = skopeo.raw(f"docker://{live_registry.host}/{repo}@{digest}")
    tags = {f"t{i:04d}" for i in range(260)} | {"v1.2.3", "release-2024_01", "UPPER", "x" * 128}

    def put(client: httpx.Client, tag: str) -> None:
        r = client.put(
            f"/v2/{repo}/manifests/{tag}", content=raw, headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 201, (tag, r.status_code, r.text)
        assert r.headers.get("Docker-Content-Digest", digest) == digest

    with (
        httpx.Client(base_url=live_registry.url, auth=live_registry.auth, timeout=60) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        list(pool.map(lambda t: put(client, t), sorted(tags)))

    out = json.loads(skopeo.list_tags(f"docker://{live_registry.host}/{repo}").stdout)

    assert out["Repository"] == f"{live_registry.host}/{repo}"
    listed = out["Tags"]
    assert len(listed) == len(set(listed)), "a tag was listed twice (pagination overlap)"
    assert set(listed) == tags | {"base"}


def test_delete_manifest_by_digest(live_registry: Any, skopeo: Skopeo, push_base: PushBase) -> None:
    repo, digest = push_base("skopeo-delete")
    base = f"docker://{live_registry.host}/{repo}"
    skopeo.copy(f"{base}:v1", f"{base}:v2")  # a second tag on the same manifest
    assert skopeo.inspect(f"{base}@{digest}")["Digest"] == digest

    skopeo.delete(f"{base}@{digest}")

    for ref in (f"{base}@{digest}", f"{base}:v1", f"{base}:v2"):
        with pytest.raises(CommandFailed) as failed:
            skopeo.inspect(ref)
        assert failed.value.result is not None
        assert "manifest unknown" in failed.value.result.stderr.lower(), failed.value
    # no tag still names the deleted manifest; an empty repository may also be unknown
    res = skopeo.list_tags(base, check=False)
    if res.returncode == 0:
        assert json.loads(res.stdout)["Tags"] in ([], None)
    else:
        assert "name unknown" in res.stderr.lower() or "not found" in res.stderr.lower(), res.stderr


def test_pull_back_to_oci_layout_and_dir(
    live_registry: Any,
    skopeo: Skopeo,
    push_base: PushBase,
    busybox_layout: Layout,
    tmp_path: Path,
) -> None:
    repo, digest = push_base("skopeo-pull")
    ref = f"docker://{live_registry.host}/{repo}:v1"
    source = busybox_layout.manifest(LAYOUT_TAG)

    pulled_layout = Layout(tmp_path / "oci")
    assert skopeo.copy(ref, f"oci:{pulled_layout.path}:pulled") == digest
    assert pulled_layout.manifest_digest("pulled") == digest
    manifest = pulled_layout.manifest("pulled")
    assert layer_digests(manifest) == layer_digests(source)
    assert manifest["config"]["digest"] == source["config"]["digest"]
    pulled_layout.verify_blobs([manifest["config"]["digest"], *layer_digests(manifest)])

    pulled_dir = DirImage(tmp_path / "dir")
    skopeo.copy(ref, f"dir:{pulled_dir.path}")
    assert pulled_dir.manifest_bytes() == busybox_layout.blob(digest)
    pulled_dir.verify_blobs()
    for d in layer_digests(source):
        assert pulled_dir.blob(d) == busybox_layout.blob(d)
    assert pulled_dir.files()["bin/busybox"] == BUSYBOX.read_bytes()


@pytest.mark.usefixtures("auth_enforced")
def test_pull_without_credentials_is_unauthorized(
    live_registry: Any, skopeo: Skopeo, push_base: PushBase, tmp_path: Path
) -> None:
    """Anonymous (no credentials, anonymous pull off): inspect and copy fail, saying
    unauthorized, and nothing is written; with credentials the same pull works."""
    repo, digest = push_base("skopeo-anon")
    ref = f"docker://{live_registry.host}/{repo}:v1"
    pulled = tmp_path / "pulled"
    anonymous = skopeo.anonymous()
    for attempt in (lambda: anonymous.inspect(ref), lambda: anonymous.copy(ref, f"dir:{pulled}")):
        with pytest.raises(CommandFailed) as failed:
            attempt()
        assert failed.value.result is not None, failed.value
        assert_unauthorized(failed.value.result.stderr)
    assert not (pulled / "manifest.json").exists()
    assert skopeo.inspect(ref)["Digest"] == digest
