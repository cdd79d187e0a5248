"""Plain helpers for the e2e tier (fixtures live in conftest.py, which imports
these; tests import them as ``from e2e_support import ...``).

* :func:`need` finds a client binary; a missing one fails the test under CI
  (``CI=true``) and skips it elsewhere, naming what is missing.
* :func:`run` runs a command with a timeout and, when it fails, raises
  :class:`CommandFailed` showing the command, its exit code, stdout and stderr.
* :class:`Skopeo` / :class:`StorageTool` wrap skopeo, buildah and podman with
  the per-test settings this machine needs, and the registry's credentials
  (``--creds``, ``--src-creds``, ``--dest-creds``); ``.anonymous()`` gives the
  same tool without them.
* :func:`assert_unauthorized` checks that a client refused access says so;
  :func:`assert_pull_refused` that buildah or podman cannot pull anonymously.
* :func:`build_busybox_layout` makes the base image (an OCI layout) with umoci.
* :class:`Layout` / :class:`DirImage` read images copied to ``oci:`` / ``dir:``
  and check that every blob's bytes match its digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

BUSYBOX = Path("/bin/busybox")
LAYOUT_TAG = "latest"
MARKER_PATH = "etc/hamn-e2e"
MARKER_TEXT = "hamn e2e base image\n"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


# --------------------------------------------------------------------------- tools


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere, saying what is missing."""
    if CI:
        pytest.fail(f"{what} (required when CI=true)", pytrace=False)
    pytest.skip(what)


def need(tool: str) -> str:
    """Absolute path of a client binary, or fail/skip (see :func:`missing`)."""
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} is not installed (not on PATH)")
    assert path is not None
    return path


class CommandFailed(AssertionError):
    """A command exited non-zero or timed out; the message has its output."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str] | None) -> None:
        super().__init__(message)
        self.result = result


def _describe(
    cmd: Sequence[str], rc: object, out: str | bytes | None, err: str | bytes | None
) -> str:
    def text(v: str | bytes | None) -> str:
        if v is None:
            return ""
        return v.decode(errors="replace") if isinstance(v, bytes) else v

    return (
        f"$ {shlex.join(cmd)}\nexit: {rc}\n"
        f"--- stdout ---\n{text(out)[-6000:]}\n--- stderr ---\n{text(err)[-6000:]}"
    )


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on a non-zero exit (with ``check``) or a timeout raise
    :class:`CommandFailed` showing the command, stdout and stderr."""
    argv = [os.fspath(c) for c in cmd]
    try:
        res = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(
            f"command timed out after {timeout}s\n"
            + _describe(argv, "timeout", e.stdout, e.stderr),
            None,
        ) from None
    if check and res.returncode != 0:
        raise CommandFailed(
            "command failed\n" + _describe(argv, res.returncode, res.stdout, res.stderr), res
        )
    return res


#: How each client words a refusal for missing credentials (lower case): containers/image
#: ("unauthorized: ...", "authentication required"), oras-py and hamn's CLI.
UNAUTHORIZED_WORDS = (
    "unauthorized",
    "authentication required",
    "401",
    "cannot respond to request for authentication",  # oras-py, with no credentials to offer
)


def assert_unauthorized(output: str) -> None:
    """``output`` (a failed client's stderr or error) says access was refused for want
    of credentials, not that the image is missing or the server broke."""
    text = output.lower()
    assert any(w in text for w in UNAUTHORIZED_WORDS), f"not an unauthorized failure:\n{output}"
    assert "manifest unknown" not in text and "not found" not in text, output


def busybox_bytes() -> bytes:
    """The static busybox binary the images are made of (or fail/skip)."""
    if not BUSYBOX.is_file():
        missing(f"{BUSYBOX} is missing (Debian package busybox-static)")
    return BUSYBOX.read_bytes()


