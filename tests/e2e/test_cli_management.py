"""The management commands as a user runs them: ``hamn create|show|list|update|delete``,
``credential``, ``role assignment``, ``ad user|sp``, ``token`` and ``scope-map``.

The real CLI (``python -m hamn``, a subprocess) against a live ``hamn serve`` with
authentication on, signed in as the bootstrap owner through ``HAMN_USERNAME`` /
``HAMN_PASSWORD``. The identities the commands make are then used the way
clients use them (Basic on ``/v2/``), so a role or a token is shown to grant
what it should and nothing more. The seed's commands run verbatim.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import LAYOUT_TAG, Layout, Skopeo
from test_cli_repository import CLI_ENV, Hamn, assert_error, push_image

pytestmark = pytest.mark.usefixtures("auth_enforced")


def new_registry_name() -> str:
    return "mgmt" + uuid.uuid4().hex[:12]


@pytest.fixture
def hamn(live_registry: Any) -> Hamn:
    return Hamn.on(live_registry)


def pull_status(registry: Any, path: str, username: str, password: str) -> int:
    """The status of ``GET /v2/<path>`` with Basic ``username:password``."""
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        return http.get(
            f"/v2/{path}",
            auth=(username, password),
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).status_code


def push_status(registry: Any, repository: str, username: str, password: str) -> int:
    """The status of starting an upload to ``/v2/<repository>`` with Basic credentials."""
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        return http.post(f"/v2/{repository}/blobs/uploads/", auth=(username, password)).status_code


def shell(hamn: Hamn, tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run bash scripts with ``hamn`` on the PATH, signed in as ``hamn`` is."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "hamn"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hamn "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env.update(hamn.env(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"))
    bash = shutil.which("bash")
    assert bash, "bash is needed to run the seed's commands"

    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bash, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )

    return sh


# ------------------------------------------------------------------------ registries


def test_registry_lifecycle(hamn: Hamn) -> None:
    name = new_registry_name()
    created = hamn.json("create", "-n", name, "--sku", "basic")
    assert created["name"] == name and created["id"] == f"/registries/{name}"
    assert created["sku"] == {"name": "Basic", "tier": "Basic"}
    assert created["adminUserEnabled"] is False
    assert created["type"] == "Microsoft.ContainerRegistry/registries"

    assert_error(hamn("create", "-n", name, "--sku", "Basic"), "already exists", "check-name")
    taken = hamn.json("check-name", "-n", name)
    assert taken["nameAvailable"] is False and taken["reason"] == "AlreadyExists"
    assert hamn.json("check-name", "-n", "a-b")["reason"] == "Invalid"

    assert name in hamn.json("list", "--query", "[].name")
    table = hamn("show", "-n", name, "-o", "table")
    assert table.code == 0 and table.out.splitlines()[0].split()[:4] == [
        "NAME", "LOCATION", "SKU", "LOGIN"
    ]  # fmt: skip
    updated = hamn.json("update", "-n", name, "--sku", "Premium", "--admin-enabled", "true")
    assert updated["sku"]["name"] == "Premium" and updated["adminUserEnabled"] is True

    usage = hamn.json("show-usage", "-n", name)
    size = next(u for u in usage["value"] if u["name"] == "Size")
    assert size == {"name": "Size", "limit": 500 * 1024**3, "currentValue": 0, "unit": "Bytes"}
    lines = hamn("show-usage", "-n", name, "-o", "table").out.splitlines()
    assert lines[0].split() == ["NAME", "LIMIT", "CURRENT", "VALUE", "UNIT"]

    refused = hamn("delete", "-n", name)
    assert_error(refused, "Use --yes (-y)")
    kept = hamn.with_terminal("delete", "-n", name, answer="n")
    assert kept.code == 1 and "Operation cancelled" in kept.err
    assert hamn.json("show", "-n", name)["name"] == name
    asked = hamn.with_terminal("delete", "-n", name, answer="y")
    assert asked.code == 0, asked
    assert "(y/n)" in asked.err
    assert_error(hamn("show", "-n", name), "was not found, or you cannot see it", "Reader")


def test_retention_policy_update_and_show(hamn: Hamn) -> None:
    name = new_registry_name()
    hamn.json("create", "-n", name, "--sku", "Premium")
    shown = hamn.json("config", "retention", "show", "-r", name)
    assert set(shown) == {"days", "lastUpdatedTime", "status"}
    assert (shown["days"], shown["status"]) == (7, "disabled")
    updated = hamn.json(
        "config", "retention", "update", "-r", name,
        "--status", "Enabled", "--days", "0", "--type", "UntaggedManifests",
    )  # fmt: skip
    assert (updated["days"], updated["status"]) == (0, "enabled")
    assert hamn.json("config", "retention", "show", "-r", name) == updated
    assert hamn.json("show", "-n", name)["policies"]["retentionPolicy"] == updated
    lines = hamn("config", "retention", "show", "-r", name, "-o", "table").out.splitlines()
    assert lines[0].split() == ["STATUS", "DAYS", "LAST", "UPDATED"]
    assert lines[2].split()[:2] == ["enabled", "0"]
    assert_error(
        hamn("config", "retention", "update", "-r", name, "--days", "400", "--type", "x"),
        "--days",
        code=2,
    )
    assert_error(hamn("config", "retention", "show", "-r", "nosuch123"), "was not found")
    assert hamn("delete", "-n", name, "--yes").code == 0


def test_admin_credentials(hamn: Hamn, live_registry: Any) -> None:
    name = new_registry_name()
    hamn.json("create", "-n", name, "--sku", "Standard")
    assert_error(hamn("credential", "show", "-n", name), "--admin-enabled true")
    hamn.json("update", "-n", name, "--admin-enabled", "true")
    shown = hamn.json("credential", "show", "-n", name)
    assert shown["username"] == name
    assert [p["name"] for p in shown["passwords"]] == ["password", "password2"]
    first = shown["passwords"][0]["value"]
    assert hamn(
        "credential", "show", "-n", name, "--query", "passwords[0].value", "-o", "tsv"
    ).out == (f"{first}\n")
    table = hamn("credential", "show", "-n", name, "-o", "table").out.splitlines()
    assert table[0].split() == ["USERNAME", "PASSWORD", "PASSWORD2"]

    repo = f"{name}/hello"
    push_image(live_registry, repo, "v1")
    assert pull_status(live_registry, f"{repo}/manifests/v1", name, first) == 200
    renewed = hamn.json("credential", "renew", "-n", name, "--password-name", "password")
    assert renewed["passwords"][0]["value"] != first
    assert renewed["passwords"][1] == shown["passwords"][1]
    assert pull_status(live_registry, f"{repo}/manifests/v1", name, first) == 401
    assert hamn("delete", "-n", name, "-y").code == 0


# ------------------------------------------------------------- roles and identities


def test_user_role_assignment_round_trip(hamn: Hamn, live_registry: Any) -> None:
    name = new_registry_name()
    created = hamn.json("create", "-n", name, "--sku", "Basic")
    repo = f"{name}/app"
    push_image(live_registry, repo, "v1")
    user = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    made = hamn.json(
        "ad", "user", "create", "--display-name", "Dev", "--user-principal-name", user,
        "--password", "Dev-Pass-1234",
    )  # fmt: skip
    assert made["userPrincipalName"] == user and made["accountEnabled"] is True
    as_user = Hamn(hamn.server, user, "Dev-Pass-1234")

    assert pull_status(live_registry, f"{repo}/manifests/v1", user, "Dev-Pass-1234") in (401, 403)
    granted = hamn.json(
        "role", "assignment", "create", "--scope", created["id"], "--role", "AcrPull",
        "--assignee", user,
    )  # fmt: skip
    assert granted["roleDefinitionName"] == "AcrPull" and granted["principalName"] == user
    assert granted["scope"].lower() == f"/registries/{name}".lower()
    assert pull_status(live_registry, f"{repo}/manifests/v1", user, "Dev-Pass-1234") == 200
    assert push_status(live_registry, repo, user, "Dev-Pass-1234") in (401, 403)
    # AcrPull is data plane only: the registry stays out of sight (SPEC §2).
    assert_error(as_user("show", "-n", name), "cannot see it", "Reader")
    assert name not in as_user.json("list", "--query", "[].name")

    listed = hamn.json("role", "assignment", "list", "--assignee", user, "--scope", created["id"])
    assert [a["id"] for a in listed] == [granted["id"]]
    assert hamn.json("role", "assignment", "list", "--assignee", user) == []  # '/' only, as az
    everywhere = hamn.json("role", "assignment", "list", "--all", "--assignee", user)
    assert [a["id"] for a in everywhere] == [granted["id"]]
    table = hamn("role", "assignment", "list", "--all", "--assignee", user, "-o", "table")
    assert table.out.splitlines()[0].split() == ["Principal", "Role", "Scope"]
    assert_error(
        hamn(
            "role", "assignment", "create", "--scope", created["id"], "--role", "AcrPull",
            "--assignee", user,
        ),
        "already holds AcrPull",
    )  # fmt: skip

    missed = hamn("role", "assignment", "delete", "--assignee", user, "--role", "AcrPull")
    assert_error(missed, "No matched role assignments", "pass --scope")
    gone = hamn(
        "role", "assignment", "delete", "--assignee", user, "--role", "AcrPull",
        "--scope", created["id"],
    )  # fmt: skip
    assert gone.code == 0, gone
    # A removed role counts on the very next request.
    assert pull_status(live_registry, f"{repo}/manifests/v1", user, "Dev-Pass-1234") in (401, 403)

    assert hamn("ad", "user", "update", "--id", user, "--account-enabled", "false").code == 0
    assert hamn.json("ad", "user", "show", "--id", user)["accountEnabled"] is False
    assert hamn("ad", "user", "delete", "--id", user).code == 0
    assert_error(hamn("ad", "user", "show", "--id", user), "hamn ad user list")
    assert hamn("delete", "-n", name, "-y").code == 0


def test_service_principal_for_ci(hamn: Hamn, live_registry: Any) -> None:
    name = new_registry_name()
    registry_id = hamn.json("create", "-n", name, "--sku", "Basic")["id"]
    sp = hamn(
        "ad", "sp", "create-for-rbac", "--name", "ci", "--role", "AcrPush", "--scopes", registry_id
    )
    assert sp.code == 0, sp
    secret = json.loads(sp.out)
    assert set(secret) == {"appId", "displayName", "password", "tenant"}
    assert secret["tenant"] == hamn.server and "shown only this once" in sp.err
    app_id, password = secret["appId"], secret["password"]
    assert push_status(live_registry, f"{name}/built", app_id, password) == 202
    assert hamn.json("ad", "sp", "show", "--id", app_id)["displayName"] == "ci"
    assert app_id in hamn.json("ad", "sp", "list", "--query", "[].appId")

    reset = hamn.json("ad", "sp", "credential", "reset", "--id", app_id)
    assert set(reset) == {"appId", "password", "tenant"} and reset["password"] != password
    assert push_status(live_registry, f"{name}/built", app_id, password) == 401
    assert push_status(live_registry, f"{name}/built", app_id, reset["password"]) == 202

    rejected = hamn(
        "ad", "sp", "create-for-rbac", "--name", "bad", "--role", "NoSuchRole",
        "--scopes", registry_id,
    )  # fmt: skip
    assert_error(rejected, "was not kept")
    assert "bad" not in hamn.json("ad", "sp", "list", "--query", "[].displayName")
    assert hamn("ad", "sp", "delete", "--id", app_id).code == 0
    assert hamn("delete", "-n", name, "-y").code == 0


def test_role_definitions(hamn: Hamn) -> None:
    names = hamn.json("role", "definition", "list", "--query", "[].roleName")
    assert {"Owner", "Contributor", "Reader", "AcrPush", "AcrPull", "AcrDelete"} <= set(names)
    assert hamn.json("role", "definition", "list", "-n", "acrpull", "--query", "[].roleName") == [
        "AcrPull"
    ]


# -------------------------------------------------------------- tokens, scope maps


def test_token_and_scope_map_round_trip(hamn: Hamn, live_registry: Any) -> None:
    name = new_registry_name()
    hamn.json("create", "-n", name, "--sku", "Standard")
    push_image(live_registry, f"{name}/hello", "v1")
    push_image(live_registry, f"{name}/other", "v1")

    made = hamn(
        "token", "create", "-n", "cibot", "-r", name,
        "--repository", "hello", "content/read", "metadata/read",
    )  # fmt: skip
    assert made.code == 0, made
    token = json.loads(made.out)
    assert token["scopeMapId"] == f"/registries/{name}/scopeMaps/cibot-scope-map"
    values = {p["name"]: p["value"] for p in token["credentials"]["passwords"]}
    assert set(values) == {"password1", "password2"}

    scope_map = hamn.json("scope-map", "show", "-n", "cibot-scope-map", "-r", name)
    assert sorted(scope_map["actions"]) == [
        "repositories/hello/content/read",
        "repositories/hello/metadata/read",
    ]
    assert (
        pull_status(live_registry, f"{name}/hello/manifests/v1", "cibot", values["password1"])
        == 200
    )
    other = pull_status(live_registry, f"{name}/other/manifests/v1", "cibot", values["password2"])
    assert other in (401, 403, 404)
    assert push_status(live_registry, f"{name}/hello", "cibot", values["password1"]) in (401, 403)

    hamn.json(
        "scope-map", "update", "-n", "cibot-scope-map", "-r", name,
        "--add-repository", "other", "content/read",
        "--remove-repository", "hello", "metadata/read",
    )  # fmt: skip
    assert (
        pull_status(live_registry, f"{name}/other/manifests/v1", "cibot", values["password1"])
        == 200
    )

    assert hamn.json("token", "list", "-r", name, "--query", "[].name") == ["cibot"]
    assert hamn.json("token", "show", "-n", "cibot", "-r", name)["status"] == "enabled"
    disabled = hamn.json("token", "update", "-n", "cibot", "-r", name, "--status", "disabled")
    assert disabled["status"] == "disabled"
    assert (
        pull_status(live_registry, f"{name}/hello/manifests/v1", "cibot", values["password1"])
        == 401
    )
    hamn.json("token", "update", "-n", "cibot", "-r", name, "--status", "enabled")

    fresh = hamn.json(
        "token", "credential", "generate", "-n", "cibot", "-r", name, "--password1",
        "--expiration-in-days", "30",
    )  # fmt: skip
    assert fresh["username"] == "cibot" and [p["name"] for p in fresh["passwords"]] == ["password1"]
    new_value = fresh["passwords"][0]["value"]
    assert fresh["passwords"][0]["expiry"]
    assert (
        pull_status(live_registry, f"{name}/hello/manifests/v1", "cibot", values["password1"])
        == 401
    )
    assert pull_status(live_registry, f"{name}/hello/manifests/v1", "cibot", new_value) == 200

    after = hamn.json("token", "credential", "delete", "-n", "cibot", "-r", name, "--password2")
    assert [p["name"] for p in after["credentials"]["passwords"]] == ["password1"]
    assert (
        pull_status(live_registry, f"{name}/hello/manifests/v1", "cibot", values["password2"])
        == 401
    )

    assert_error(hamn("token", "delete", "-n", "cibot", "-r", name), "Use --yes")
    assert hamn("token", "delete", "-n", "cibot", "-r", name, "-y").code == 0
    assert_error(hamn("token", "show", "-n", "cibot", "-r", name), f"hamn token list -r {name}")
    assert hamn("scope-map", "delete", "-n", "cibot-scope-map", "-r", name, "-y").code == 0
    assert hamn.json("scope-map", "list", "-r", name) == []

    made = hamn.json(
        "scope-map", "create", "-n", "readers", "-r", name, "--repository", "hello",
        "content/read", "--description", "pull hello",
    )  # fmt: skip
    assert made["description"] == "pull hello"
    quiet = hamn.json(
        "token", "create", "-n", "robot", "-r", name, "--scope-map", "readers", "--no-passwords"
    )
    assert all("value" not in p for p in quiet["credentials"].get("passwords") or [])
    assert hamn("delete", "-n", name, "-y").code == 0


# ------------------------------------------------------------------ the seed's commands


def test_seed_commands_verbatim(start_server: Any, tmp_path: Path) -> None:
    """``az acr`` answers from the seed, typed with ``hamn``, on a server whose default
    registry is ``myRegistry`` (see the next test for one made by ``hamn create``)."""
    server = start_server("--default-registry", "myRegistry", "--workers", "1")
    hamn = Hamn.on(server)
    assert hamn("update", "-n", "myRegistry", "--admin-enabled", "true").code == 0
    hamn.json(
        "ad", "user", "create", "--display-name", "User", "--user-principal-name",
        "user@example.com", "--password", "User-Pass-1234",
    )  # fmt: skip
    kept = push_image(server, "myRegistry/myrepository", "v1")
    untagged = {push_image(server, "myRegistry/myrepository") for _ in range(2)}
    sh = shell(hamn, tmp_path)

    shown = sh("hamn credential show -n myRegistry")
    assert shown.returncode == 0, shown
    assert json.loads(shown.stdout)["username"] == "myRegistry"

    assigned = sh(
        "hamn role assignment create --scope $(hamn show -n myRegistry --query id -o tsv) "
        "--role AcrPull --assignee user@example.com"
    )
    assert assigned.returncode == 0, assigned
    assert json.loads(assigned.stdout)["roleDefinitionName"] == "AcrPull"
    pulled = pull_status(
        server, "myRegistry/myrepository/manifests/v1", "user@example.com", "User-Pass-1234"
    )
    assert pulled == 200

    listed = sh("hamn repository list -n myRegistry")
    assert listed.returncode == 0 and json.loads(listed.stdout) == ["myrepository"], listed

    cleanup = sh(
        'hamn repository show-manifests -n myRegistry --repository myRepository --query "[?tags[0]==null].digest" -o tsv'  # noqa: E501
        " | xargs -I% hamn repository delete -n myRegistry -t myRepository@% -y"
    )
    assert cleanup.returncode == 0, cleanup
    for digest in untagged:
        assert digest in cleanup.stderr
    left = sh(
        "hamn repository show-manifests -n myRegistry --repository myRepository "
        "--query '[].digest' -o tsv"
    )
    assert left.stdout == f"{kept}\n", left


def test_repository_list_of_a_created_registry(hamn: Hamn, live_registry: Any) -> None:
    name = new_registry_name()
    hamn.json("create", "-n", name, "--sku", "Basic")
    try:
        push_image(live_registry, f"{name}/myrepository", "v1")
        assert hamn.json("repository", "list", "-n", name) == ["myrepository"]
    finally:
        hamn("delete", "-n", name, "-y")


def test_repository_update_sends_acr_patch(
    hamn: Hamn, live_registry: Any, skopeo: Skopeo, busybox_layout: Layout
) -> None:
    """Locks set with the CLI hold against a real client: skopeo cannot push over a
    write-locked tag nor into a write-locked repository, and is told how to unlock."""
    name = new_registry_name()
    hamn.json("create", "-n", name, "--sku", "Basic")
    push_image(live_registry, f"{name}/locked", "v1")
    tag = hamn.json(
        "repository", "update", "-n", name, "--image", "locked:v1", "--write-enabled", "false"
    )
    assert tag["name"] == "v1" and tag["changeableAttributes"]["writeEnabled"] is False
    shown = hamn.json("repository", "show", "-n", name, "--image", "locked:v1")
    assert shown["changeableAttributes"] == tag["changeableAttributes"]

    def skopeo_push(tag: str) -> subprocess.CompletedProcess[str]:
        assert live_registry.creds
        return skopeo(
            "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
            "--dest-creds", live_registry.creds, "--preserve-digests",
            busybox_layout.ref(LAYOUT_TAG), f"docker://{live_registry.host}/{name}/locked:{tag}",
            check=False,
        )  # fmt: skip

    refused = skopeo_push("v1")
    assert refused.returncode != 0, refused
    assert "writeEnabled=false" in refused.stderr, refused.stderr
    unlock = f"hamn repository update -n {name} --image locked:v1 --write-enabled true"
    assert unlock in refused.stderr, refused.stderr

    repository = hamn.json(
        "repository", "update", "-n", name, "--repository", "locked", "--write-enabled", "false"
    )
    assert repository["changeableAttributes"]["writeEnabled"] is False
    refused = skopeo_push("v2")
    assert refused.returncode != 0 and "--repository locked --write-enabled true" in refused.stderr

    for target in (("--repository", "locked"), ("--image", "locked:v1")):
        assert (
            hamn("repository", "update", "-n", name, *target, "--write-enabled", "true").code == 0
        )
    assert skopeo_push("v1").returncode == 0
    pushed = hamn.json("repository", "show", "-n", name, "--image", "locked:v1")
    assert pushed["digest"] == busybox_layout.manifest_digest(LAYOUT_TAG)
    assert hamn("delete", "-n", name, "-y").code == 0
