"""podman pull / push against a live registry (vfs storage, no daemon).

``podman run`` is not part of this: on this machine crun cannot start a
container (``setrlimit RLIMIT_NOFILE: Operation not permitted``; with
``--cgroups disabled``: "cgroups in hybrid mode not supported"); the content
is checked from the pushed layers instead."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    BUSYBOX,
    DOCKER_MANIFEST,
    MARKER_PATH,
    MARKER_TEXT,
    DirImage,
    Skopeo,
    StorageTool,
    assert_pull_refused,
    sha256_digest,
    unique_repo,
)


def image_digest(podman: StorageTool, ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()


def test_push_pull_roundtrip(
    live_registry: Any, podman: StorageTool, skopeo: Skopeo,
    push_base: Callable[..., tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    src_repo, base_digest = push_base("podman-src")
    src = f"{live_registry.host}/{src_repo}:v1"
    podman("pull", *podman.remote, "--signature-policy", podman.policy, f"docker://{src}")
    assert image_digest(podman, src) == base_digest

    dst = f"{live_registry.host}/{unique_repo('podman-dst')}"
    digestfile = tmp_path / f"digest-{uuid.uuid4().hex}"
    podman("push", *podman.remote, "--signature-policy", podman.policy,
           "--digestfile", str(digestfile), src, f"docker://{dst}:oci")  # fmt: skip
    pushed = digestfile.read_text().strip()
    # converted to Docker schema 2 on the way: a different manifest, same content
    podman("push", *podman.remote, "--signature-policy", podman.policy, "--format", "v2s2",
           "--digestfile", str(digestfile), src, f"docker://{dst}:docker")  # fmt: skip
    pushed_v2s2 = digestfile.read_text().strip()
    assert pushed_v2s2 != pushed

    podman("rmi", "--all", "--force")
    assert podman("images", "--quiet").stdout.strip() == ""
    for tag, want in (("oci", pushed), ("docker", pushed_v2s2)):
        podman("pull", *podman.remote, "--signature-policy", podman.policy,
               f"docker://{dst}:{tag}")  # fmt: skip
        # one image (the same config) now known under both manifests' digests
        repo_digests = json.loads(
            podman("image", "inspect", "--format", "{{json .RepoDigests}}", f"{dst}:{tag}").stdout
        )
        assert f"{dst}@{want}" in repo_digests
        raw = skopeo.raw(f"docker://{dst}:{tag}")
        assert sha256_digest(raw) == want
    assert json.loads(skopeo.raw(f"docker://{dst}:docker"))["mediaType"] == DOCKER_MANIFEST
    assert image_digest(podman, f"{dst}:oci") == pushed
    # both pulls are one image: the same config, hence the same image id
    ids = {podman("image", "inspect", "--format", "{{.Id}}", f"{dst}:{t}").stdout.strip()
           for t in ("oci", "docker")}  # fmt: skip
    assert len(ids) == 1

    for tag in ("oci", "docker"):
        image = DirImage(tmp_path / f"pulled-{tag}")
        skopeo.copy(f"docker://{dst}:{tag}", f"dir:{image.path}")
        image.verify_blobs()
        files = image.files()
        assert files["bin/busybox"] == BUSYBOX.read_bytes()
        assert files[MARKER_PATH].decode() == MARKER_TEXT


@pytest.mark.usefixtures("auth_enforced")
def test_pull_without_credentials_is_unauthorized(
    live_registry: Any, podman: StorageTool, push_base: Callable[..., tuple[str, str]]
) -> None:
    """podman pull with no credentials (anonymous pull off) fails, saying unauthorized,
    and stores no image."""
    repo, _ = push_base("podman-anon")
    assert_pull_refused(podman, f"docker://{live_registry.host}/{repo}:v1")
