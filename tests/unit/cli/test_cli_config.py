"""``hamn config retention show|update`` against a scripted management API: the request
each sends, az's output shape, and bad arguments."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cli_mock_server import MockServer, assert_error, mock_server, run_hamn
from click.testing import Result

__all__ = ["mock_server", "run_hamn"]

Run = Callable[..., Result]
PATH = "/api/registries/myRegistry/policies/retention"
POLICY = {"days": 0, "lastUpdatedTime": "2026-11-27T10:00:00+00:00", "status": "enabled"}


def test_show_gets_the_policy(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", PATH, 200, POLICY)
    result = run_hamn("config", "retention", "show", "-r", "myRegistry")
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [("GET", PATH, None)]
    assert json.loads(result.stdout) == POLICY


def test_update_patches_status_days_and_type(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("PATCH", PATH, 200, POLICY)
    result = run_hamn(
        "config", "retention", "update", "-r", "myRegistry",
        "--status", "Enabled", "--days", "0", "--type", "UntaggedManifests",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.requests() == [
        ("PATCH", PATH, {"type": "UntaggedManifests", "status": "enabled", "days": 0})
    ]
    assert json.loads(result.stdout) == POLICY


def test_update_sends_only_what_is_given(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("PATCH", PATH, 200, POLICY)
    result = run_hamn(
        "config", "retention", "update", "--registry", "myRegistry",
        "--status", "disabled", "--type", "untaggedmanifests",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert mock_server.sent[0].body == {"type": "UntaggedManifests", "status": "disabled"}


def test_table_output(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.on("GET", PATH, 200, POLICY)
    table = run_hamn("config", "retention", "show", "-r", "myRegistry", "-o", "table")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "DAYS", "LAST", "UPDATED"]
    assert lines[2].split()[:2] == ["enabled", "0"]


def test_unknown_registry_says_what_to_do(mock_server: MockServer, run_hamn: Run) -> None:
    mock_server.fail("GET", "/api/registries/nosuchreg/policies/retention", 404, "NOT_FOUND", "x")
    result = run_hamn("config", "retention", "show", "-r", "nosuchreg")
    assert_error(result, "Registry 'nosuchreg' was not found", "hamn list")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show"], "required: --registry/-r"),
        (["update", "-r", "myRegistry", "--status", "enabled"], "required: --type"),
        (
            ["update", "-r", "myRegistry", "--days", "366", "--type", "UntaggedManifests"],
            "366 is not in the range 0<=x<=365",
        ),
        (
            ["update", "-r", "myRegistry", "--status", "on", "--type", "UntaggedManifests"],
            "'on' is not one of",
        ),
        (
            ["update", "-r", "myRegistry", "--type", "TaggedManifests"],
            "the only one is UntaggedManifests",
        ),
    ],
)
def test_bad_arguments(
    mock_server: MockServer, run_hamn: Run, args: list[str], message: str
) -> None:
    result = run_hamn("config", "retention", *args)
    assert_error(result, message, code=2)
    assert mock_server.requests() == []
