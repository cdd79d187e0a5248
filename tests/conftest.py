"""Shared fixtures. The test tier is the folder a test lives in (unit, contract,
api, conformance, e2e); each test is marked with it automatically.

``live_registry`` starts a real ``hamn serve`` (a subprocess, embedded
defaults, a fresh data directory, a free port) for tests that talk HTTP to a
server the way clients do. Set ``HAMN_TEST_REGISTRY=host:port`` to aim those
tests at a server that is already running instead (another deployment, or
CNCF Distribution to check that a test itself is right).

Every server runs on the database and storage ``HAMN_TEST_BACKEND`` names
(``<database>+<storage>``, default ``sqlite+filesystem``; see backend_support.py):
:func:`start_hamn` gives each data directory its own database and storage there,
the same ones again when a server restarts on it. Tests that look inside the
default backend's files carry the ``filesystem_storage`` or ``sqlite_database``
marker and are skipped on the others.

Every server runs with authentication on. :func:`start_hamn` makes its bootstrap
owner (``HAMN_BOOTSTRAP_USERNAME`` / ``HAMN_BOOTSTRAP_PASSWORD``: a fixed user
name, a random password per data directory), and the :class:`LiveRegistry`
carries those credentials, so tests authenticate as a client would. For an
external server they come from ``HAMN_TEST_USERNAME`` / ``HAMN_TEST_PASSWORD``
(neither set: a server without authentication, e.g. Distribution).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend_support import (
    BACKEND_MARKERS,
    backend_env,
    check_services,
    current_backend,
    skip_reason,
)

TIERS = ("unit", "contract", "api", "conformance", "e2e")

#: The bootstrap owner's name on every server the tests start.
TEST_USERNAME = "hamn-test-owner"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a backend whose services are not running, before any test starts."""
    check_services(current_backend())


def pytest_report_header(config: pytest.Config) -> str:
    """Say which backend the run's servers use."""
    return f"hamn backend: {current_backend().name}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier, taken from its folder; refuse tests outside one.
    Skip tests that look inside a backend other than the run's."""
    root = Path(__file__).parent
    backend = current_backend()
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(root.resolve())
        tier = rel.parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{rel}: tests live in one of {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))
        for marker in BACKEND_MARKERS:
            reason = skip_reason(marker, backend) if item.get_closest_marker(marker) else None
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveRegistry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``url`` its http base URL;
    ``username`` / ``password`` an identity that may do everything (the bootstrap
    owner), both empty for an external server without authentication."""

    host: str
    data_dir: Path | None
    process: subprocess.Popen[bytes] | None
    log_path: Path | None
    username: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def auth(self) -> httpx.BasicAuth | None:
        """httpx's Basic auth with the registry's credentials (None when it has none)."""
        return httpx.BasicAuth(self.username, self.password) if self.username else None

    @property
    def creds(self) -> str | None:
        """``user:password``, as skopeo, buildah and podman take it in ``--creds``."""
        return f"{self.username}:{self.password}" if self.username else None

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def bootstrap_env(data_dir: Path) -> dict[str, str]:
    """``HAMN_BOOTSTRAP_USERNAME`` / ``HAMN_BOOTSTRAP_PASSWORD`` for a server on ``data_dir``.

    The password is random, made once per data directory and kept beside it, so
    a server restarted on the same data (whose owner already exists) gets the
    same one.
    """
    kept = data_dir.parent / f"{data_dir.name}-bootstrap-password"
    if not kept.exists():
        kept.write_text(secrets.token_urlsafe(24))
        kept.chmod(0o600)
    return {"HAMN_BOOTSTRAP_USERNAME": TEST_USERNAME, "HAMN_BOOTSTRAP_PASSWORD": kept.read_text()}


def start_hamn(
    data_dir: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None
) -> LiveRegistry:
    """Start ``hamn serve`` with a bootstrap owner and wait until ``/v2/`` answers.

    The server runs on the run's backend (:func:`backend_env`). ``env`` may set its
    own ``HAMN_BOOTSTRAP_*`` (the registry's credentials follow it) and backend
    settings (a test of several servers on one deployment).
    """
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the process keeps it
    # Every test reaches the server from 127.0.0.1, so the limits on failed sign-ins
    # (per address, and per address and user) would let one test's bad credentials
    # lock the owner out of the next test. The brute-force tests start their own
    # server with the limits as shipped.
    limits = {
        "HAMN_AUTH_FAILURES_PER_ADDRESS": "1000000",
        "HAMN_AUTH_FAILURES_PER_USER": "1000000",
    }
    server_env = {
        **os.environ, **limits, **bootstrap_env(data_dir), **backend_env(data_dir), **(env or {})
    }  # fmt: skip
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hamn",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env,
    )
    reg = LiveRegistry(
        f"127.0.0.1:{port}", data_dir, proc, log_path,
        server_env["HAMN_BOOTSTRAP_USERNAME"], server_env["HAMN_BOOTSTRAP_PASSWORD"],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hamn serve exited with {proc.returncode}:\n{reg.log()}")
        try:  # anonymous: 401 once authentication is on, 200 before
            if httpx.get(f"{reg.url}/v2/", timeout=1).status_code in (200, 401):
                return reg
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"hamn serve did not answer within 30 s:\n{reg.log()}")


def stop_hamn(reg: LiveRegistry) -> None:
    """Stop a server started by :func:`start_hamn` (SIGTERM, then SIGKILL)."""
    if reg.process is None or reg.process.poll() is not None:
        return
    reg.process.terminate()
    try:
        reg.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        reg.process.kill()
        reg.process.wait()


@pytest.fixture(scope="session")
def live_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    """One live registry shared by a test session (per xdist worker)."""
    external = os.environ.get("HAMN_TEST_REGISTRY")
    if external:
        yield LiveRegistry(
            external, None, None, None,
            os.environ.get("HAMN_TEST_USERNAME", ""), os.environ.get("HAMN_TEST_PASSWORD", ""),
        )  # fmt: skip
        return
    reg = start_hamn(tmp_path_factory.mktemp("hamn") / "data")
    try:
        yield reg
    finally:
        stop_hamn(reg)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveRegistry]]:
    """``start_server(*serve_args, env=...)`` starts a private ``hamn serve`` on
    ``tmp_path/data`` (see :func:`start_hamn`); every one started is stopped afterwards."""
    started: list[LiveRegistry] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> LiveRegistry:
        reg = start_hamn(tmp_path / "data", *extra, env=env)
        started.append(reg)
        return reg

    yield start
    for reg in started:
        stop_hamn(reg)
