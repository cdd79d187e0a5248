"""Soft delete's commands against a scripted server: ``hamn config soft-delete
show|update``, ``repository list-deleted``, ``manifest list-deleted``,
``list-deleted-tags`` and ``restore``: the exact requests, az's shapes, tables, and
errors that say what to do."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cli_mock_server import MockServer, assert_error, mock_server, run_hamn
from click.testing import Result

__all__ = ["mock_server", "run_hamn"]

Run = Callable[..., Result]
POLICY_PATH = "/api/registries/myRegistry/policies/softdelete"
POLICY = {"retentionDays": 30, "status": "enabled", "lastUpdatedTime": "2026-11-27T10:00:00Z"}
DISABLED = {**POLICY, "status": "disabled"}
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
DELETED = "/acr/v1/_deleted/myRegistry"
MANIFEST = {
    "digest": DIGEST,
    "imageSize": 1234,
    "createdTime": "2026-11-20T10:00:00Z",
    "lastUpdateTime": "2026-11-20T10:00:00Z",
    "deletedTime": "2026-11-26T10:00:00Z",
    "expiresAfter": "2026-12-26T10:00:00Z",
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "tags": ["v1", "latest"],
}
TAG = {
    "name": "v1",
    "digest": DIGEST,
    "deletedTime": "2026-11-26T10:00:00Z",
    "expiresAfter": "2026-12-26T10:00:00Z",
}


# -- config soft-delete ------------------------------------------------------------------------
def test_show_gets_the_policy(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", POLICY_PATH, 200, POLICY)
    result = run_hamn("config", "soft-delete", "show", "-r", "myRegistry")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [("GET", POLICY_PATH, None)]
    assert json.loads(result.stdout) == POLICY


def test_update_patches_status_and_days(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("PATCH", POLICY_PATH, 200, POLICY)
    result = run_hamn(
        "config", "soft-delete", "update", "-r", "myRegistry", "--status", "Enabled",
        "--days", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [("PATCH", POLICY_PATH, {"status": "enabled", "days": 30})]
    assert json.loads(result.stdout) == POLICY
    run_hamn("config", "soft-delete", "update", "--registry", "myRegistry", "--days", "1")
    assert mock_server.sent[1].body == {"days": 1}


def test_policy_table(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", POLICY_PATH, 200, POLICY)
    lines = run_hamn(
        "config", "soft-delete", "show", "-r", "myRegistry", "-o", "table"
    ).stdout.splitlines()
    assert lines[0].split() == ["STATUS", "RETENTION", "DAYS", "LAST", "UPDATED"]
    assert lines[2].split() == ["enabled", "30", "2026-11-27T10:00:00Z"]


def test_conflict_with_retention_is_shown(mock_server: MockServer, run_hamn: Run) -> None:
    message = "soft delete cannot be enabled while the retention policy is enabled; disable it"
    mock_server.fail("PATCH", POLICY_PATH, 409, "IN_USE", message)
    result = run_hamn("config", "soft-delete", "update", "-r", "myRegistry", "--status", "enabled")
    assert_error(result, "IN_USE", message)


def test_unknown_registry_says_what_to_do(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", "/api/registries/nosuchreg/policies/softdelete", 404, "NOT_FOUND", "x")
    result = run_hamn("config", "soft-delete", "show", "-r", "nosuchreg")
    assert_error(result, "Registry 'nosuchreg' was not found", "hamn list")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show"], "required: --registry/-r"),
        (["update", "-r", "myRegistry", "--days", "0"], "0 is not in the range 1<=x<=90"),
        (["update", "-r", "myRegistry", "--days", "91"], "91 is not in the range 1<=x<=90"),
        (["update", "-r", "myRegistry", "--status", "on"], "'on' is not one of"),
    ],
)
def test_bad_policy_arguments(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    result = run_hamn("config", "soft-delete", *args)
    assert_error(result, message, code=2)
    assert mock_server.sent == []


# -- repository list-deleted -------------------------------------------------------------------
CATALOG = "/acr/v1/_deleted/_catalog"
REGISTRY_PATH = "/api/registries/myRegistry"
LOGIN_SERVER = {"name": "myRegistry", "loginServer": "myregistry.hamn.test"}


def test_repository_list_deleted_routes_by_login_server(
    mock_server: MockServer, run_hamn: Run
) -> None:
    # The catalog has no repository to name the registry: the login server does (Host).
    mock_server.on("GET", REGISTRY_PATH, 200, LOGIN_SERVER)
    mock_server.on("GET", CATALOG, 200, {"repositories": ["app", "base/img"]})
    result = run_hamn("repository", "list-deleted", "-n", "myRegistry")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == ["app", "base/img"]
    assert [(s.method, s.path, s.params) for s in mock_server.sent] == [
        ("GET", REGISTRY_PATH, {}),
        ("GET", CATALOG, {"n": "100"}),
    ]
    assert mock_server.sent[1].headers["host"] == "myregistry.hamn.test:5000"


def test_repository_list_deleted_on_the_login_server_asks_directly(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("GET", CATALOG, 200, {"repositories": ["app"]})
    result = run_hamn(
        "repository", "list-deleted", "-n", "myRegistry", "--top", "1",
        env={"HAMN_SERVER": "http://myregistry.hamn.test:5000"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [(s.path, s.params) for s in mock_server.sent] == [(CATALOG, {"n": "1"})]
    assert mock_server.sent[0].headers["host"] == "myregistry.hamn.test:5000"


def test_repository_list_deleted_of_an_unknown_registry(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.fail("GET", "/api/registries/nosuchreg", 404, "NOT_FOUND", "no")
    result = run_hamn("repository", "list-deleted", "-n", "nosuchreg")
    assert_error(result, "Registry 'nosuchreg' was not found", "login server")
    assert [s.path for s in mock_server.sent] == ["/api/registries/nosuchreg"]


def test_empty_lists_warn_when_soft_delete_is_disabled(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("GET", REGISTRY_PATH, 200, LOGIN_SERVER)
    mock_server.on("GET", CATALOG, 200, {"repositories": []})
    mock_server.on("GET", POLICY_PATH, 200, DISABLED)
    result = run_hamn("repository", "list-deleted", "-n", "myRegistry")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert "Soft delete is not enabled in registry 'myRegistry'" in result.stderr
    assert "hamn config soft-delete update -r myRegistry --status enabled" in result.stderr
    assert [r[:2] for r in mock_server.requests()] == [
        ("GET", REGISTRY_PATH),
        ("GET", CATALOG),
        ("GET", POLICY_PATH),
    ]


def test_no_warning_when_enabled_or_the_policy_is_hidden(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("GET", f"{DELETED}/app/_manifests", 200, {"manifests": []})
    mock_server.on("GET", POLICY_PATH, 200, POLICY)
    result = run_hamn("manifest", "list-deleted", "-r", "myRegistry", "-n", "app")
    assert result.exit_code == 0 and "WARNING" not in result.stderr, result.stderr
    mock_server.answers.clear()
    mock_server.on("GET", f"{DELETED}/app/_manifests", 200, {"manifests": []})
    mock_server.fail("GET", POLICY_PATH, 403, "DENIED", "no")
    result = run_hamn("manifest", "list-deleted", "-r", "myRegistry", "-n", "app")
    assert result.exit_code == 0 and "WARNING" not in result.stderr, result.stderr


def test_a_server_without_soft_delete_says_so(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", REGISTRY_PATH, 200, LOGIN_SERVER)
    mock_server.fail("GET", CATALOG, 405, "UNSUPPORTED", "not supported yet")
    result = run_hamn("repository", "list-deleted", "-n", "myRegistry")
    assert_error(result, "This server does not support soft delete")


def test_soft_delete_not_enabled_says_how_to_enable(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail(
        "GET", f"{DELETED}/app/_manifests", 400, "UNSUPPORTED_POLICY", "soft delete is not enabled"
    )
    result = run_hamn("manifest", "list-deleted", "-r", "myRegistry", "-n", "app")
    assert_error(
        result, "enable it with 'hamn config soft-delete update -r myRegistry --status enabled"
    )


# -- manifest list-deleted / list-deleted-tags -------------------------------------------------
def test_manifest_list_deleted(mock_server: MockServer, run_hamn: Run) -> None:
    body = {"registry": "myregistry", "imageName": "base/img", "manifests": [MANIFEST]}
    mock_server.on("GET", f"{DELETED}/base/img/_manifests", 200, body)
    result = run_hamn("manifest", "list-deleted", "-r", "myRegistry", "-n", "base/img")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [MANIFEST]
    assert [(s.path, s.params) for s in mock_server.sent] == [
        (f"{DELETED}/base/img/_manifests", {"n": "100"})
    ]
    table = run_hamn(
        "manifest", "list-deleted", "-r", "myRegistry", "-n", "base/img", "-o", "table"
    ).stdout.splitlines()
    assert table[0].split() == ["DIGEST", "TAGS", "DELETED", "EXPIRES", "AFTER", "SIZE"]
    assert table[2].split() == [
        DIGEST, "v1,", "latest", "2026-11-26T10:00:00Z", "2026-12-26T10:00:00Z", "1234",
    ]  # fmt: skip


def test_manifest_list_deleted_unknown_repository(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", f"{DELETED}/app/_manifests", 404, "NAME_UNKNOWN", "no")
    result = run_hamn("manifest", "list-deleted", "-r", "myRegistry", "-n", "app")
    assert_error(result, "has no deleted manifests", "hamn repository list-deleted -n myRegistry")


def test_list_deleted_tags_all_or_one_name(mock_server: MockServer, run_hamn: Run) -> None:
    other = {**TAG, "name": "v2", "digest": OTHER}
    body = {"registry": "myregistry", "imageName": "app", "tags": [TAG, other]}
    mock_server.on("GET", f"{DELETED}/app/_tags", 200, body)
    result = run_hamn("manifest", "list-deleted-tags", "-r", "myRegistry", "-n", "app")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [TAG, other]
    result = run_hamn("manifest", "list-deleted-tags", "-r", "myRegistry", "-n", "app:v2")
    assert json.loads(result.stdout) == [other]
    assert [s.path for s in mock_server.sent] == [f"{DELETED}/app/_tags"] * 2
    table = run_hamn(
        "manifest", "list-deleted-tags", "-r", "myRegistry", "-n", "app:v1", "-o", "table"
    ).stdout.splitlines()
    assert table[0].split() == ["NAME", "DIGEST", "DELETED", "EXPIRES", "AFTER"]
    assert table[2].split() == ["v1", DIGEST, "2026-11-26T10:00:00Z", "2026-12-26T10:00:00Z"]


# -- manifest restore --------------------------------------------------------------------------
def test_restore_by_digest_with_a_tag(mock_server: MockServer, run_hamn: Run) -> None:
    restored = {"digest": DIGEST, "tags": ["v1"]}
    mock_server.on("POST", f"{DELETED}/app/_manifests/{DIGEST}", 200, restored)
    result = run_hamn(
        "manifest", "restore", "-r", "myRegistry", "-n", f"app@{DIGEST}", "-t", "v1", "-y"
    )
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [("POST", f"{DELETED}/app/_manifests/{DIGEST}", {"tag": "v1"})]
    assert json.loads(result.stdout) == restored


def test_restore_by_digest_alone_sends_no_body(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", f"{DELETED}/app/_manifests/{DIGEST}", 200, {"digest": DIGEST})
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", f"app@{DIGEST}", "--yes")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [("POST", f"{DELETED}/app/_manifests/{DIGEST}", None)]


def test_restore_by_tag_finds_the_digest(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", f"{DELETED}/app/_tags", 200, {"tags": [TAG]})
    mock_server.on("POST", f"{DELETED}/app/_manifests/{DIGEST}", 200, {"digest": DIGEST})
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", "app:v1", "-y")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [
        ("GET", f"{DELETED}/app/_tags", None),
        ("POST", f"{DELETED}/app/_manifests/{DIGEST}", {"tag": "v1"}),
    ]


def test_restore_by_tag_with_several_manifests_needs_a_digest(
    mock_server: MockServer, run_hamn: Run
) -> None:
    tags = [TAG, {**TAG, "digest": OTHER}]
    mock_server.on("GET", f"{DELETED}/app/_tags", 200, {"tags": tags})
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", "app:v1", "-y")
    assert_error(result, "pointed to 2 manifests", "--digest/-d", code=2)
    mock_server.on("POST", f"{DELETED}/app/_manifests/{OTHER}", 200, {"digest": OTHER})
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", "app:v1", "-d", OTHER, "-y")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests()[-1] == (
        "POST",
        f"{DELETED}/app/_manifests/{OTHER}",
        {"tag": "v1"},
    )


def test_restore_of_nothing_deleted_says_what_to_do(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("POST", f"{DELETED}/app/_manifests/{DIGEST}", 404, "MANIFEST_UNKNOWN", "no")
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", f"app@{DIGEST}", "-y")
    assert_error(result, "is not among the deleted manifests", "hamn manifest list-deleted")
    mock_server.on("GET", f"{DELETED}/app/_tags", 200, {"tags": []})
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", "app:v9", "-y")
    assert_error(result, "No deleted tag 'app:v9'", "list-deleted-tags", code=2)


def test_restore_asks_first(mock_server: MockServer, run_hamn: Run) -> None:
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", f"app@{DIGEST}")
    assert_error(result, "Use --yes (-y)")
    assert mock_server.sent == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list-deleted", "-r", "myRegistry"], "required: --name/-n"),
        (["list-deleted", "-r", "myRegistry", "-n", "Bad Name!"], "is not a repository name"),
        (["list-deleted-tags", "-r", "myRegistry", "-n", "app:"], "has an empty tag"),
        (["restore", "-r", "myRegistry", "-n", "app@sha256:zz", "-y"], "is not a digest"),
        (
            ["restore", "-r", "myRegistry", "-n", f"app@{DIGEST}", "-d", OTHER, "-y"],
            "differs from the digest",
        ),
    ],
)
def test_bad_manifest_arguments(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    result = run_hamn("manifest", *args)
    assert_error(result, message, code=2)
    assert mock_server.sent == []


def test_nothing_to_restore_with_soft_delete_off_says_how_to_enable(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.fail("POST", f"{DELETED}/app/_manifests/{DIGEST}", 404, "MANIFEST_UNKNOWN", "no")
    mock_server.on("GET", POLICY_PATH, 200, DISABLED)
    result = run_hamn("manifest", "restore", "-r", "myRegistry", "-n", f"app@{DIGEST}", "-y")
    assert_error(
        result,
        "is not among the deleted manifests",
        "Soft delete is not enabled in registry 'myRegistry'",
        "hamn config soft-delete update -r myRegistry --status enabled",
    )
    assert [r[:2] for r in mock_server.requests()] == [
        ("POST", f"{DELETED}/app/_manifests/{DIGEST}"),
        ("GET", POLICY_PATH),
    ]
