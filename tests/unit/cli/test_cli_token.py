"""``hamn token ...``, ``hamn scope-map ...`` and ``hamn repository update``.

Each command against a scripted management API (or ``/acr/v1`` for
``repository update``): the exact requests, az's ``--repository REPO
ACTION...`` arguments, output formats, errors and bad arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cli_mock_server import MockServer, assert_error, mock_server, run_hamn
from click.testing import Result

__all__ = ["mock_server", "run_hamn"]

Run = Callable[..., Result]
R = "/api/registries/myRegistry"

SCOPE_MAP = {
    "id": "/registries/myRegistry/scopeMaps/ci-scope-map",
    "name": "ci-scope-map",
    "type": "Microsoft.ContainerRegistry/registries/scopeMaps",
    "scopeMapType": "UserDefined",
    "description": "for ci",
    "actions": ["repositories/hello/content/read", "repositories/hello/metadata/read"],
    "creationDate": "2026-01-01T00:00:00Z",
    "provisioningState": "Succeeded",
}


def password(name: str, value: str | None = None, expiry: str | None = None) -> dict[str, str]:
    entry = {"name": name, "creationTime": "2026-01-01T00:00:00Z"}
    if expiry:
        entry["expiry"] = expiry
    if value:
        entry["value"] = value
    return entry


TOKEN = {
    "id": "/registries/myRegistry/tokens/ci",
    "name": "ci",
    "type": "Microsoft.ContainerRegistry/registries/tokens",
    "scopeMapId": "/registries/myRegistry/scopeMaps/ci-scope-map",
    "status": "enabled",
    "creationDate": "2026-01-01T00:00:00Z",
    "provisioningState": "Succeeded",
    "credentials": {
        "username": "ci",
        "passwords": [password("password1", "v1"), password("password2", "v2")],
    },
}


# ------------------------------------------------------------------- token create


def test_create_with_repository_makes_the_scope_map_first(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("POST", f"{R}/scopeMaps", 201, SCOPE_MAP)
    mock_server.on("POST", f"{R}/tokens", 201, TOKEN)
    result = run_hamn(
        "token", "create", "-n", "ci", "-r", "myRegistry",
        "--repository", "Hello", "content/read", "metadata/read",
        "--repository", "team/*", "content/write", "--status", "Disabled",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == TOKEN
    assert "shown only this once" in result.stderr
    (m1, p1, scope_map), (m2, p2, token) = mock_server.requests()
    assert (m1, p1, m2, p2) == ("POST", f"{R}/scopeMaps", "POST", f"{R}/tokens")
    assert scope_map["name"] == "ci-scope-map"
    assert scope_map["actions"] == [
        "repositories/hello/content/read",
        "repositories/hello/metadata/read",
        "repositories/team/*/content/write",
    ]
    assert token == {"name": "ci", "scopeMap": "ci-scope-map", "status": "disabled"}


def test_create_with_a_scope_map_and_no_passwords(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", f"{R}/tokens", 201, {**TOKEN, "credentials": {"username": "ci"}})
    result = run_hamn(
        "token", "create", "-n", "ci", "-r", "myRegistry", "--scope-map", "_repositories_pull",
        "--no-passwords", "-o", "table",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [
        (
            "POST",
            f"{R}/tokens",
            {"name": "ci", "scopeMap": "_repositories_pull", "noPasswords": True},
        )
    ]
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "SCOPE", "MAP", "STATUS"]
    assert lines[2].split()[:3] == ["ci", "ci-scope-map", "enabled"]
    assert "shown only this once" not in result.stderr


def test_create_failure_takes_back_the_scope_map(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", f"{R}/scopeMaps", 201, SCOPE_MAP)
    mock_server.fail("POST", f"{R}/tokens", 409, "ALREADY_EXISTS", "token exists")
    mock_server.on("DELETE", f"{R}/scopeMaps/ci-scope-map", 204)
    result = run_hamn(
        "token", "create", "-n", "ci", "-r", "myRegistry", "--repository", "a", "content/read"
    )
    assert_error(result, "Token 'ci' already exists", "hamn token show -n ci -r myRegistry")
    assert mock_server.requests()[-1] == ("DELETE", f"{R}/scopeMaps/ci-scope-map", None)


def test_create_when_the_scope_map_exists(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("POST", f"{R}/scopeMaps", 409, "ALREADY_EXISTS", "exists")
    result = run_hamn(
        "token", "create", "-n", "ci", "-r", "myRegistry", "--repository", "a", "content/read"
    )
    assert_error(result, "--scope-map ci-scope-map")
    assert len(mock_server.sent) == 1


def test_create_with_an_unknown_scope_map(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("POST", f"{R}/tokens", 404, "NOT_FOUND", "no scope map")
    result = run_hamn("token", "create", "-n", "ci", "-r", "myRegistry", "--scope-map", "nope")
    assert_error(result, "scope map 'nope' was not found", "hamn scope-map list -r myRegistry")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "-n", "t", "-r", "myRegistry"], "exactly one of --scope-map or --repository"),
        (
            [
                "create",
                "-n",
                "t",
                "-r",
                "myRegistry",
                "--scope-map",
                "s",
                "--repository",
                "a",
                "content/read",
            ],
            "exactly one of",
        ),
        (["create", "-n", "t", "-r", "myRegistry", "--repository", "a"], "at least one action"),
        (
            ["create", "-n", "t", "-r", "myRegistry", "--repository", "a", "pull"],
            "'pull' is not a repository action",
        ),
        (["create", "-r", "myRegistry", "--scope-map", "s"], "required: --name/-n"),
        (["create", "-n", "t", "--scope-map", "s"], "required: --registry/-r"),
        (["create", "-n", "t", "-r", "myRegistry", "--scope-map", "s", "--status", "on"], "'on'"),
        (["update", "-n", "t", "-r", "myRegistry"], "--scope-map or --status"),
        (["credential", "delete", "-n", "t", "-r", "myRegistry"], "--password1, --password2"),
        (
            ["credential", "generate", "-n", "t", "-r", "myRegistry", "--expiration", "soon"],
            "not an ISO 8601 time",
        ),
        (
            [
                "credential",
                "generate",
                "-n",
                "t",
                "-r",
                "myRegistry",
                "--expiration",
                "2030-01-01",
                "--expiration-in-days",
                "3",
            ],
            "not both",
        ),
        (
            ["credential", "generate", "-n", "t", "-r", "myRegistry", "--expiration-in-days", "0"],
            "--expiration-in-days",
        ),
    ],
)
def test_token_bad_arguments_exit_2(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    assert_error(run_hamn("token", *args), message, code=2)
    assert mock_server.sent == []


# --------------------------------------------------------- token list/show/update


def test_list_show_update_delete(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", f"{R}/tokens", 200, {"value": [TOKEN]})
    assert run_hamn(
        "token", "list", "-r", "myRegistry", "--query", "[].name", "-o", "tsv"
    ).stdout == ("ci\n")
    mock_server.on("GET", f"{R}/tokens/ci", 200, TOKEN)
    shown = run_hamn("token", "show", "-n", "ci", "-r", "myRegistry", "-o", "yaml")
    assert "scopeMapId: /registries/myRegistry/scopeMaps/ci-scope-map" in shown.stdout
    mock_server.on("PATCH", f"{R}/tokens/ci", 200, {**TOKEN, "status": "disabled"})
    updated = run_hamn(
        "token", "update", "-n", "ci", "-r", "myRegistry", "--status", "disabled",
        "--scope-map", "other", "--query", "status", "-o", "tsv",
    )  # fmt: skip
    assert updated.stdout == "disabled\n"
    assert mock_server.requests()[-1] == (
        "PATCH",
        f"{R}/tokens/ci",
        {"scopeMap": "other", "status": "disabled"},
    )
    assert_error(run_hamn("token", "delete", "-n", "ci", "-r", "myRegistry"), "Use --yes")
    mock_server.on("DELETE", f"{R}/tokens/ci", 204)
    assert run_hamn("token", "delete", "-n", "ci", "-r", "myRegistry", "-y").stdout == ""
    assert mock_server.requests()[-1] == ("DELETE", f"{R}/tokens/ci", None)


def test_token_not_found(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", f"{R}/tokens/ghost", 404, "NOT_FOUND", "no token")
    assert_error(
        run_hamn("token", "show", "-n", "ghost", "-r", "myRegistry"),
        "Token 'ghost' was not found in registry 'myRegistry'",
        "hamn token list -r myRegistry",
    )


# ---------------------------------------------------------------- token credential


def test_generate_both_by_default(mock_server: MockServer, run_hamn: Run) -> None:
    path = f"{R}/tokens/ci/generateCredentials"
    mock_server.on(
        "POST", path, 200, {"username": "ci", "passwords": [password("password1", "n1")]}
    )
    mock_server.on(
        "POST", path, 200, {"username": "ci", "passwords": [password("password2", "n2")]}
    )
    result = run_hamn("token", "credential", "generate", "-n", "ci", "-r", "myRegistry")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "username": "ci",
        "passwords": [password("password1", "n1"), password("password2", "n2")],
    }
    assert [s.body for s in mock_server.sent] == [{"name": "password1"}, {"name": "password2"}]


def test_generate_one_with_expiry(mock_server: MockServer, run_hamn: Run) -> None:
    path = f"{R}/tokens/ci/generateCredentials"
    expiry = "2030-01-31T00:00:00Z"
    answer = {"username": "ci", "passwords": [password("password2", "n2", expiry)]}
    mock_server.on("POST", path, 200, answer)
    result = run_hamn(
        "token", "credential", "generate", "-n", "ci", "-r", "myRegistry", "--password2",
        "--expiration", "2030-01-31T01:00:00+01:00", "-o", "table",
    )  # fmt: skip
    assert mock_server.sent[0].body == {"name": "password2", "expiry": expiry}
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "USERNAME", "PASSWORD1", "PASSWORD1", "EXPIRY", "PASSWORD2", "PASSWORD2", "EXPIRY"
    ]  # fmt: skip
    assert lines[2].split() == ["ci", "n2", expiry]


def test_generate_expiration_in_days(mock_server: MockServer, run_hamn: Run) -> None:
    path = f"{R}/tokens/ci/generateCredentials"
    mock_server.on("POST", path, 200, {"username": "ci", "passwords": [password("password1")]})
    args = ["-n", "ci", "-r", "myRegistry", "--password1", "--expiration-in-days", "30"]
    assert run_hamn("token", "credential", "generate", *args).exit_code == 0
    sent = datetime.fromisoformat(mock_server.sent[0].body["expiry"].replace("Z", "+00:00"))
    assert abs(sent - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


def test_credential_delete_prints_the_token(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("DELETE", f"{R}/tokens/ci/passwords/password1", 204)
    mock_server.on("GET", f"{R}/tokens/ci", 200, TOKEN)
    result = run_hamn(
        "token", "credential", "delete", "-n", "ci", "-r", "myRegistry", "--password1"
    )
    assert json.loads(result.stdout)["name"] == "ci"
    assert [(m, p) for m, p, _ in mock_server.requests()] == [
        ("DELETE", f"{R}/tokens/ci/passwords/password1"),
        ("GET", f"{R}/tokens/ci"),
    ]


# ---------------------------------------------------------------------- scope-map


def test_scope_map_create(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", f"{R}/scopeMaps", 201, SCOPE_MAP)
    result = run_hamn(
        "scope-map", "create", "-n", "ci-scope-map", "-r", "myRegistry",
        "--repository", "hello", "content/read", "metadata/read", "--description", "for ci",
        "-o", "table",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.sent[0].body == {
        "name": "ci-scope-map",
        "actions": SCOPE_MAP["actions"],
        "description": "for ci",
    }
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CREATION", "DATE", "DESCRIPTION"]
    assert lines[2].split() == ["ci-scope-map", "UserDefined", "2026-01-01T00:00:00Z", "for", "ci"]


def test_scope_map_update_adds_and_removes(mock_server: MockServer, run_hamn: Run) -> None:
    path = f"{R}/scopeMaps/ci-scope-map"
    mock_server.on("GET", path, 200, SCOPE_MAP)
    mock_server.on("PATCH", path, 200, SCOPE_MAP)
    result = run_hamn(
        "scope-map", "update", "-n", "ci-scope-map", "-r", "myRegistry",
        "--add-repository", "hello", "content/write", "--remove-repo", "hello",
        "metadata/read", "content/delete",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "'repositories/hello/content/delete' is not in scope map" in result.stderr
    assert mock_server.requests()[-1] == (
        "PATCH",
        path,
        {"actions": ["repositories/hello/content/read", "repositories/hello/content/write"]},
    )


def test_scope_map_update_description_only(mock_server: MockServer, run_hamn: Run) -> None:
    path = f"{R}/scopeMaps/ci-scope-map"
    mock_server.on("PATCH", path, 200, SCOPE_MAP)
    args = ["-n", "ci-scope-map", "-r", "myRegistry", "--description", "new"]
    assert run_hamn("scope-map", "update", *args).exit_code == 0
    assert mock_server.requests() == [("PATCH", path, {"description": "new"})]


def test_scope_map_list_show_delete(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", f"{R}/scopeMaps", 200, {"value": [SCOPE_MAP]})
    assert json.loads(run_hamn("scope-map", "list", "-r", "myRegistry").stdout) == [SCOPE_MAP]
    mock_server.on("GET", f"{R}/scopeMaps/ci-scope-map", 200, SCOPE_MAP)
    shown = run_hamn(
        "scope-map", "show", "-n", "ci-scope-map", "-r", "myRegistry", "--query", "actions"
    )
    assert json.loads(shown.stdout) == SCOPE_MAP["actions"]
    assert_error(run_hamn("scope-map", "delete", "-n", "x", "-r", "myRegistry"), "Use --yes")
    mock_server.on("DELETE", f"{R}/scopeMaps/ci-scope-map", 204)
    assert (
        run_hamn("scope-map", "delete", "-n", "ci-scope-map", "-r", "myRegistry", "-y").exit_code
        == 0
    )
    mock_server.fail("GET", f"{R}/scopeMaps/ghost", 404, "NOT_FOUND", "none")
    assert_error(
        run_hamn("scope-map", "show", "-n", "ghost", "-r", "myRegistry"),
        "hamn scope-map list -r myRegistry",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "-n", "s", "-r", "myRegistry"], "required: --repository"),
        (["update", "-n", "s", "-r", "myRegistry"], "give --add-repository"),
        (
            ["update", "-n", "s", "-r", "myRegistry", "--add-repository", "x"],
            "--add-repository takes a repository and at least one action",
        ),
    ],
)
def test_scope_map_bad_arguments(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    assert_error(run_hamn("scope-map", *args), message, code=2)
    assert mock_server.sent == []


# -------------------------------------------------------------- repository update


def test_repository_update_patches_the_repository(mock_server: MockServer, run_hamn: Run) -> None:
    answer = {"registry": "myregistry.localhost", "imageName": "hello", "changeableAttributes": {}}
    mock_server.on("PATCH", "/acr/v1/myRegistry/hello", 200, answer)
    result = run_hamn(
        "repository", "update", "-n", "myRegistry", "--repository", "hello",
        "--write-enabled", "false", "--delete-enabled", "false",
    )  # fmt: skip
    assert json.loads(result.stdout) == answer
    assert mock_server.requests() == [
        ("PATCH", "/acr/v1/myRegistry/hello", {"deleteEnabled": False, "writeEnabled": False})
    ]


def test_repository_update_tag_and_manifest(mock_server: MockServer, run_hamn: Run) -> None:
    digest = "sha256:" + "a" * 64
    tag = {"name": "v1", "digest": digest, "changeableAttributes": {"readEnabled": True}}
    mock_server.on("PATCH", "/acr/v1/myRegistry/hello/_tags/v1", 200, {"tag": tag})
    result = run_hamn(
        "repository", "update", "-n", "myRegistry", "--image", "hello:v1", "--read-enabled", "true"
    )
    assert json.loads(result.stdout) == tag
    assert mock_server.sent[0].body == {"readEnabled": True}
    mock_server.on("PATCH", f"/acr/v1/myRegistry/hello/_manifests/{digest}", 200, {"manifest": {}})
    result = run_hamn(
        "repository",
        "update",
        "-n",
        "myRegistry",
        "-t",
        f"hello@{digest}",
        "--list-enabled",
        "false",
    )
    assert result.exit_code == 0, result.stderr
    assert mock_server.sent[1].body == {"listEnabled": False}


def test_repository_update_errors(mock_server: MockServer, run_hamn: Run) -> None:
    args = ["repository", "update", "-n", "myRegistry"]
    assert_error(run_hamn(*args, "--repository", "hello"), "at least one of", code=2)
    assert_error(run_hamn(*args, "--write-enabled", "false"), "exactly one of", code=2)
    assert_error(run_hamn(*args, "--repository", "x", "--write-enabled", "nope"), "'nope'", code=2)
    mock_server.fail("PATCH", "/acr/v1/myRegistry/ghost", 404, "NAME_UNKNOWN", "no repo")
    assert_error(
        run_hamn(*args, "--repository", "ghost", "--write-enabled", "false"),
        "'hamn repository list -n myRegistry'",
    )
    mock_server.fail("PATCH", "/acr/v1/myRegistry/hello", 405, "UNSUPPORTED", "not yet")
    assert_error(run_hamn(*args, "--repository", "hello", "--read-enabled", "true"), "not yet")
