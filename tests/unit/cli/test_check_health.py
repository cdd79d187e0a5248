"""``hamn check-health``'s local checks and its report, in process.

The client tools are real executables (small shell scripts on a private PATH),
and the credential files real files; only the network checks need a server
(tests/e2e/test_cli_check_health.py).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from hamn.cli.health import Report, Status, StopChecks, error, ok, warning
from hamn.cli.health import local as health_local
from hamn.cli.health.local import check_credential_file, check_tools
from hamn.cli.health.registry import bearer_challenge

NULL_GUID = "00000000-0000-0000-0000-000000000000"
SERVER = "127.0.0.1:5000"
LOGIN = "hamn login -n local --server http://127.0.0.1:5000"


def run_tools(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> list[str]:
    """The report check_tools prints with only ``bin_dir`` on PATH (errors ignored)."""
    monkeypatch.setenv("PATH", str(bin_dir))
    lines: list[str] = []
    check_tools(Report(lines.append, ignore_errors=True))
    return lines


def tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_no_container_client_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "oras", "echo 'Version: 1.2.0'")
    lines = run_tools(monkeypatch, bin_dir)
    assert "oras version : OK (Version: 1.2.0)" in lines
    assert "podman version : not found on PATH (optional: pushes, pulls and runs images, " \
        "no daemon needed)" in lines  # fmt: skip
    assert lines[-1].startswith("Container clients : An error occurred: DOCKER_COMMAND_ERROR")


def test_docker_without_its_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "docker", "echo 'Docker version 28.2.2, build e6534b4'")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    lines = run_tools(monkeypatch, bin_dir)
    docker = next(line for line in lines if line.startswith("docker version"))
    assert docker.startswith("docker version : WARNING: DOCKER_DAEMON_ERROR")
    assert f"no docker daemon answers at unix://{tmp_path}/no-daemon.sock" in docker
    # docker is the only client and cannot push or pull: an error.
    assert lines[-1].startswith("Container clients : An error occurred: DOCKER_DAEMON_ERROR")

    # With podman there too, docker's missing daemon is only a warning.
    tool(bin_dir, "podman", "echo 'podman version 4.3.1'")
    lines = run_tools(monkeypatch, bin_dir)
    assert lines[-1] == "Container clients : OK (podman)"


def test_podman_as_docker_needs_no_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "docker", "echo 'podman version 4.3.1'")  # podman-docker's shim
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    lines = run_tools(monkeypatch, bin_dir)
    assert "docker version : OK (podman version 4.3.1)" in lines
    assert lines[-1] == "Container clients : OK (docker)"


def test_a_tool_that_fails_or_hangs_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "skopeo", "echo 'skopeo: cannot read policy' >&2; exit 3")
    tool(bin_dir, "helm", "/bin/sleep 30")  # a child of the script: killed too
    tool(bin_dir, "buildah", "echo 'buildah version 1.28.2'")
    monkeypatch.setattr(health_local, "VERSION_TIMEOUT", 0.5)
    text = "\n".join(run_tools(monkeypatch, bin_dir))
    assert "skopeo version : WARNING: DOCKER_VERSION_ERROR\n" in text
    assert "'skopeo --version' failed: skopeo: cannot read policy" in text
    assert "helm version : WARNING: HELM_VERSION_ERROR\n" in text
    assert "'helm version --short' took over 0.5 s" in text
    assert text.endswith("Container clients : OK (buildah)")


# ------------------------------------------------------------------ credential files


def refresh_token(expires: datetime) -> str:
    return jwt.encode({"exp": int(expires.timestamp())}, "k" * 32, algorithm="HS256")


def auth_file(path: Path, entries: dict[str, object], **extra: object) -> Path:
    path.write_text(json.dumps({"auths": entries, **extra}))
    return path


def basic(username: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_credential_file_findings(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    missing = check_credential_file("f", tmp_path / "none.json", SERVER, LOGIN)
    assert missing.status is Status.WARNING
    assert missing.code == "CREDENTIAL_FILE_ERROR"
    assert missing.hint == f"Run '{LOGIN}' to write it."

    other = auth_file(tmp_path / "other.json", {"example.com": basic("u", "p")})
    assert check_credential_file("f", other, SERVER, LOGIN).status is Status.WARNING

    fresh = auth_file(
        tmp_path / "fresh.json", {SERVER: basic(NULL_GUID, refresh_token(now + timedelta(1)))}
    )
    assert check_credential_file("f", fresh, SERVER, LOGIN).status is Status.OK

    stale = refresh_token(now - timedelta(hours=1))
    expired = auth_file(tmp_path / "expired.json", {SERVER: basic(NULL_GUID, stale)})
    finding = check_credential_file("f", expired, SERVER, LOGIN)
    assert finding.status is Status.WARNING
    assert "the refresh token in it expired at" in finding.detail
    assert stale not in finding.render()  # never a secret in the report

    helper = auth_file(tmp_path / "helper.json", {}, credHelpers={SERVER: "hamn"})
    found = check_credential_file("f", helper, SERVER, LOGIN)
    assert found.status is Status.INFO
    assert "docker-credential-hamn answers" in found.detail

    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert check_credential_file("f", broken, SERVER, LOGIN).status is Status.WARNING


# ------------------------------------------------------------------ report


def test_report_stops_at_the_first_error_unless_ignoring() -> None:
    lines: list[str] = []
    report = Report(lines.append, ignore_errors=False)
    report.add(ok("A", "fine"))
    report.add(warning("B", "odd", "DOCKER_DAEMON_ERROR"))
    with pytest.raises(StopChecks):
        report.add(error("C", "CONNECTIVITY_DNS_ERROR", "x does not resolve"))
    assert lines[0] == "A : OK (fine)"
    assert lines[1].startswith("B : WARNING: DOCKER_DAEMON_ERROR\n    odd\n    What to do: ")
    assert lines[2].startswith(
        "C : An error occurred: CONNECTIVITY_DNS_ERROR\n    x does not resolve\n    What to do: "
    )
    assert [f.code for f in report.errors] == ["CONNECTIVITY_DNS_ERROR"]

    going = Report(lines.append, ignore_errors=True)
    going.add(error("C", "LOGIN_SERVER_ERROR", "gone"))
    going.add(error("D", "CONNECTIVITY_SSL_ERROR", "bad"))
    assert len(going.errors) == 2


def test_bearer_challenge() -> None:
    header = 'Bearer realm="https://r.example/oauth2/token",service="r.example",scope="a:b:c"'
    assert bearer_challenge(header) == {
        "realm": "https://r.example/oauth2/token",
        "service": "r.example",
        "scope": "a:b:c",
    }
    assert bearer_challenge('Basic realm="x"') is None
    assert bearer_challenge("") is None
