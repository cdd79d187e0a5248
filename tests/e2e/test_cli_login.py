"""Signing in as a user does, against a live server with authentication on.

``hamn auth login`` then a command with no credentials on its command line;
``hamn login`` then skopeo pushing with nothing but the auth file it wrote;
``docker-credential-hamn get``; and ``hamn kube-secret`` whose credential skopeo
uses. The CLI runs as a subprocess (``python -m hamn``) with HOME, the XDG dirs
and docker's and podman's settings in temp dirs: the real user's files are
never read or written.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from e2e_support import LAYOUT_TAG, Layout, Skopeo, unique_repo

REGISTRY = "local"
NULL_GUID = "00000000-0000-0000-0000-000000000000"

pytestmark = pytest.mark.usefixtures("auth_enforced")


@pytest.fixture
def user_env(tmp_path: Path, client_env: dict[str, str]) -> dict[str, str]:
    """An environment whose config, runtime and docker dirs are all in ``tmp_path``."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in client_env.items() if not k.startswith("HAMN_")}
    env.pop("REGISTRY_AUTH_FILE", None)  # hamn login and skopeo find the file themselves
    env.pop("DOCKER_CONFIG", None)
    env |= {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(runtime),
        "E2E_TMP": str(tmp_path),
    }
    return env