def unique_repo(kind: str) -> str:
    """A repository name no other test (or earlier run) uses."""
    return f"e2e/{kind}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ content checks


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar_bytes(blob: bytes) -> bytes:
    """The uncompressed tar of a layer blob (gzip or plain)."""
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def layer_files(blob: bytes) -> dict[str, bytes]:
    """Regular files of a layer blob by path (no leading ``./`` or ``/``);
    whiteouts (``.wh.NAME``) are files too, so a test can look for them."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(layer_tar_bytes(blob)), mode="r:") as tf:
        for m in tf.getmembers():
            if m.isfile():
                f = tf.extractfile(m)
                assert f is not None
                out[m.name.removeprefix("./").lstrip("/")] = f.read()
    return out


@dataclass
class Layout:
    """An OCI image layout on disk (``oci:`` transport)."""

    path: Path

    def index(self) -> Any:
        return json.loads((self.path / "index.json").read_text())

    def blob(self, digest: str) -> bytes:
        algo, hexd = digest.split(":", 1)
        return (self.path / "blobs" / algo / hexd).read_bytes()

    def manifest_digest(self, tag: str) -> str:
        for d in self.index()["manifests"]:
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return str(d["digest"])
        raise KeyError(f"{tag} not in {self.path}/index.json")

    def manifest(self, tag: str) -> Any:
        return json.loads(self.blob(self.manifest_digest(tag)))

    def ref(self, tag: str) -> str:
        """The containers-image reference (skopeo, buildah, podman)."""
        return f"oci:{self.path}:{tag}"

    def image(self, tag: str) -> str:
        """The umoci ``--image`` argument."""
        return f"{self.path}:{tag}"

    def verify_blobs(self, digests: Sequence[str]) -> None:
        for d in digests:
            assert sha256_digest(self.blob(d)) == d, f"{self.path}: blob {d} has other content"


@dataclass
class DirImage:
    """An image copied with skopeo to the ``dir:`` transport."""

    path: Path

    def manifest_bytes(self) -> bytes:
        return (self.path / "manifest.json").read_bytes()

    def manifest(self) -> Any:
        return json.loads(self.manifest_bytes())

    def blob(self, digest: str) -> bytes:
        return (self.path / digest.split(":", 1)[1]).read_bytes()

    def verify_blobs(self) -> None:
        m = self.manifest()
        for d in [m["config"]["digest"], *(layer["digest"] for layer in m["layers"])]:
            assert sha256_digest(self.blob(d)) == d, f"{self.path}: blob {d} has other content"

    def files(self) -> dict[str, bytes]:
        """All regular files of all layers, later layers winning."""
        out: dict[str, bytes] = {}
        for layer in self.manifest()["layers"]:
            out.update(layer_files(self.blob(layer["digest"])))
        return out


# ------------------------------------------------------------------ client wrappers


def creds_args(flag: str, creds: str | None, ref: str = "docker://") -> list[str]:
    """``[flag, creds]`` for a registry reference (``docker://``), else nothing."""
    return [flag, creds] if creds and ref.startswith("docker://") else []


@dataclass
class Skopeo:
    env: dict[str, str]
    binary: str
    #: ``user:password`` for the registry, or None to go anonymous.
    creds: str | None = None

    def anonymous(self) -> Skopeo:
        """The same skopeo without credentials."""
        return replace(self, creds=None)

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.binary, "--policy", self.env["E2E_SIGNATURE_POLICY"], *args],
            timeout=timeout,
            check=check,
            env=self.env,
        )

    def copy(self, src: str, dst: str, *extra: str, preserve_digests: bool = True) -> str:
        """``skopeo copy`` without TLS on either side; returns the written manifest digest.

        ``--preserve-digests`` (the default here) stops skopeo from swapping a
        layer for another compression of the same content that its blob-info
        cache (/var/lib/containers/cache, shared by every run on the machine)
        saw in the registry, which would rewrite the manifest and change its
        digest depending on what ran before. Pass ``preserve_digests=False``
        for a copy that must convert the manifest (e.g. to docker-archive).
        """
        digestfile = Path(self.env["E2E_TMP"]) / f"digest-{uuid.uuid4().hex}"
        flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        flags += creds_args("--src-creds", self.creds, src)
        flags += creds_args("--dest-creds", self.creds, dst)
        if preserve_digests:
            flags.append("--preserve-digests")
        self("copy", *flags, "--digestfile", str(digestfile), *extra, src, dst)
        return digestfile.read_text().strip()

    def inspect(self, ref: str, *extra: str) -> Any:
        creds = creds_args("--creds", self.creds, ref)
        return json.loads(self("inspect", "--tls-verify=false", *creds, *extra, ref).stdout)

    def list_tags(self, ref: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``skopeo list-tags`` of a ``docker://`` repository."""
        creds = creds_args("--creds", self.creds, ref)
        return self("list-tags", "--tls-verify=false", *creds, ref, check=check)

    def delete(self, ref: str) -> None:
        self("delete", "--tls-verify=false", *creds_args("--creds", self.creds, ref), ref)

    def raw(self, ref: str, *extra: str) -> bytes:
        """``skopeo inspect --raw`` output, exactly as the registry served it."""
        res = subprocess.run(
            [
                self.binary,
                "--policy",
                self.env["E2E_SIGNATURE_POLICY"],
                "inspect",
                "--raw",
                "--tls-verify=false",
                *creds_args("--creds", self.creds, ref),
                *extra,
                ref,
            ],
            capture_output=True,
            timeout=120,
            env=self.env,
            check=False,
        )
        if res.returncode != 0:
            raise CommandFailed(
                "skopeo inspect --raw failed\n"
                + _describe(res.args, res.returncode, res.stdout, res.stderr),
                None,
            )
        return res.stdout


@dataclass
class StorageTool:
    """buildah or podman bound to a private vfs storage root."""

    binary: str
    global_args: list[str]
    env: dict[str, str]
    #: ``user:password`` for the registry, or None to go anonymous.
    creds: str | None = None

    def anonymous(self) -> StorageTool:
        """The same tool (and storage) without credentials."""
        return replace(self, creds=None)

    @property
    def remote(self) -> list[str]:
        """The options of a command that talks to the registry: plain http, credentials."""
        return ["--tls-verify=false", *creds_args("--creds", self.creds)]

    def __call__(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.binary, *self.global_args, *args], timeout=timeout, check=check, env=self.env
        )

    @property
    def policy(self) -> str:
        return self.env["E2E_SIGNATURE_POLICY"]


