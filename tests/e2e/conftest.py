"""Fixtures for the e2e tier: real clients (skopeo, buildah, podman, umoci,
oras) against ``live_registry`` (tests/conftest.py). Plain helpers are in
e2e_support.py.

* ``client_env`` isolates the clients from the host's containers config: a
  permissive signature policy file, no unqualified-search registries, an empty
  auth file, podman settings that need neither systemd nor journald.
* ``busybox_layout`` builds, once per run (shared by the xdist workers through
  a file lock), an OCI image layout holding ``/bin/busybox`` from the
  busybox-static package, made with umoci and no network.
* ``skopeo`` runs skopeo with that policy; ``buildah`` / ``podman`` give each
  test its own vfs storage root, so a test can remove "all local images".
  All three authenticate as the registry's owner (``live_registry.creds``); the
  auth file stays empty, so ``.anonymous()`` really has no credentials.
* ``auth_enforced`` skips a test about anonymous access on a server that has no
  authentication at all (an external registry without credentials).

Registries are plain http: every client command gets its own
``--tls-verify=false`` (skopeo copy: ``--src-tls-verify=false
--dest-tls-verify=false``); nothing in /etc/containers is read or changed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    LAYOUT_TAG,
    Layout,
    Skopeo,
    StorageTool,
    build_busybox_layout,
    need,
    shared_dir,
    unique_repo,
)


@pytest.fixture(scope="session")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the containers tools, independent of the host's config."""
    d = tmp_path_factory.mktemp("containers-config")
    policy = d / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    (d / "registries.conf").write_text("unqualified-search-registries = []\n")
    (d / "auth.json").write_text("{}")
    (d / "containers.conf").write_text(
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_REGISTRIES_CONF": str(d / "registries.conf"),
        "CONTAINERS_CONF": str(d / "containers.conf"),
        "REGISTRY_AUTH_FILE": str(d / "auth.json"),
        "E2E_SIGNATURE_POLICY": str(policy),
    }


@pytest.fixture
def skopeo(client_env: dict[str, str], tmp_path: Path, live_registry: Any) -> Skopeo:
    return Skopeo({**client_env, "E2E_TMP": str(tmp_path)}, need("skopeo"), live_registry.creds)


@pytest.fixture
def auth_enforced(live_registry: Any) -> None:
    """Skip on a server without authentication (no token endpoint: an external
    registry such as Distribution, or hamn before authentication was wired)."""
    if httpx.get(f"{live_registry.url}/oauth2/token", timeout=10).status_code == 404:
        pytest.skip(f"{live_registry.host} has no token endpoint: authentication is off")


@pytest.fixture
def buildah(client_env: dict[str, str], tmp_path: Path, live_registry: Any) -> StorageTool:
    """buildah with its own vfs storage for this test."""
    binary = need("buildah")
    store = tmp_path / "buildah-storage"
    return StorageTool(
        binary,
        ["--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", "vfs"],
        {**client_env, "TMPDIR": str(tmp_path)},
        live_registry.creds,
    )


@pytest.fixture
def podman(client_env: dict[str, str], tmp_path: Path, live_registry: Any) -> Iterator[StorageTool]:
    """podman with its own vfs storage and runtime dirs, no systemd, no journald.

    podman refuses a runroot longer than 50 characters, so the runtime dirs
    live in a short directory under /tmp, removed afterwards.
    """
    binary = need("podman")
    short = Path(tempfile.mkdtemp(prefix="hamn-pd-", dir="/tmp"))
    try:
        yield StorageTool(
            binary,
            ["--root", str(tmp_path / "podman-storage"), "--runroot", str(short / "run"),
             "--tmpdir", str(short / "tmp"), "--storage-driver", "vfs",
             "--cgroup-manager", "cgroupfs", "--events-backend", "file"],
            {**client_env, "TMPDIR": str(tmp_path)},
            live_registry.creds,
        )  # fmt: skip
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory, client_env: dict[str, str]) -> Layout:
    """The base image as an OCI layout (tag ``latest``), built once per run.

    Tests only read it (``oci:<path>:latest``); a test that changes an image
    copies it first.
    """
    root = shared_dir(tmp_path_factory)
    dest = root / "e2e-busybox-oci"
    with open(root / "e2e-busybox-oci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (dest / "index.json").is_file():
                build_busybox_layout(dest, client_env)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    layout = Layout(dest)
    m = layout.manifest(LAYOUT_TAG)
    layout.verify_blobs([m["config"]["digest"], *(ly["digest"] for ly in m["layers"])])
    return layout


@pytest.fixture
def push_base(
    live_registry: Any, busybox_layout: Layout, skopeo: Skopeo
) -> Callable[..., tuple[str, str]]:
    """``push_base(kind, tag="v1")`` copies the base image to a fresh repository
    with skopeo and returns ``(repo, manifest digest)``."""

    def push(kind: str, tag: str = "v1") -> tuple[str, str]:
        repo = unique_repo(kind)
        digest = skopeo.copy(
            busybox_layout.ref(LAYOUT_TAG), f"docker://{live_registry.host}/{repo}:{tag}"
        )
        assert digest == busybox_layout.manifest_digest(LAYOUT_TAG)
        return repo, digest

    return push
