"""``hamn repository ...`` and ``hamn manifest list-metadata`` as a user runs them.

The real CLI (``python -m hamn``, a subprocess) against a live server: each
command, its az-shaped output in several ``-o`` formats, ``--query``, errors
(an ERROR line and a non-zero exit), confirmation prompts, and the seed's
untagged-manifest cleanup pipeline run verbatim through bash and xargs.

Content is pushed with plain httpx (a config blob, a layer, a manifest) into
the default registry ``local``, addressed by path (``/v2/local/<repo>/...``).
Everything authenticates as the server's owner: httpx with Basic, the CLI with
``HAMN_USERNAME`` / ``HAMN_PASSWORD`` (or ``-u``/``-p``) as a script would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from e2e_support import assert_unauthorized

REGISTRY = "local"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
#: The CLI's own environment variables: none leak in from the caller's shell.
CLI_ENV = ("HAMN_OUTPUT", "HAMN_SERVER", "HAMN_REGISTRY", "HAMN_USERNAME", "HAMN_PASSWORD")

MANIFEST_KEYS = {
    "digest",
    "imageSize",
    "createdTime",
    "lastUpdateTime",
    "architecture",
    "os",
    "mediaType",
    "configMediaType",
    "tags",
    "changeableAttributes",
}
TAG_KEYS = {"name", "digest", "createdTime", "lastUpdateTime", "signed", "changeableAttributes"}


# ----------------------------------------------------------------------- helpers


def unique(prefix: str = "cli") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(registry: Any, name: str, *tags: str) -> str:
    """Push a one-layer image to ``/v2/<name>`` of a LiveRegistry (tagged, or by digest),
    as its owner; return its digest."""
    with httpx.Client(base_url=registry.url, auth=registry.auth, timeout=30) as http:

        def blob(data: bytes) -> dict[str, Any]:
            digest = _digest(data)
            r = http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
            assert r.status_code == 201, r.text
            return {"digest": digest, "size": len(data)}

        config = json.dumps(
            {
                "architecture": "arm64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
                "nonce": uuid.uuid4().hex,
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **blob(config)},
                "layers": [{"mediaType": OCI_LAYER, **blob(os.urandom(64))}],
            }
        ).encode()
        digest = _digest(manifest)
        for ref in tags or (digest,):
            r = http.put(
                f"/v2/{name}/manifests/{ref}",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert r.status_code == 201, r.text
        return digest


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)


@dataclass
class Hamn:
    """Runs ``hamn`` against one server, with stdin not a terminal unless a pty is given,
    authenticated by ``HAMN_USERNAME`` / ``HAMN_PASSWORD`` (none when ``username`` is empty)."""

    server: str
    username: str = ""
    password: str = ""

    @classmethod
    def on(cls, registry: Any) -> Hamn:
        """The CLI for a LiveRegistry, as its owner."""
        return cls(registry.url, registry.username, registry.password)

    def anonymous(self) -> Hamn:
        """The same CLI with no credentials at all."""
        return replace(self, username="", password="")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
        env["HAMN_SERVER"] = self.server
        if self.username:
            env.update(HAMN_USERNAME=self.username, HAMN_PASSWORD=self.password)
        env.update(extra)
        return env

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "hamn", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env(**(env or {})),
            timeout=60,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def json(self, *args: str) -> Any:
        return self(*args).json()

    def with_terminal(self, *args: str, answer: str) -> Result:
        """Run with a pseudo-terminal on stdin and type ``answer`` into it."""
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hamn", *args],
                stdin=secondary,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env(),
            )
            os.close(secondary)
            os.write(primary, answer.encode() + b"\n")
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(primary)
        return Result(proc.returncode, out, err)


def assert_error(result: Result, *fragments: str, code: int = 1) -> None:
    """A failure: ``code``, nothing on stdout, an ``ERROR:`` line with every fragment."""
    assert result.code == code, result
    assert result.out == "", result
    errors = [line for line in result.err.splitlines() if line.startswith("ERROR: ")]
    assert errors, result.err
    for fragment in fragments:
        assert fragment in result.err, result.err
    assert "Traceback" not in result.err


@pytest.fixture
def hamn(live_registry: Any) -> Hamn:
    return Hamn.on(live_registry)


@pytest.fixture
def registry(live_registry: Any) -> Any:
    """The live registry the CLI talks to (push_image takes it)."""
    return live_registry


# ---------------------------------------------------------------------- repository list


def test_repository_list(hamn: Hamn, registry: Any) -> None:
    prefix = unique()
    push_image(registry, f"{REGISTRY}/{prefix}-a", "v1")
    push_image(registry, f"{REGISTRY}/{prefix}/b", "v1")
    names = hamn.json("repository", "list", "-n", REGISTRY)
    assert {f"{prefix}-a", f"{prefix}/b"} <= set(names)
    assert names == sorted(names)

    mine = hamn(
        "repository",
        "list",
        "-n",
        REGISTRY,
        "--query",
        f"[?starts_with(@, '{prefix}')]",
        "-o",
        "tsv",
    )
    assert mine.code == 0 and mine.out == f"{prefix}-a\n{prefix}/b\n", mine

    table = hamn("repository", "list", "-n", REGISTRY, "-o", "table", "--top", "2")
    lines = table.out.splitlines()
    assert lines[0] == "Result" and set(lines[1]) == {"-"} and len(lines) == 4, table


# ---------------------------------------------------------------------- show-tags


def test_show_tags(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    push_image(registry, f"{REGISTRY}/{repo}", "v1")
    time.sleep(0.01)
    push_image(registry, f"{REGISTRY}/{repo}", "v2")
    time.sleep(0.01)
    push_image(registry, f"{REGISTRY}/{repo}", "latest")
    base = ("repository", "show-tags", "-n", REGISTRY, "--repository", repo)

    assert hamn.json(*base) == ["latest", "v1", "v2"]
    assert hamn.json(*base, "--orderby", "time_desc", "--top", "2") == ["latest", "v2"]
    assert hamn(*base, "--orderby", "time_asc", "-o", "tsv").out == "v1\nv2\nlatest\n"

    detail = hamn.json(*base, "--detail")
    assert [t["name"] for t in detail] == ["latest", "v1", "v2"]
    assert set(detail[0]) == TAG_KEYS
    table = hamn(*base, "--detail", "-o", "table", "--query", "[].{Tag: name, Signed: signed}")
    assert table.out.splitlines() == ["Tag     Signed", "------  ------"] + [
        f"{tag:<6}  False" for tag in ("latest", "v1", "v2")
    ], table


# ---------------------------------------------------------------------- show-manifests


def test_show_manifests(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    tagged = push_image(registry, f"{REGISTRY}/{repo}", "v1", "v2")
    untagged = push_image(registry, f"{REGISTRY}/{repo}")
    base = ("repository", "show-manifests", "-n", REGISTRY, "--repository", repo)

    manifests = {m["digest"]: m for m in hamn.json(*base)}
    assert set(manifests) == {tagged, untagged}
    assert all(set(m) == {"digest", "tags", "timestamp"} for m in manifests.values())
    assert manifests[tagged]["tags"] == ["v1", "v2"]
    assert manifests[untagged]["tags"] == []

    seed = hamn(*base, "--query", "[?tags[0]==null].digest", "-o", "tsv")
    assert seed.code == 0 and seed.out == f"{untagged}\n", seed

    detail = hamn.json(*base, "--detail", "--orderby", "time_desc")
    assert [m["digest"] for m in detail] == [untagged, tagged]
    assert set(detail[0]) >= MANIFEST_KEYS

    table = hamn(*base, "-o", "table")
    lines = table.out.splitlines()
    assert lines[0].split() == ["Digest", "Timestamp"], table
    assert len(lines) == 4


# ---------------------------------------------------------------------- show


def test_show_repository_tag_and_manifest(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    digest = push_image(registry, f"{REGISTRY}/{repo}", "v1")
    base = ("repository", "show", "-n", REGISTRY)

    info = hamn.json(*base, "--repository", repo)
    assert info["imageName"] == repo
    assert (info["manifestCount"], info["tagCount"]) == (1, 1)
    assert info["registry"].split(".")[0] == REGISTRY

    tag = hamn.json(*base, "--image", f"{repo}:v1")
    assert set(tag) == TAG_KEYS and tag["digest"] == digest and tag["name"] == "v1"

    shown = hamn(*base, "-t", f"{repo}@{digest}", "-o", "yaml")
    manifest = yaml.safe_load(shown.out)
    assert manifest["digest"] == digest and manifest["tags"] == ["v1"], shown
    assert manifest["architecture"] == "arm64" and manifest["os"] == "linux"

    count = hamn(*base, "--repository", repo, "--query", "tagCount", "-o", "tsv")
    assert count.out == "1\n", count


# ---------------------------------------------------------------------- untag, delete


def test_untag_keeps_the_manifest(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    digest = push_image(registry, f"{REGISTRY}/{repo}", "v1", "v2")
    result = hamn("repository", "untag", "-n", REGISTRY, "--image", f"{repo}:v1")
    assert (result.code, result.out) == (0, ""), result
    manifests = hamn.json("repository", "show-manifests", "-n", REGISTRY, "--repository", repo)
    assert manifests[0]["digest"] == digest and manifests[0]["tags"] == ["v2"]


def test_delete_image_by_tag_deletes_the_manifest_and_all_its_tags(
    hamn: Hamn, registry: Any
) -> None:
    repo = unique()
    doomed = push_image(registry, f"{REGISTRY}/{repo}", "v1", "v2")
    push_image(registry, f"{REGISTRY}/{repo}", "v3")
    result = hamn("repository", "delete", "-n", REGISTRY, "--image", f"{repo}:v1", "--yes")
    assert (result.code, result.out) == (0, ""), result
    assert result.err == (
        f"WARNING: This operation will delete the manifest '{doomed}' and all the "
        f"following images: '{repo}:v1', '{repo}:v2'\n"
    )
    listed = hamn("repository", "show-tags", "-n", REGISTRY, "--repository", repo, "-o", "tsv")
    assert listed.out == "v3\n", listed


def test_delete_repository(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    digest = push_image(registry, f"{REGISTRY}/{repo}", "v1")
    result = hamn("repository", "delete", "-n", REGISTRY, "--repository", repo, "-y")
    body = result.json()
    assert body["manifestsDeleted"] == [digest] and body["tagsDeleted"] == ["v1"]
    assert_error(
        hamn("repository", "show", "-n", REGISTRY, "--repository", repo, "--only-show-errors"),
        f"Repository '{repo}' was not found in registry '{REGISTRY}'",
        "hamn repository list -n local",
    )


def test_delete_confirms_on_a_terminal_and_refuses_without_one(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    digest = push_image(registry, f"{REGISTRY}/{repo}", "v1")
    args = ("repository", "delete", "-n", REGISTRY, "-t", f"{repo}@{digest}")

    assert_error(hamn(*args), "no tty", "--yes")
    no = hamn.with_terminal(*args, answer="n")
    assert no.code == 1 and "Are you sure you want to continue? (y/n)" in no.err, no
    assert "ERROR: Operation cancelled." in no.err
    assert hamn.json("repository", "show-tags", "-n", REGISTRY, "--repository", repo) == ["v1"]

    yes = hamn.with_terminal(*args, answer="y")
    assert yes.code == 0, yes
    assert hamn.json("repository", "show-manifests", "-n", REGISTRY, "--repository", repo) == []


# ---------------------------------------------------------------------- manifest list-metadata


def test_manifest_list_metadata(hamn: Hamn, registry: Any, live_registry: Any) -> None:
    repo = unique()
    tagged = push_image(registry, f"{REGISTRY}/team/{repo}", "v1")
    untagged = push_image(registry, f"{REGISTRY}/team/{repo}")

    entries = hamn.json("manifest", "list-metadata", "-r", REGISTRY, "-n", f"team/{repo}")
    assert {e["digest"] for e in entries} == {tagged, untagged}
    assert all(set(e) >= MANIFEST_KEYS for e in entries)
    assert {e["imageSize"] > 0 for e in entries} == {True}

    by_login_server = hamn(
        "manifest",
        "list-metadata",
        f"{REGISTRY}.localhost/team/{repo}",
        "--query",
        "[?tags[0]==null].digest",
        "-o",
        "tsv",
    )
    assert by_login_server.out == f"{untagged}\n", by_login_server

    by_path = hamn(
        "manifest",
        "list-metadata",
        f"{live_registry.host}/{REGISTRY}/team/{repo}",
        "--query",
        "[].{d: digest, t: join(',', tags)}",
        "-o",
        "table",
    )
    assert by_path.code == 0 and f"{tagged}  v1" in by_path.out.splitlines(), by_path


# ---------------------------------------------------------------------- errors


def test_errors_say_what_is_wrong_and_what_to_do(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    push_image(registry, f"{REGISTRY}/{repo}", "v1")

    assert_error(
        hamn("repository", "show-tags", "-n", REGISTRY, "--repository", unique()),
        "was not found in registry 'local'",
        "NAME_UNKNOWN",
    )
    assert_error(
        hamn("repository", "show", "-n", REGISTRY, "--image", f"{repo}:nope"),
        f"Image '{repo}:nope' was not found",
        f"hamn repository show-tags -n local --repository {repo}",
    )
    missing = "sha256:" + "0" * 64
    assert_error(
        hamn("repository", "delete", "-n", REGISTRY, "-t", f"{repo}@{missing}", "-y"),
        f"Image '{repo}@{missing}' was not found",
    )
    assert_error(
        hamn("repository", "list", "-n", "nosuchregistry"),
        "Registry 'nosuchregistry' was not found",
    )
    assert_error(
        hamn("manifest", "list-metadata", "-r", "nosuchregistry", "-n", repo),
        "was not found in registry 'nosuchregistry'",
    )
    assert_error(
        hamn("repository", "list", "-n", REGISTRY, "--server", "http://127.0.0.1:9"),
        "Cannot reach the hamn server at http://127.0.0.1:9",
        "HAMN_SERVER",
    )
    assert_error(hamn("repository", "show", "-n", REGISTRY), "exactly one of", code=2)


# ---------------------------------------------------------------------- global arguments


def test_debug_verbose_and_default_output(hamn: Hamn, registry: Any) -> None:
    repo = unique()
    push_image(registry, f"{REGISTRY}/{repo}", "v1")
    args = ("repository", "show-tags", "-n", REGISTRY, "--repository", repo)

    # The owner's credentials given as -u/-p (and nothing in the environment).
    debug = hamn.anonymous()(*args, "--debug", "-u", hamn.username, "-p", hamn.password)
    assert debug.code == 0 and json.loads(debug.out) == ["v1"], debug
    assert "DEBUG: Request URL: " in debug.err and f"/acr/v1/local/{repo}/_tags" in debug.err
    assert "'authorization': 'REDACTED'" in debug.err
    basic = base64.b64encode(f"{hamn.username}:{hamn.password}".encode()).decode()
    assert hamn.password not in debug.err and basic not in debug.err

    verbose = hamn(*args, "--verbose", "-o", "none")
    assert verbose.code == 0 and verbose.out == "", verbose
    assert "INFO: GET " in verbose.err and "INFO: Command ran in" in verbose.err

    from_env = hamn(*args, env={"HAMN_OUTPUT": "tsv", "HAMN_REGISTRY": REGISTRY})
    assert from_env.out == "v1\n", from_env
    assert hamn(*args, "-o", "json", env={"HAMN_OUTPUT": "tsv"}).json() == ["v1"]


# ---------------------------------------------------------------------- the seed's pipeline


@pytest.fixture
def my_registry(start_server: Callable[..., Any]) -> Any:
    """A server whose default registry is ``myRegistry``, as the seed names it."""
    return start_server("--default-registry", "myRegistry", "--workers", "1")


SEED_CLEANUP = (
    'hamn repository show-manifests -n myRegistry --repository myRepository --query "[?tags[0]==null].digest" -o tsv'  # noqa: E501
    " | xargs -I% hamn repository delete -n myRegistry -t myRepository@% -y"
)


def test_seed_pipeline_deletes_untagged_manifests(my_registry: Any, tmp_path: Path) -> None:
    kept = push_image(my_registry, "myRegistry/myrepository", "v1")
    untagged = {push_image(my_registry, "myRegistry/myrepository") for _ in range(2)}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "hamn"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hamn "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env.update(Hamn.on(my_registry).env(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"))
    bash = shutil.which("bash")
    assert bash, "bash is needed to run the seed's pipeline"

    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bash, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )

    cleanup = sh(SEED_CLEANUP)
    assert cleanup.returncode == 0, cleanup
    for digest in untagged:
        assert f"WARNING: This operation will delete the manifest '{digest}'\n" in cleanup.stderr

    listed = sh("hamn repository list -n myRegistry")
    assert listed.returncode == 0 and json.loads(listed.stdout) == ["myrepository"], listed
    left = sh(
        "hamn repository show-manifests -n myRegistry --repository myRepository "
        "--query '[].digest' -o tsv"
    )
    assert left.stdout == f"{kept}\n", left


@pytest.mark.usefixtures("auth_enforced")
def test_without_credentials_the_cli_is_refused(hamn: Hamn, registry: Any) -> None:
    """No -u/-p, no HAMN_USERNAME/HAMN_PASSWORD, no session: an ERROR saying unauthorized
    and a non-zero exit, never an empty listing."""
    repo = unique()
    push_image(registry, f"{REGISTRY}/{repo}", "v1")
    anonymous = hamn.anonymous()
    for args in (
        ("repository", "show-tags", "-n", REGISTRY, "--repository", repo),
        ("repository", "list", "-n", REGISTRY),
    ):
        result = anonymous(*args, env={"XDG_CONFIG_HOME": "/nonexistent"})
        assert_error(result)
        assert_unauthorized(result.err)
    assert hamn.json("repository", "show-tags", "-n", REGISTRY, "--repository", repo) == ["v1"]
