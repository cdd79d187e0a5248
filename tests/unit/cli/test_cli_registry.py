"""``hamn create|show|list|update|delete|check-name|show-usage`` and ``hamn credential ...``.

Each command against a scripted management API: the exact request it sends,
its output in every format, ``--query``, errors and bad arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml  # type: ignore[import-untyped]
from cli_mock_server import REGISTRY, MockServer, assert_error, mock_server, run_hamn
from click.testing import Result

__all__ = ["mock_server", "run_hamn"]

Run = Callable[..., Result]

USAGES = {
    "value": [
        {"name": "Size", "limit": 107374182400, "currentValue": 1234, "unit": "Bytes"},
        {"name": "Tokens", "limit": 500, "currentValue": 2, "unit": "Count"},
    ]
}
CREDENTIALS = {
    "username": "myRegistry",
    "passwords": [{"name": "password", "value": "pw-one"}, {"name": "password2", "value": "pw-2"}],
}


# ------------------------------------------------------------------------ create


def test_create_posts_name_sku_and_admin(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", "/api/registries", 201, REGISTRY)
    result = run_hamn("create", "-n", "myRegistry", "--sku", "standard", "--admin-enabled", "TRUE")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [
        (
            "POST",
            "/api/registries",
            {"name": "myRegistry", "sku": "Standard", "adminUserEnabled": True},
        )
    ]
    assert json.loads(result.stdout) == REGISTRY


def test_create_leaves_out_what_is_not_given(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", "/api/registries", 201, REGISTRY)
    assert run_hamn("create", "-n", "myRegistry", "--sku", "Basic").exit_code == 0
    assert mock_server.sent[0].body == {"name": "myRegistry", "sku": "Basic"}


def test_create_conflict_says_what_to_do(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("POST", "/api/registries", 409, "ALREADY_EXISTS", "registry exists")
    result = run_hamn("create", "-n", "myRegistry", "--sku", "Basic")
    assert_error(result, "already exists", "hamn check-name -n NAME", "ALREADY_EXISTS")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--sku", "Basic"], "required: --name/-n"),
        (["create", "-n", "myRegistry"], "required: --sku"),
        (["create", "-n", "ab", "--sku", "Basic"], "'ab' is not a registry name"),
        (["create", "-n", "myRegistry", "--sku", "Gold"], "'Gold' is not one of"),
        (
            ["create", "-n", "myRegistry", "--sku", "Basic", "--admin-enabled", "yes"],
            "'yes' is not one of 'true', 'false'",
        ),
        (["update", "-n", "myRegistry", "--anonymous-pull-enabled", "1"], "'1' is not one of"),
        (["show"], "required: --name/-n"),
        (["show-usage"], "required: --name/-n"),
        (["credential", "renew", "-n", "myRegistry"], "required: --password-name"),
        (
            ["credential", "renew", "-n", "myRegistry", "--password-name", "password3"],
            "'password3' is not one of",
        ),
    ],
)
def test_bad_arguments_exit_2(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    assert_error(run_hamn(*args), message, "Try 'hamn ", code=2)
    assert mock_server.sent == []


# ------------------------------------------------------------------ show / list


def test_show_every_output_format(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/registries/myRegistry", 200, REGISTRY)
    shown = run_hamn("show", "-n", "myRegistry")
    assert json.loads(shown.stdout) == REGISTRY
    assert yaml.safe_load(run_hamn("show", "-n", "myRegistry", "-o", "yaml").stdout) == REGISTRY
    assert run_hamn("show", "-n", "myRegistry", "-o", "none").stdout == ""
    table = run_hamn("show", "-n", "myRegistry", "-o", "table").stdout.splitlines()
    assert table[0].split() == [
        "NAME", "LOCATION", "SKU", "LOGIN", "SERVER", "CREATION", "DATE", "ADMIN", "ENABLED"
    ]  # fmt: skip
    assert table[2].split() == [
        "myRegistry", "local", "Standard", "myregistry.localhost", "2026-01-02T03:04:05Z", "True"
    ]  # fmt: skip
    tsv = run_hamn("show", "-n", "myRegistry", "--query", "[name, loginServer]", "-o", "tsv")
    assert tsv.stdout == "myRegistry\nmyregistry.localhost\n"
    assert run_hamn("show", "-n", "myRegistry", "--query", "id", "-o", "tsv").stdout == (
        "/registries/myRegistry\n"
    )


def test_show_registry_from_the_environment(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/registries/myRegistry", 200, REGISTRY)
    result = run_hamn("show", env={"HAMN_REGISTRY": "myRegistry"})
    assert result.exit_code == 0, result.stderr


def test_show_not_found_says_who_to_ask(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", "/api/registries/myRegistry", 404, "NOT_FOUND", "registry not found")
    assert_error(
        run_hamn("show", "-n", "myRegistry"),
        "Registry 'myRegistry' was not found, or you cannot see it",
        "hamn role assignment create --role Reader",
        "--scope /registries/myRegistry",
    )


def test_list_prints_the_array(mock_server: MockServer, run_hamn: Run) -> None:
    other = {**REGISTRY, "name": "other12345", "adminUserEnabled": False}
    mock_server.on("GET", "/api/registries", 200, {"value": [REGISTRY, other]})
    result = run_hamn("list")
    assert json.loads(result.stdout) == [REGISTRY, other]
    assert run_hamn("list", "--query", "[].name", "-o", "tsv").stdout == "myRegistry\nother12345\n"
    table = run_hamn("list", "-o", "table").stdout.splitlines()
    assert len(table) == 4 and table[3].split()[0] == "other12345"
    # A false ADMIN ENABLED says False (az shows a blank cell).
    assert table[2].split()[-1] == "True" and table[3].split()[-2:] == [
        "2026-01-02T03:04:05Z",
        "False",
    ]


def test_list_without_credentials_points_at_sign_in(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", "/api/registries", 401, "UNAUTHORIZED", "authentication required")
    assert_error(run_hamn("list"), "authentication required", "-u/--username")


def test_credentials_are_sent_as_basic(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/registries", 200, {"value": []})
    result = run_hamn("list", "-u", "admin", "-p", "secret")
    assert result.exit_code == 0 and result.stdout == "[]\n"
    assert mock_server.sent[0].headers["authorization"] == "Basic YWRtaW46c2VjcmV0"


# ------------------------------------------------------------------------ update


def test_update_patches_only_what_is_given(mock_server: MockServer, run_hamn: Run) -> None:
    updated = {**REGISTRY, "sku": {"name": "Premium", "tier": "Premium"}}
    mock_server.on("PATCH", "/api/registries/myRegistry", 200, updated)
    result = run_hamn(
        "update", "-n", "myRegistry", "--sku", "premium", "--anonymous-pull-enabled", "false",
        "--admin-enabled", "false", "--query", "sku.name", "-o", "tsv",
    )  # fmt: skip
    assert result.stdout == "Premium\n"
    assert mock_server.requests() == [
        (
            "PATCH",
            "/api/registries/myRegistry",
            {"sku": "Premium", "anonymousPullEnabled": False, "adminUserEnabled": False},
        )
    ]


def test_update_not_found(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("PATCH", "/api/registries/myRegistry", 404, "NOT_FOUND", "not found")
    assert_error(run_hamn("update", "-n", "myRegistry", "--sku", "Basic"), "hamn list")


def test_update_forbidden_names_the_fix(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("PATCH", "/api/registries/myRegistry", 403, "DENIED", "needs Contributor")
    assert_error(run_hamn("update", "-n", "myRegistry", "--sku", "Basic"), "needs Contributor")


# ------------------------------------------------------------------------ delete


def test_delete_with_yes(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("DELETE", "/api/registries/myRegistry", 204)
    result = run_hamn("delete", "-n", "myRegistry", "-y")
    assert result.exit_code == 0 and result.stdout == ""
    assert mock_server.requests() == [("DELETE", "/api/registries/myRegistry", None)]


def test_delete_without_yes_and_no_terminal_refuses(mock_server: MockServer, run_hamn: Run) -> None:
    assert_error(run_hamn("delete", "-n", "myRegistry"), "Use --yes (-y)")
    assert mock_server.sent == []


# ---------------------------------------------------------- check-name / usage


def test_check_name(mock_server: MockServer, run_hamn: Run) -> None:
    answer = {"nameAvailable": False, "reason": "AlreadyExists", "message": "taken"}
    mock_server.on("POST", "/api/checkNameAvailability", 200, answer)
    result = run_hamn("check-name", "-n", "myRegistry")
    assert json.loads(result.stdout) == answer
    assert mock_server.sent[0].body == {"name": "myRegistry"}
    # An invalid name is the server's to judge (az: reason "Invalid"), not a usage error.
    assert run_hamn("check-name", "-n", "a-b").exit_code == 0
    assert mock_server.sent[1].body == {"name": "a-b"}
    assert run_hamn("check-name", "-n", "x", "--query", "nameAvailable", "-o", "tsv").stdout == (
        "false\n"
    )


def test_show_usage_keeps_the_value_wrapper(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", "/api/registries/myRegistry/usages", 200, USAGES)
    result = run_hamn("show-usage", "-n", "myRegistry")
    assert json.loads(result.stdout) == USAGES
    table = run_hamn("show-usage", "-n", "myRegistry", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["NAME", "LIMIT", "CURRENT", "VALUE", "UNIT"]
    assert table[2].split() == ["Size", "107374182400", "1234", "Bytes"]
    query = "value[?name=='Size'].currentValue | [0]"
    assert run_hamn("show-usage", "-n", "myRegistry", "--query", query).stdout == "1234\n"


# -------------------------------------------------------------------- credential


def test_credential_show(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", "/api/registries/myRegistry/listCredentials", 200, CREDENTIALS)
    result = run_hamn("credential", "show", "-n", "myRegistry")
    assert json.loads(result.stdout) == CREDENTIALS
    assert mock_server.requests()[0] == ("POST", "/api/registries/myRegistry/listCredentials", None)
    table = run_hamn("credential", "show", "-n", "myRegistry", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["USERNAME", "PASSWORD", "PASSWORD2"]
    assert table[2].split() == ["myRegistry", "pw-one", "pw-2"]
    query = ["--query", "passwords[0].value", "-o", "tsv"]
    assert run_hamn("credential", "show", "-n", "myRegistry", *query).stdout == "pw-one\n"


def test_credential_show_admin_disabled(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail(
        "POST",
        "/api/registries/myRegistry/listCredentials",
        409,
        "ADMIN_DISABLED",
        "the admin user is disabled; enable it with hamn update -n myRegistry --admin-enabled true",
    )
    assert_error(
        run_hamn("credential", "show", "-n", "myRegistry"),
        "hamn update -n myRegistry --admin-enabled true",
        "ADMIN_DISABLED",
    )


def test_credential_renew(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("POST", "/api/registries/myRegistry/regenerateCredential", 200, CREDENTIALS)
    result = run_hamn("credential", "renew", "-n", "myRegistry", "--password-name", "Password2")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [
        ("POST", "/api/registries/myRegistry/regenerateCredential", {"name": "password2"})
    ]


def test_credential_not_found(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("POST", "/api/registries/myRegistry/listCredentials", 404, "NOT_FOUND", "x")
    assert_error(run_hamn("credential", "show", "-n", "myRegistry"), "cannot see it")


def test_server_failure_is_worded(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", "/api/registries", 500, "INTERNAL", "boom")
    assert_error(run_hamn("list"), "boom", "The server failed")