def hamn(
    env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hamn", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def sign_in(env: dict[str, str], registry: Any) -> None:
    ok(hamn(env, "auth", "login", "--server", registry.url, "-u", registry.username,
            "-p", registry.password))  # fmt: skip


def push(skopeo: Skopeo, layout: Layout, target: str) -> str:
    return skopeo.copy(layout.ref(LAYOUT_TAG), f"docker://{target}")


def test_auth_login_then_commands_need_no_credentials(
    live_registry: Any, user_env: dict[str, str], skopeo: Skopeo, busybox_layout: Layout
) -> None:
    repo = unique_repo("login")
    push(skopeo, busybox_layout, f"{live_registry.host}/{repo}:v1")
    refused = hamn(user_env, "repository", "list", "-n", REGISTRY, "--server", live_registry.url)
    assert refused.returncode == 1
    assert f"hamn auth login --server {live_registry.url}" in refused.stderr

    sign_in(user_env, live_registry)
    session = Path(user_env["XDG_CONFIG_HOME"]) / "hamn/session.json"
    assert session.stat().st_mode & 0o777 == 0o600
    assert live_registry.password not in session.read_text()
    shown = json.loads(ok(hamn(user_env, "auth", "show")))
    assert shown["server"] == live_registry.url and shown["username"] == live_registry.username

    # No --server, no -u/-p: the session supplies both.
    assert repo in json.loads(ok(hamn(user_env, "repository", "list", "-n", REGISTRY)))
    tags = ok(hamn(user_env, "repository", "show-tags", "-n", REGISTRY, "--repository", repo))
    assert json.loads(tags) == ["v1"]

    ok(hamn(user_env, "auth", "logout"))
    assert not session.exists()
    again = hamn(user_env, "repository", "list", "-n", REGISTRY, "--server", live_registry.url)
    assert again.returncode == 1


def test_hamn_login_then_skopeo_pushes_with_only_the_auth_file(
    live_registry: Any, user_env: dict[str, str], skopeo: Skopeo, busybox_layout: Layout
) -> None:
    sign_in(user_env, live_registry)
    result = hamn(user_env, "login", "-n", REGISTRY)
    assert ok(result) == "Login Succeeded\n"
    assert f"{live_registry.host}/{REGISTRY}/<repository>" in result.stderr
    auth_file = Path(user_env["XDG_RUNTIME_DIR"]) / "containers/auth.json"
    docker_file = Path(user_env["HOME"]) / ".docker/config.json"
    for path in (auth_file, docker_file):
        assert path.stat().st_mode & 0o777 == 0o600
        assert list(json.loads(path.read_text())["auths"]) == [live_registry.host]

    # skopeo with no --creds, reading the auth file hamn login wrote (and nothing else).
    tool = replace(skopeo, env=user_env, creds=None)
    repo = unique_repo("login")
    target = f"{live_registry.host}/{REGISTRY}/{repo}:v1"
    digest = push(tool, busybox_layout, target)
    assert digest == busybox_layout.manifest_digest(LAYOUT_TAG)
    docker_file.unlink()  # the containers auth file alone is enough
    inspected = tool.inspect(f"docker://{target}")
    assert inspected["Digest"] == digest

    # --expose-token writes nothing and gives a token skopeo can use as a password.
    exposed = json.loads(ok(hamn(user_env, "login", "-n", REGISTRY, "--expose-token")))
    assert exposed["loginServer"] == live_registry.host and exposed["username"] == NULL_GUID
    creds = f"{NULL_GUID}:{exposed['accessToken']}"
    auth_file.unlink()
    assert replace(tool, creds=creds).inspect(f"docker://{target}")["Digest"] == digest
    assert not auth_file.exists() and not docker_file.exists()


def test_credential_helper_get_gives_a_working_credential(
    live_registry: Any, user_env: dict[str, str], skopeo: Skopeo, busybox_layout: Layout
) -> None:
    helper = [sys.executable, "-c", "from hamn.cli.credential_helper import main; main()"]
    missing = subprocess.run([*helper, "get"], input=live_registry.host, env=user_env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 1
    assert missing.stdout.strip() == "credentials not found in native keychain"

    sign_in(user_env, live_registry)
    got = subprocess.run([*helper, "get"], input=f"{live_registry.host}\n", env=user_env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    answer = json.loads(got.stdout)
    assert answer["ServerURL"] == live_registry.host and answer["Username"] == NULL_GUID

    repo = unique_repo("helper")
    tool = replace(skopeo, env=user_env, creds=f"{NULL_GUID}:{answer['Secret']}")
    target = f"{live_registry.host}/{REGISTRY}/{repo}:v1"
    assert push(tool, busybox_layout, target) == busybox_layout.manifest_digest(LAYOUT_TAG)


def secret_creds(secret: dict[str, Any], host: str) -> str:
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    return base64.b64decode(config["auths"][host]["auth"]).decode()


def test_kube_secret_decodes_to_a_working_credential(
    live_registry: Any, user_env: dict[str, str], skopeo: Skopeo, busybox_layout: Layout
) -> None:
    repo = unique_repo("kube")
    target = f"{live_registry.host}/{REGISTRY}/{repo}:v1"
    digest = push(skopeo, busybox_layout, target)
    tool = replace(skopeo, env=user_env)

    # With explicit credentials: those go in the Secret, and no warning.
    args = ("kube-secret", "-n", REGISTRY, "--server", live_registry.url, "-o", "json")
    result = hamn(user_env, *args, "-u", live_registry.username, "-p", live_registry.password)
    secret = json.loads(ok(result))
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret_creds(secret, live_registry.host) == live_registry.creds
    assert "expires" not in result.stderr

    # From the session: a refresh token, with a warning that it expires.
    sign_in(user_env, live_registry)
    result = hamn(user_env, "kube-secret", "-n", REGISTRY)
    assert "expires" in result.stderr
    secret = yaml.safe_load(ok(result))
    creds = secret_creds(secret, live_registry.host)
    assert creds.startswith(f"{NULL_GUID}:")
    assert replace(tool, creds=creds).inspect(f"docker://{target}")["Digest"] == digest


def test_hamn_login_serves_buildah_and_podman_too(
    live_registry: Any,
    user_env: dict[str, str],
    skopeo: Skopeo,
    busybox_layout: Layout,
    buildah: Any,
    podman: Any,
) -> None:
    """buildah and podman read the same containers auth file as skopeo (containers-auth.json(5))."""
    sign_in(user_env, live_registry)
    ok(hamn(user_env, "login", "-n", REGISTRY))
    target = f"{live_registry.host}/{REGISTRY}/{unique_repo('login')}:v1"
    push(skopeo, busybox_layout, target)
    empty = Path(user_env["E2E_TMP"]) / "no-credentials"
    empty.mkdir()
    (empty / "config.json").write_text('{"auths": {}}')
    # Neither file hamn login wrote: containers/image also falls back to docker's config.
    no_files = {"REGISTRY_AUTH_FILE": str(empty / "config.json"), "DOCKER_CONFIG": str(empty)}
    for tool in (buildah, podman):
        logged_in = replace(tool, creds=None, env={**tool.env, **user_env})
        # Without the files hamn login wrote, the pull is refused (tried first: a pulled
        # image would be served from local storage).
        bare = replace(logged_in, env={**logged_in.env, **no_files})
        refused = bare("pull", *bare.remote, f"docker://{target}", check=False)
        assert refused.returncode != 0
        assert "unauthorized" in refused.stderr, refused.stderr
        pulled = logged_in("pull", *logged_in.remote, f"docker://{target}", check=False)
        assert pulled.returncode == 0, pulled.stderr
