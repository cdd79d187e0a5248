"""Checks of this machine: the client tools on PATH, docker's daemon, and the credential
files ``hamn login`` writes.

A missing tool is a warning, not an error: a registry user needs one container
client, not all of them. Only when none of podman, buildah, skopeo and docker is
found is it an error (az's ``DOCKER_COMMAND_ERROR``). No daemon is required:
podman, buildah and skopeo push and pull without one; only docker needs dockerd,
and its absence is an error only when docker is the one client there is.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hamn.cli.client import NULL_GUID
from hamn.cli.errors import CLIError
from hamn.cli.health import Finding, Report, error, info, ok, warning
from hamn.cli.session import read_json_file, token_expiry

#: Seconds one ``<tool> --version`` may take (a hung tool must not hang the report).
VERSION_TIMEOUT = 5.0
#: Seconds to wait for docker's daemon to answer ``/_ping``.
DAEMON_TIMEOUT = 2.0
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class Tool:
    """A client a registry user may have: how to ask its version, and what it is for."""

    name: str
    version_args: tuple[str, ...]
    purpose: str
    container_client: bool = False
    code: str = "DOCKER_VERSION_ERROR"


TOOLS = (
    Tool("podman", ("--version",), "pushes, pulls and runs images, no daemon needed", True),
    Tool("buildah", ("--version",), "builds and pushes images, no daemon needed", True),
    Tool("skopeo", ("--version",), "copies and inspects images, no daemon needed", True),
    Tool("docker", ("--version",), "pushes and pulls images through the docker daemon", True),
    Tool("oras", ("version",), "pushes and pulls OCI artifacts"),
    Tool("helm", ("version", "--short"), "pushes charts to oci://", code="HELM_VERSION_ERROR"),
    Tool("notation", ("version",), "signs and verifies images", code="NOTARY_VERSION_ERROR"),
    Tool("cosign", ("version",), "signs and verifies images", code="NOTARY_VERSION_ERROR"),
)


def _version_line(output: str) -> str:
    """The line of a version answer that names the version (tools print banners)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "version" in line.lower() and any(c.isdigit() for c in line):
            return line[:120]
    return lines[0][:120] if lines else ""


def tool_version(path: str, tool: Tool) -> tuple[str | None, str]:
    """``(version line, "")`` or ``(None, why it could not be read)``."""
    command = f"'{tool.name} {' '.join(tool.version_args)}'"
    try:
        # A session of its own: on a timeout the whole group is killed, so a wrapper
        # script's child cannot keep the pipes open (and the report waiting).
        with subprocess.Popen(
            [path, *tool.version_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=VERSION_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return None, f"{command} took over {VERSION_TIMEOUT:g} s"
    except OSError as exc:
        return None, f"cannot run {path}: {exc.strerror or exc}"
    line = _version_line(stdout) or _version_line(stderr)
    if proc.returncode != 0 or not line:
        why = _version_line(stderr) or f"exit status {proc.returncode}"
        return None, f"{command} failed: {why}"
    return line, ""


def docker_daemon_address() -> str:
    """Where docker looks for its daemon: ``$DOCKER_HOST``, else its default socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_DOCKER_SOCKET}"


def docker_daemon_answers(address: str, timeout: float = DAEMON_TIMEOUT) -> bool:
    """True when a docker daemon at ``address`` (``unix://`` or ``tcp://``) answers ``/_ping``."""
    try:
        if address.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            target: str | tuple[str, int] = address.removeprefix("unix://")
        elif address.startswith("tcp://"):
            host, _, port = address.removeprefix("tcp://").rstrip("/").rpartition(":")
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.settimeout(timeout)
            target = (host.strip("[]"), int(port))
        else:
            return False
        with sock:
            sock.connect(target)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except (OSError, ValueError):
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


def check_tools(report: Report) -> None:
    """One line per tool (found with its version, or not found), then whether any
    container client is usable."""
    usable: list[str] = []
    docker_only_needs_daemon = False
    for tool in TOOLS:
        label = f"{tool.name} version"
        path = shutil.which(tool.name)
        if path is None:
            report.add(info(label, f"not found on PATH (optional: {tool.purpose})"))
            continue
        version, why = tool_version(path, tool)
        if version is None:
            report.add(warning(label, why, tool.code))
            continue
        if tool.name == "docker" and "podman" not in version.lower():
            address = docker_daemon_address()
            if not docker_daemon_answers(address):
                report.add(
                    warning(
                        label,
                        f"{version}, but no docker daemon answers at {address}",
                        "DOCKER_DAEMON_ERROR",
                    )
                )
                docker_only_needs_daemon = True
                continue
            version += f"; daemon at {address}"
        report.add(ok(label, version))
        if tool.container_client:
            usable.append(tool.name)
    label = "Container clients"
    if usable:
        report.add(ok(label, ", ".join(usable)))
    elif docker_only_needs_daemon:
        report.add(
            error(
                label,
                "DOCKER_DAEMON_ERROR",
                "docker is the only container client here, and no docker daemon answers",
            )
        )
    else:
        report.add(
            error(
                label,
                "DOCKER_COMMAND_ERROR",
                "none of podman, buildah, skopeo and docker is on PATH (or none of them runs)",
            )
        )


# ------------------------------------------------------------------ credential files


def _entry_problem(entry: object, now: datetime) -> str | None:
    """What is wrong with an auth file entry ``hamn login`` wrote; None when it looks usable."""
    if not isinstance(entry, dict):
        return "the entry is not a JSON object"
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        # docker may keep an identitytoken instead, or a helper keeps the secret.
        return None
    try:
        username, _, secret = base64.b64decode(encoded).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "its 'auth' value is not base64 of user:password"
    if username != NULL_GUID:
        return None
    expiry = token_expiry(secret)
    if expiry is not None and expiry <= now:
        return f"the refresh token in it expired at {expiry:%Y-%m-%dT%H:%M:%SZ}"
    return None


def check_credential_file(
    label: str,
    path: Path | None,
    login_server: str,
    login_command: str,
    now: datetime | None = None,
) -> Finding:
    """Whether the auth file at ``path`` has a usable entry for ``login_server``;
    ``login_command`` is what writes one."""
    hint = f"Run '{login_command}' to write it."
    if path is None:
        return warning(label, "the file's place cannot be told", "CREDENTIAL_FILE_ERROR", hint)
    try:
        data = read_json_file(path)
    except CLIError as exc:
        return warning(label, exc.format_message(), "CREDENTIAL_FILE_ERROR", hint)
    auths = data.get("auths")
    entry = auths.get(login_server) if isinstance(auths, dict) else None
    helpers = data.get("credHelpers")
    helper = helpers.get(login_server) if isinstance(helpers, dict) else None
    if entry is None:
        if helper:
            return info(label, f"{path}: docker-credential-{helper} answers for {login_server}")
        return warning(
            label, f"{path} has no entry for {login_server}", "CREDENTIAL_FILE_ERROR", hint
        )
    problem = _entry_problem(entry, now or datetime.now(UTC))
    if problem:
        return warning(
            label, f"{path}, entry {login_server}: {problem}", "CREDENTIAL_FILE_ERROR", hint
        )
    return ok(label, f"{path} has an entry for {login_server}")


def check_credential_files(
    report: Report,
    login_server: str,
    login_command: str,
    docker_config: Path,
    containers_auth: Path | None,
) -> None:
    """The docker and containers auth files: entries for ``login_server`` (warnings only)."""
    for label, path in (
        ("docker credentials", docker_config),
        ("podman/buildah/skopeo credentials", containers_auth),
    ):
        report.add(check_credential_file(label, path, login_server, login_command))
