"""buildah against a live registry: build FROM scratch, push, remove, pull,
run; a two-platform manifest list pushed with ``manifest push --all``."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    BUSYBOX,
    DOCKER_LIST,
    OCI_INDEX,
    DirImage,
    Skopeo,
    StorageTool,
    assert_pull_refused,
    busybox_bytes,
    creds_args,
    sha256_digest,
    unique_repo,
)

CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY marker /etc/hamn-buildah
CMD ["/bin/busybox", "cat", "/etc/hamn-buildah"]
"""


def make_context(tmp_path: Path, marker: str) -> Path:
    ctx = tmp_path / "context"
    ctx.mkdir()
    (ctx / "busybox").write_bytes(busybox_bytes())
    (ctx / "busybox").chmod(0o755)
    (ctx / "marker").write_text(marker)
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    return ctx


def build(buildah: StorageTool, ctx: Path, name: str, *extra: str) -> str:
    """``buildah build`` (chroot isolation, no network); returns the image id."""
    iidfile = ctx.parent / f"iid-{uuid.uuid4().hex}"
    buildah("build", "--isolation", "chroot", "--iidfile", str(iidfile),
            "-f", str(ctx / "Containerfile"), "-t", name, *extra, str(ctx))  # fmt: skip
    return iidfile.read_text().strip()


def push(buildah: StorageTool, src: str, dest: str, tmp_path: Path) -> str:
    """``buildah push`` to a registry; returns the pushed manifest digest."""
    digestfile = tmp_path / f"digest-{uuid.uuid4().hex}"
    buildah("push", *buildah.remote, "--signature-policy", buildah.policy,
            "--digestfile", str(digestfile), src, dest)  # fmt: skip
    return digestfile.read_text().strip()


def test_build_push_pull_run(
    live_registry: Any, buildah: StorageTool, skopeo: Skopeo, tmp_path: Path
) -> None:
    marker = f"built by buildah {uuid.uuid4()}\n"
    ctx = make_context(tmp_path, marker)
    local = f"localhost/e2e-build-{uuid.uuid4().hex[:8]}:1"
    build(buildah, ctx, local)
    repo = unique_repo("buildah")
    remote = f"{live_registry.host}/{repo}:1"

    pushed = push(buildah, local, f"docker://{remote}", tmp_path)
    assert skopeo.inspect(f"docker://{remote}")["Digest"] == pushed

    # forget every local image, then pull it back from the registry
    buildah("rmi", "--all", "--force")
    assert buildah("images", "--quiet").stdout.strip() == ""
    buildah("pull", *buildah.remote, "--signature-policy", buildah.policy,
            f"docker://{remote}")  # fmt: skip
    pulled = buildah("inspect", "--type", "image", "--format", "{{.FromImageDigest}}", remote)
    assert pulled.stdout.strip() == pushed

    ctr = buildah("from", "--pull=never", remote).stdout.strip().splitlines()[-1]
    try:
        out = buildah("run", "--isolation", "chroot", ctr, "--",
                      "/bin/busybox", "sha256sum", "/bin/busybox").stdout  # fmt: skip
        assert out.split()[0] == hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
        out = buildah("run", "--isolation", "chroot", ctr, "--",
                      "/bin/busybox", "cat", "/etc/hamn-buildah").stdout  # fmt: skip
        assert out == marker
    finally:
        buildah("rm", ctr, check=False)

    # the layers in the registry hold the same files, whatever ran above
    image = DirImage(tmp_path / "pulled")
    assert skopeo.copy(f"docker://{remote}", f"dir:{image.path}") == pushed
    image.verify_blobs()
    files = image.files()
    assert files["bin/busybox"] == BUSYBOX.read_bytes()
    assert files["etc/hamn-buildah"].decode() == marker


def test_manifest_list_push_all(
    live_registry: Any, buildah: StorageTool, skopeo: Skopeo, tmp_path: Path
) -> None:
    ctx = make_context(tmp_path, "multi-arch\n")
    tag = uuid.uuid4().hex[:8]
    amd64 = f"localhost/e2e-amd64-{tag}:1"
    arm64 = f"localhost/e2e-arm64-{tag}:1"
    # FROM scratch + COPY runs nothing, so a foreign architecture needs no emulator
    build(buildah, ctx, amd64, "--arch", "amd64", "--os", "linux")
    build(buildah, ctx, arm64, "--arch", "arm64", "--os", "linux")
    repo = unique_repo("buildah-list")
    base = f"{live_registry.host}/{repo}"
    # one member comes from the registry (its digest must survive), one from local storage
    arm64_digest = push(buildah, arm64, f"docker://{base}:arm64", tmp_path)
    lst = f"localhost/e2e-list-{tag}"
    buildah("manifest", "create", lst)
    buildah("manifest", "add", lst, f"containers-storage:{amd64}")
    buildah("manifest", "add", *buildah.remote, lst, f"docker://{base}:arm64")

    digestfile = tmp_path / "list-digest"
    buildah("manifest", "push", "--all", *buildah.remote,
            "--signature-policy", buildah.policy, "--digestfile", str(digestfile),
            lst, f"docker://{base}:multi")  # fmt: skip
    pushed = digestfile.read_text().strip()

    raw = skopeo.raw(f"docker://{base}:multi")
    assert sha256_digest(raw) == pushed
    index = json.loads(raw)
    assert index["mediaType"] in (OCI_INDEX, DOCKER_LIST)
    by_arch = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert sorted(by_arch) == ["amd64", "arm64"]
    assert {m["platform"]["os"] for m in index["manifests"]} == {"linux"}
    assert by_arch["arm64"]["digest"] == arm64_digest
    for arch, desc in by_arch.items():
        child = skopeo.raw(f"docker://{base}@{desc['digest']}")
        assert sha256_digest(child) == desc["digest"]
        assert len(child) == desc["size"]
        child_manifest = json.loads(child)
        assert child_manifest["mediaType"] == desc["mediaType"]
        config = json.loads(skopeo.raw(f"docker://{base}@{desc['digest']}", "--config"))
        assert config["architecture"] == arch
        picked = json.loads(
            skopeo("--override-arch", arch, "--override-os", "linux", "inspect",
                   "--tls-verify=false", *creds_args("--creds", skopeo.creds),
                   f"docker://{base}:multi").stdout
        )  # fmt: skip
        # skopeo resolves the list to this platform's image (Digest names the list itself)
        assert picked["Digest"] == pushed
        assert picked["Architecture"] == arch
        assert picked["Layers"] == [ly["digest"] for ly in child_manifest["layers"]]

    tags = json.loads(skopeo.list_tags(f"docker://{base}").stdout)
    assert sorted(tags["Tags"]) == ["arm64", "multi"]


@pytest.mark.usefixtures("auth_enforced")
def test_pull_without_credentials_is_unauthorized(
    live_registry: Any, buildah: StorageTool, push_base: Callable[..., tuple[str, str]]
) -> None:
    """buildah pull with no credentials (anonymous pull off) fails, saying unauthorized,
    and stores no image."""
    repo, _ = push_base("buildah-anon")
    assert_pull_refused(buildah, f"docker://{live_registry.host}/{repo}:v1")
