"""``hamn role assignment ...``, ``hamn role definition list`` and ``hamn ad ...``.

Each command against a scripted management API: the exact requests, az's
filter semantics for ``list`` and ``delete``, output formats, errors and bad
arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cli_mock_server import SERVER, MockServer, assert_error, mock_server, run_hamn
from click.testing import Result

__all__ = ["mock_server", "run_hamn"]

Run = Callable[..., Result]


def assignment(ident: str, name: str, role: str, scope: str) -> dict[str, str]:
    return {
        "id": f"/roleAssignments/{ident}",
        "principalId": f"p-{name}",
        "principalName": name,
        "principalType": "User",
        "roleDefinitionName": role,
        "scope": scope,
        "createdOn": "2026-01-01T00:00:00Z",
    }


AT_ROOT = assignment("a1", "admin", "Owner", "/")
AT_REGISTRY = assignment("a2", "user@example.com", "AcrPull", "/registries/myregistry")
AT_REPO = assignment("a3", "user@example.com", "AcrPush", "/registries/myregistry/repositories/x")
ALL = [AT_ROOT, AT_REGISTRY, AT_REPO]

USER = {
    "id": "u-1",
    "name": "user@example.com",
    "displayName": "A User",
    "disabled": False,
    "createdOn": "2026-01-01T00:00:00Z",
}
SP = {
    "id": "s-1",
    "appId": "0b6f1c1e-0000-4000-8000-000000000001",
    "displayName": "ci",
    "disabled": False,
    "createdOn": "2026-01-01T00:00:00Z",
}
APP = SP["appId"]


# ------------------------------------------------------------- assignment create


@pytest.mark.parametrize(
    ("scope", "sent"),
    [
        ("/registries/myRegistry", "/registries/myRegistry"),
        ("/", "/"),
        ("/registries/r1234/repositories/team/app", "/registries/r1234/repositories/team/app"),
        (
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry"
            "/registries/myRegistry",
            "/registries/myRegistry",
        ),
    ],
)
def test_create_sends_role_assignee_scope(
    mock_server: MockServer, run_hamn: Run, scope: str, sent: str
) -> None:
    mock_server.on("POST", "/api/roleAssignments", 201, AT_REGISTRY)
    result = run_hamn(
        "role", "assignment", "create", "--scope", scope, "--role", "AcrPull",
        "--assignee", "user@example.com",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == AT_REGISTRY
    assert mock_server.requests() == [
        (
            "POST",
            "/api/roleAssignments",
            {"role": "AcrPull", "assignee": "user@example.com", "scope": sent},
        )
    ]


def test_create_conflict_and_not_found(mock_server: MockServer, run_hamn: Run) -> None:
    args = ["role", "assignment", "create", "--scope", "/", "--role", "Reader", "--assignee", "bob"]
    mock_server.fail("POST", "/api/roleAssignments", 409, "ALREADY_EXISTS", "exists")
    assert_error(run_hamn(*args), "'bob' already holds Reader at '/'", "role assignment list")
    mock_server.answers.clear()
    mock_server.fail("POST", "/api/roleAssignments", 404, "NOT_FOUND", "no such principal")
    assert_error(run_hamn(*args), "No user or service principal 'bob'", "hamn ad user list")
    mock_server.answers.clear()
    mock_server.fail("POST", "/api/roleAssignments", 403, "DENIED", "Owner needed")
    assert_error(run_hamn(*args), "Owner needed", "ask an owner")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--role", "AcrPull", "--assignee", "a"], "required: --scope"),
        (["create", "--scope", "/", "--assignee", "a"], "required: --role"),
        (["create", "--scope", "/", "--role", "AcrPull"], "required: --assignee"),
        (["create", "--scope", "registries/x", "--role", "R", "--assignee", "a"], "not a scope"),
        (["create", "--scope", "/repos/x", "--role", "R", "--assignee", "a"], "not a scope"),
        (["list", "--all", "--scope", "/"], "--scope is not needed with --all"),
        (["delete", "--ids", "a1", "--role", "Owner"], "either --ids or"),
    ],
)
def test_bad_arguments_exit_2(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    assert_error(run_hamn("role", "assignment", *args), message, code=2)
    assert mock_server.sent == []


# --------------------------------------------------------------- assignment list


def test_list_defaults_to_the_root_scope_only(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": ALL})
    result = run_hamn("role", "assignment", "list")
    assert json.loads(result.stdout) == [AT_ROOT]
    assert mock_server.sent[0].params == {"scope": "/"}


def test_list_all_and_filters_pass_through(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": ALL})
    result = run_hamn(
        "role", "assignment", "list", "--all", "--assignee", "user@example.com", "--role", "AcrPull"
    )
    assert json.loads(result.stdout) == ALL
    assert mock_server.sent[0].params == {"assignee": "user@example.com", "role": "AcrPull"}


def test_list_at_a_scope_and_inherited(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": ALL})
    scope = "/registries/myRegistry"
    exact = run_hamn(
        "role", "assignment", "list", "--scope", scope, "--query", "[].id", "-o", "tsv"
    )
    assert exact.stdout == "/roleAssignments/a2\n"
    assert mock_server.sent[0].params == {"scope": scope}
    inherited = run_hamn(
        "role", "assignment", "list", "--scope", scope, "--include-inherited",
        "--query", "[].id", "-o", "tsv",
    )  # fmt: skip
    assert inherited.stdout == "/roleAssignments/a1\n/roleAssignments/a2\n"
    assert mock_server.sent[1].params == {}


def test_list_table_has_az_role_columns(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": ALL})
    lines = run_hamn("role", "assignment", "list", "--all", "-o", "table").stdout.splitlines()
    assert lines[0].split() == ["Principal", "Role", "Scope"]
    assert lines[3].split() == ["user@example.com", "AcrPull", "/registries/myregistry"]


# ------------------------------------------------------------- assignment delete


def test_delete_by_ids_takes_several_words(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("DELETE", "/api/roleAssignments/a1", 204).on(
        "DELETE", "/api/roleAssignments/a2", 204
    )
    result = run_hamn("role", "assignment", "delete", "--ids", "/roleAssignments/a1", "a2")
    assert result.exit_code == 0, result.stderr
    assert [(m, p) for m, p, _ in mock_server.requests()] == [
        ("DELETE", "/api/roleAssignments/a1"),
        ("DELETE", "/api/roleAssignments/a2"),
    ]


def test_delete_the_matches_at_a_scope(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": [AT_REGISTRY, AT_REPO]})
    mock_server.on("DELETE", "/api/roleAssignments/a2", 204)
    result = run_hamn(
        "role", "assignment", "delete", "--assignee", "user@example.com",
        "--scope", "/registries/myRegistry",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.sent[0].params == {
        "assignee": "user@example.com",
        "scope": "/registries/myRegistry",
    }
    assert mock_server.requests()[1:] == [("DELETE", "/api/roleAssignments/a2", None)]


def test_delete_without_matches_names_where_they_are(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": [AT_REGISTRY]})
    result = run_hamn("role", "assignment", "delete", "--assignee", "user@example.com")
    assert_error(
        result,
        "No matched role assignments were found to delete at scope '/'",
        "'/registries/myregistry'; pass --scope",
    )
    assert all(s.method == "GET" for s in mock_server.sent)


def test_delete_without_filters_asks_first(mock_server: MockServer, run_hamn: Run) -> None:
    assert_error(run_hamn("role", "assignment", "delete"), "Use --yes (-y)")
    assert mock_server.sent == []
    mock_server.on("GET", "/api/roleAssignments", 200, {"value": [AT_ROOT]})
    mock_server.on("DELETE", "/api/roleAssignments/a1", 204)
    assert run_hamn("role", "assignment", "delete", "-y").exit_code == 0
    assert mock_server.requests()[-1] == ("DELETE", "/api/roleAssignments/a1", None)


def test_delete_unknown_id(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("DELETE", "/api/roleAssignments/zz", 404, "NOT_FOUND", "gone")
    assert_error(run_hamn("role", "assignment", "delete", "--ids", "zz"), "list --all")


# -------------------------------------------------------------------- definitions


def test_definition_list(mock_server: MockServer, run_hamn: Run) -> None:
    roles = [
        {"roleName": "AcrPull", "dataActions": ["pull"], "managementPermissions": []},
        {"roleName": "Reader", "dataActions": ["pull"], "managementPermissions": ["read"]},
    ]
    mock_server.on("GET", "/api/roleDefinitions", 200, {"value": roles})
    assert json.loads(run_hamn("role", "definition", "list").stdout) == roles
    only = run_hamn("role", "definition", "list", "-n", "reader", "--query", "[].roleName")
    assert json.loads(only.stdout) == ["Reader"]
    table = run_hamn("role", "definition", "list", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["Name", "DataActions", "ManagementPermissions"]
    assert table[3].split() == ["Reader", "pull", "read"]


# ---------------------------------------------------------------------- ad user


def test_user_create_with_and_without_password(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", "/api/users", 201, USER)
    result = run_hamn(
        "ad", "user", "create", "--display-name", "A User",
        "--user-principal-name", "user@example.com", "--password", "s3cret-Pass",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.sent[0].body == {
        "name": "user@example.com",
        "displayName": "A User",
        "password": "s3cret-Pass",
    }
    shown = json.loads(result.stdout)
    assert shown["userPrincipalName"] == "user@example.com" and shown["accountEnabled"] is True
    mock_server.answers.clear()
    mock_server.on("POST", "/api/users", 201, {**USER, "password": "generated"})
    result = run_hamn(
        "ad", "user", "create", "--display-name", "A User",
        "--user-principal-name", "user@example.com", "--query", "password", "-o", "tsv",
    )  # fmt: skip
    assert result.stdout == "generated\n"
    assert "shown only this once" in result.stderr
    assert "password" not in (mock_server.sent[1].body or {})


def test_user_list_show_update_delete(mock_server: MockServer, run_hamn: Run) -> None:
    other = {**USER, "name": "bob", "displayName": "Bob", "disabled": True}
    mock_server.on("GET", "/api/users", 200, {"value": [USER, other]})
    listed = run_hamn("ad", "user", "list", "--query", "[].[userPrincipalName, accountEnabled]")
    assert json.loads(listed.stdout) == [["user@example.com", True], ["bob", False]]
    assert json.loads(run_hamn("ad", "user", "list", "--upn", "BOB").stdout)[0]["name"] == "bob"
    by_display = run_hamn("ad", "user", "list", "--display-name", "A U", "--query", "[].name")
    assert json.loads(by_display.stdout) == ["user@example.com"]

    mock_server.on("GET", "/api/users/user@example.com", 200, USER)
    assert json.loads(run_hamn("ad", "user", "show", "--id", "user@example.com").stdout)["id"] == (
        "u-1"
    )

    mock_server.on("PATCH", "/api/users/bob", 200, other)
    result = run_hamn(
        "ad", "user", "update", "--id", "bob", "--password", "new-Pass1", "--account-enabled",
        "false",
    )  # fmt: skip
    assert result.exit_code == 0 and result.stdout == ""
    assert mock_server.requests()[-1] == (
        "PATCH",
        "/api/users/bob",
        {"password": "new-Pass1", "disabled": True},
    )

    mock_server.on("DELETE", "/api/users/bob", 204)
    assert run_hamn("ad", "user", "delete", "--id", "bob").exit_code == 0
    assert mock_server.requests()[-1] == ("DELETE", "/api/users/bob", None)


def test_user_errors(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", "/api/users/ghost", 404, "NOT_FOUND", "no such user")
    assert_error(run_hamn("ad", "user", "show", "--id", "ghost"), "'hamn ad user list'")
    mock_server.fail("POST", "/api/users", 409, "ALREADY_EXISTS", "exists")
    args = ["--display-name", "G", "--user-principal-name", "ghost"]
    assert_error(run_hamn("ad", "user", "create", *args), "already exists")
    assert_error(run_hamn("ad", "user", "update", "--id", "ghost"), "at least one of", code=2)
    assert_error(run_hamn("ad", "user", "create", "--display-name", "G"), "required", code=2)
    assert_error(
        run_hamn("ad", "user", "update", "--id", "g", "--account-enabled", "no"),
        "'no' is not one of",
        code=2,
    )


# ------------------------------------------------------------------------ ad sp


def test_create_for_rbac_with_roles(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", "/api/servicePrincipals", 201, {**SP, "password": "sp-secret"})
    mock_server.on("POST", "/api/roleAssignments", 201, AT_REGISTRY)
    result = run_hamn(
        "ad", "sp", "create-for-rbac", "--name", "ci", "--role", "AcrPush",
        "--scopes", "/registries/myRegistry", "/registries/other1234",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "appId": APP,
        "displayName": "ci",
        "password": "sp-secret",
        "tenant": SERVER,
    }
    assert "shown only this once" in result.stderr
    assert mock_server.requests() == [
        ("POST", "/api/servicePrincipals", {"displayName": "ci"}),
        (
            "POST",
            "/api/roleAssignments",
            {"role": "AcrPush", "assignee": APP, "scope": "/registries/myRegistry"},
        ),
        (
            "POST",
            "/api/roleAssignments",
            {"role": "AcrPush", "assignee": APP, "scope": "/registries/other1234"},
        ),
    ]


def test_create_for_rbac_without_role_and_default_name(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("POST", "/api/servicePrincipals", 201, {**SP, "password": "x"})
    result = run_hamn("ad", "sp", "create-for-rbac", "--query", "appId", "-o", "tsv")
    assert result.stdout == f"{APP}\n"
    assert mock_server.sent[0].body["displayName"].startswith("hamn-cli-")
    assert len(mock_server.sent) == 1


def test_create_for_rbac_takes_back_the_sp_when_the_role_fails(
    mock_server: MockServer, run_hamn: Run
) -> None:
    mock_server.on("POST", "/api/servicePrincipals", 201, {**SP, "password": "x"})
    mock_server.fail("POST", "/api/roleAssignments", 400, "UNKNOWN_ROLE", "no role Pusher")
    mock_server.on("DELETE", f"/api/servicePrincipals/{APP}", 204)
    result = run_hamn(
        "ad", "sp", "create-for-rbac", "--role", "Pusher", "--scopes", "/registries/myRegistry"
    )
    assert_error(result, "no role Pusher", "was not kept", "hamn role definition list")
    assert "x" not in result.stdout
    assert mock_server.requests()[-1] == ("DELETE", f"/api/servicePrincipals/{APP}", None)


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "AcrPush"],
        ["--scopes", "/registries/myRegistry"],
        ["--role", "AcrPush", "--scopes", "nope"],
    ],
)
def test_create_for_rbac_bad_arguments(
    mock_server: MockServer, run_hamn: Run, args: list[str]
) -> None:
    assert_error(run_hamn("ad", "sp", "create-for-rbac", *args), code=2)
    assert mock_server.sent == []


def test_sp_list_show_delete_reset(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/servicePrincipals", 200, {"value": [SP]})
    assert json.loads(run_hamn("ad", "sp", "list").stdout) == [SP]
    assert json.loads(run_hamn("ad", "sp", "list", "--display-name", "zz").stdout) == []
    mock_server.on("GET", f"/api/servicePrincipals/{APP}", 200, SP)
    assert json.loads(run_hamn("ad", "sp", "show", "--id", APP).stdout) == SP
    mock_server.on(
        "POST", f"/api/servicePrincipals/{APP}/resetCredential", 200, {**SP, "password": "n"}
    )
    reset = run_hamn("ad", "sp", "credential", "reset", "--id", APP)
    assert json.loads(reset.stdout) == {"appId": APP, "password": "n", "tenant": SERVER}
    mock_server.on("DELETE", f"/api/servicePrincipals/{APP}", 204)
    assert run_hamn("ad", "sp", "delete", "--id", APP).stdout == ""
    mock_server.fail("GET", "/api/servicePrincipals/nope", 404, "NOT_FOUND", "no")
    assert_error(run_hamn("ad", "sp", "show", "--id", "nope"), "'hamn ad sp list'")


def test_user_password_and_sign_in_password_do_not_collide(
    mock_server: MockServer, run_hamn: Run
) -> None:
    # az's `ad user create --password` is the new user's; signing in keeps -p.
    mock_server.on("POST", "/api/users", 201, USER)
    result = run_hamn(
        "ad", "user", "create", "--display-name", "U", "--user-principal-name", "u",
        "--password", "users-own", "-u", "admin", "-p", "admins",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "UserWarning" not in result.stderr
    assert mock_server.sent[0].body["password"] == "users-own"
    assert mock_server.sent[0].headers["authorization"] == "Basic YWRtaW46YWRtaW5z"
