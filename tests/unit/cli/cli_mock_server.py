"""A scripted management API for the CLI's unit tests (no network).

:class:`MockServer` answers the requests a command sends, through
``httpx.MockTransport``, from answers the test scripted for exact
``(method, path)`` pairs, and records every request so the test can check the
method, path, query and JSON body. An unscripted request is answered 599, which
the test sees as a failure. The ``mock_server`` fixture makes every
``RegistryClient`` the CLI builds use it; ``run_hamn`` runs ``hamn`` with
click's runner in an environment with no HAMN_* variables and no session.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from hamn.cli.client import RegistryClient
from hamn.cli.main import cli

SERVER = "http://hamn.test:5000"

REGISTRY = {
    "id": "/registries/myRegistry",
    "name": "myRegistry",
    "type": "Microsoft.ContainerRegistry/registries",
    "location": "local",
    "loginServer": "myregistry.localhost",
    "sku": {"name": "Standard", "tier": "Standard"},
    "adminUserEnabled": True,
    "anonymousPullEnabled": False,
    "creationDate": "2026-01-02T03:04:05.123456Z",
    "provisioningState": "Succeeded",
    "policies": {
        "quarantinePolicy": {"status": "disabled"},
        "trustPolicy": {"type": "Notary", "status": "disabled"},
        "retentionPolicy": {"days": 7, "status": "disabled", "lastUpdatedTime": None},
        "softDeletePolicy": {"retentionDays": 7, "status": "disabled"},
        "exportPolicy": {"status": "enabled"},
    },
}


def error(status: int, code: str, message: str) -> tuple[int, Any]:
    """An answer in the registry's error envelope."""
    return status, {"errors": [{"code": code, "message": message, "detail": None}]}


@dataclass
class Sent:
    """One request as the server saw it."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: httpx.Headers


@dataclass
class MockServer:
    """Scripted answers per ``(method, path)``, and the requests received."""

    answers: dict[tuple[str, str], deque[tuple[int, Any]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    sent: list[Sent] = field(default_factory=list)

    def on(self, method: str, path: str, status: int = 200, body: Any = None) -> MockServer:
        """Answer the next ``method path`` with ``status`` and a JSON ``body`` (None: empty)."""
        self.answers[(method, path)].append((status, body))
        return self

    def fail(self, method: str, path: str, status: int, code: str, message: str) -> MockServer:
        """Answer the next ``method path`` with an error envelope."""
        self.answers[(method, path)].append(error(status, code, message))
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.sent.append(
            Sent(request.method, path, dict(request.url.params), body, request.headers)
        )
        queue = self.answers.get((request.method, path))
        if not queue:
            return httpx.Response(599, json={"errors": [{"code": "UNSCRIPTED", "message": path}]})
        status, answer = queue[0] if len(queue) == 1 else queue.popleft()
        if answer is None:
            return httpx.Response(status)
        return httpx.Response(status, json=answer)

    def requests(self) -> list[tuple[str, str, Any]]:
        """``(method, path, body)`` of every request, in order."""
        return [(s.method, s.path, s.body) for s in self.sent]


@pytest.fixture
def mock_server(monkeypatch: pytest.MonkeyPatch) -> MockServer:
    """A scripted server behind every ``RegistryClient`` the CLI makes."""
    server = MockServer()
    original = RegistryClient.__init__

    def init(self: RegistryClient, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transport", httpx.MockTransport(server.handle))
        kwargs.setdefault("sleep", lambda _: None)
        original(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, "__init__", init)
    return server


@pytest.fixture
def run_hamn(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Callable[..., Result]]:
    """``run_hamn(*args)``: ``hamn args --server SERVER`` in a clean environment."""
    for key in ("HAMN_OUTPUT", "HAMN_SERVER", "HAMN_REGISTRY", "HAMN_USERNAME", "HAMN_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    # No session of the user running the tests may leak in.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path))

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            cli, [*args], env={"HAMN_SERVER": SERVER, **(env or {})}, prog_name="hamn"
        )

    yield run


def assert_error(result: Result, *fragments: str, code: int = 1) -> None:
    """A failure: ``code``, nothing on stdout, ``ERROR:`` first on stderr, every fragment."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert lines, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
