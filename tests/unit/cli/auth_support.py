"""Helpers for the sign-in tests: a fake hamn server over httpx.MockTransport, JWTs
with a chosen expiry, and an environment that keeps every file in a temp dir."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from hamn.cli import client as client_module
from hamn.cli import context

NULL_GUID = "00000000-0000-0000-0000-000000000000"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(exp: datetime, **claims: Any) -> str:
    """An unsigned-looking JWT with ``exp`` (the client never checks signatures)."""
    header = b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"exp": int(exp.timestamp()), **claims}).encode())
    return f"{header}.{body}.{b64url(b'signature')}"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class FakeServer:
    """A hamn server: ``/oauth2/exchange`` and a catalog that needs a known credential."""

    users: dict[str, str] = field(default_factory=lambda: {"alice": "wonderland"})
    lifetime: timedelta = timedelta(hours=24)
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def token(self) -> str:
        token = jwt(datetime.now(UTC) + self.lifetime, n=len(self.issued))
        self.issued.append(token)
        return token

    def accepted(self, authorization: str | None) -> bool:
        good = {basic(u, p) for u, p in self.users.items()}
        good |= {basic(NULL_GUID, t) for t in self.issued}
        return authorization in good

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth2/exchange":
            form = dict(parse_qsl(request.content.decode()))
            ok = (
                form.get("grant_type") == "password"
                and self.users.get(form.get("username", "")) == form.get("password")
            ) or (
                form.get("grant_type") == "refresh_token"
                and form.get("refresh_token") in self.issued
            )
            if ok:
                return httpx.Response(200, json={"refresh_token": self.token()})
            return unauthorized()
        if not self.accepted(request.headers.get("Authorization")):
            return unauthorized()
        if request.url.path.endswith("/_catalog"):
            return httpx.Response(200, json={"repositories": ["hello"]})
        return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND", "message": "no"}]})

    def form(self, index: int = -1) -> dict[str, str]:
        """The form of an exchange request (the last by default)."""
        exchanges = [r for r in self.requests if r.url.path == "/oauth2/exchange"]
        return dict(parse_qsl(exchanges[index].content.decode()))


def unauthorized() -> httpx.Response:
    body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
    return httpx.Response(401, json=body)


def use_fake_server(monkeypatch: pytest.MonkeyPatch, server: Callable[..., Any]) -> None:
    """Every client the CLI makes talks to ``server`` instead of the network."""
    real = client_module.RegistryClient
    factory = partial(real, transport=httpx.MockTransport(server), sleep=lambda _: None)
    monkeypatch.setattr(context, "RegistryClient", factory)


def isolate_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME, XDG dirs and docker's and podman's settings in ``tmp_path``, nothing else."""
    home = tmp_path / "home"
    home.mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for key in (
        "DOCKER_CONFIG",
        "REGISTRY_AUTH_FILE",
        "HAMN_OUTPUT",
        "HAMN_SERVER",
        "HAMN_REGISTRY",
        "HAMN_USERNAME",
        "HAMN_PASSWORD",
    ):
        monkeypatch.delenv(key, raising=False)
    return home