def assert_pull_refused(tool: StorageTool, ref: str) -> None:
    """``pull`` of ``ref`` by buildah or podman with no credentials fails, saying
    unauthorized, and stores no image."""
    anonymous = tool.anonymous()
    res = anonymous("pull", *anonymous.remote, "--signature-policy", tool.policy, ref, check=False)
    assert res.returncode != 0, res
    assert_unauthorized(res.stderr)
    assert tool("images", "--quiet").stdout.strip() == ""


# --------------------------------------------------------------------- base image


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory all xdist workers of this run share (the run's base temp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_busybox_layout(dest: Path, env: dict[str, str]) -> None:
    """An OCI layout at ``dest`` (tag ``latest``): /bin/busybox and a marker file
    in one layer, a config whose command runs busybox. umoci only, no network.

    The layer is made with ``umoci unpack`` + ``repack``: ``umoci insert`` of
    umoci 0.4.7 writes a tar with no end-of-archive blocks (and no padding
    after the last file), which stricter tar readers refuse.
    """
    umoci = need("umoci")
    busybox_bytes()
    work = dest.parent / f"{dest.name}.build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    layout = work / "layout"
    bundle = work / "bundle"
    run([umoci, "init", "--layout", layout], env=env)
    run([umoci, "new", "--image", f"{layout}:base"], env=env)
    run([umoci, "unpack", "--image", f"{layout}:base", bundle], env=env)
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(exist_ok=True)
    (rootfs / "etc").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / MARKER_PATH).write_text(MARKER_TEXT)
    run([umoci, "repack", "--image", f"{layout}:{LAYOUT_TAG}", bundle], env=env)
    run(
        [
            umoci, "config", "--image", f"{layout}:{LAYOUT_TAG}",
            "--config.cmd", "/bin/busybox", "--config.cmd", "echo", "--config.cmd", "hello",
            "--config.label", "org.opencontainers.image.title=hamn-e2e-busybox",
        ],
        env=env,
    )  # fmt: skip
    run([umoci, "rm", "--image", f"{layout}:base"], env=env)
    run([umoci, "gc", "--layout", layout], env=env)
    # umoci writes blobs 0600; the shared copy is for every worker to read
    for p in layout.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    layout.rename(dest)
    shutil.rmtree(work, ignore_errors=True)
