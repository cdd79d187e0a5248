"""``hamn login`` and ``hamn kube-secret`` over a mock transport: the exchange they
send, the files they write (merged, 0600, where docker and podman read them), the
login server key, ``--expose-token`` and the imagePullSecret."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from auth_support import NULL_GUID, FakeServer
from click.testing import CliRunner

from hamn.cli.main import cli

SERVER = "http://127.0.0.1:5000"
LOGIN = ("-u", "alice", "-p", "wonderland")


def hamn(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="hamn")


def decode(entry: dict[str, Any]) -> tuple[str, str]:
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def test_login_writes_docker_and_containers_auth_files(
    fake_server: FakeServer, isolated_home: Path, tmp_path: Path
) -> None:
    result = hamn("login", "-n", "local", "--server", SERVER, *LOGIN)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Login Succeeded\n"
    assert "127.0.0.1:5000/local/<repository>" in result.stderr  # path-routed hint
    assert fake_server.form() == {
        "grant_type": "password",
        "username": "alice",
        "password": "wonderland",
        "service": "127.0.0.1:5000",
    }
    for path in (isolated_home / ".docker/config.json", tmp_path / "run/containers/auth.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        entry = json.loads(path.read_text())["auths"]["127.0.0.1:5000"]
        assert decode(entry) == (NULL_GUID, fake_server.issued[0])
        assert "wonderland" not in path.read_text()


def test_login_merges_and_keeps_other_entries(
    fake_server: FakeServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "quay.io": {"auth": "cXVheTpx"},
                    "127.0.0.1:5000": {"auth": "b2xkOm9sZA==", "identitytoken": "stale"},
                },
                "psFormat": "table {{.ID}}",
            }
        )
    )
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"docker.io": {"auth": "ZDpk"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    assert hamn("login", "-n", "local", "--server", SERVER, *LOGIN).exit_code == 0
    config = json.loads((docker / "config.json").read_text())
    assert config["psFormat"] == "table {{.ID}}"
    assert config["auths"]["quay.io"] == {"auth": "cXVheTpx"}
    assert list(config["auths"]["127.0.0.1:5000"]) == ["auth"]  # the stale token is gone
    auths = json.loads(auth_file.read_text())["auths"]
    assert auths["docker.io"] == {"auth": "ZDpk"}
    assert decode(auths["127.0.0.1:5000"]) == (NULL_GUID, fake_server.issued[0])
    assert not (isolated_home / ".docker").exists()


def test_login_without_runtime_dir_writes_the_config_home_auth_file(
    fake_server: FakeServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert hamn("login", "-n", "local", "--server", SERVER, *LOGIN).exit_code == 0
    assert (isolated_home / ".config/containers/auth.json").is_file()


def test_login_refuses_a_missing_runtime_dir_and_writes_nothing(
    fake_server: FakeServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    result = hamn("login", "-n", "local", "--server", SERVER, *LOGIN)
    assert result.exit_code == 1
    assert "XDG_RUNTIME_DIR" in result.stderr
    assert not (isolated_home / ".docker/config.json").exists()


def test_login_keys_a_login_server_by_its_host(
    fake_server: FakeServer, isolated_home: Path
) -> None:
    result = hamn("login", "-n", "Local", "--server", "http://local.localhost:5000", *LOGIN)
    assert result.exit_code == 0, result.output
    assert "addressed" not in result.stderr
    assert fake_server.form()["service"] == "local.localhost:5000"
    auths = json.loads((isolated_home / ".docker/config.json").read_text())["auths"]
    assert list(auths) == ["local.localhost:5000"]


def test_login_with_the_session_trades_its_refresh_token(fake_server: FakeServer) -> None:
    assert hamn("auth", "login", "--server", SERVER, *LOGIN).exit_code == 0
    assert hamn("login", "-n", "local").exit_code == 0
    assert fake_server.form() == {
        "grant_type": "refresh_token",
        "refresh_token": fake_server.issued[0],
        "service": "127.0.0.1:5000",
    }


def test_login_without_credentials_says_how_to_sign_in(fake_server: FakeServer) -> None:
    result = hamn("login", "-n", "local", "--server", SERVER)
    assert result.exit_code == 1
    assert f"hamn auth login --server {SERVER}" in result.stderr
    assert fake_server.requests == []


def test_login_with_a_bad_password_writes_nothing(
    fake_server: FakeServer, isolated_home: Path
) -> None:
    result = hamn("login", "-n", "local", "--server", SERVER, "-u", "alice", "-p", "no")
    assert result.exit_code == 1
    assert "-u/--username and -p/--password" in result.stderr
    assert not (isolated_home / ".docker").exists()


def test_login_warns_when_docker_asks_a_credential_store(
    fake_server: FakeServer, isolated_home: Path
) -> None:
    (isolated_home / ".docker").mkdir()
    (isolated_home / ".docker/config.json").write_text(json.dumps({"credsStore": "desktop"}))
    result = hamn("login", "-n", "local", "--server", SERVER, *LOGIN)
    assert result.exit_code == 0
    assert "docker-credential-desktop" in result.stderr


def test_expose_token_prints_acr_shape_and_writes_nothing(
    fake_server: FakeServer, isolated_home: Path, tmp_path: Path
) -> None:
    result = hamn("login", "-n", "local", "--server", SERVER, *LOGIN, "--expose-token")
    assert result.exit_code == 0, result.output
    token = fake_server.issued[0]
    assert json.loads(result.stdout) == {
        "loginServer": "127.0.0.1:5000",
        "username": NULL_GUID,
        "accessToken": token,
        "refreshToken": token,
    }
    assert "docker login 127.0.0.1:5000" in result.stderr
    tsv = hamn("login", "-n", "local", "--server", SERVER, *LOGIN, "-t")
    assert tsv.exit_code == 0
    assert not (isolated_home / ".docker").exists()
    assert not (tmp_path / "run/containers").exists()
    query = ("--query", "accessToken", "-o", "tsv")
    only = hamn("login", "-n", "local", "--server", SERVER, *LOGIN, "-t", *query)
    assert only.stdout == fake_server.issued[-1] + "\n"


def secret_config(secret: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    return config


def test_kube_secret_with_credentials_is_yaml_and_holds_them(fake_server: FakeServer) -> None:
    result = hamn(
        "kube-secret", "-n", "local", "--server", SERVER, "-u", "pull-token", "-p", "s3cret"
    )
    assert result.exit_code == 0, result.output
    secret = yaml.safe_load(result.stdout)
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"] == {"name": "local-pull"}
    entry = secret_config(secret)["auths"]["127.0.0.1:5000"]
    assert (entry["username"], entry["password"]) == ("pull-token", "s3cret")
    assert decode(entry) == ("pull-token", "s3cret")
    assert "expires" not in result.stderr
    assert fake_server.requests == []  # the given credentials are used as they are


def test_kube_secret_from_the_session_warns_and_takes_a_fresh_token(
    fake_server: FakeServer,
) -> None:
    assert hamn("auth", "login", "--server", SERVER, *LOGIN).exit_code == 0
    result = hamn(
        "kube-secret", "-n", "local", "--secret-name", "pull", "--namespace", "apps", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    secret = json.loads(result.stdout)
    assert secret["metadata"] == {"name": "pull", "namespace": "apps"}
    entry = secret_config(secret)["auths"]["127.0.0.1:5000"]
    assert (entry["username"], entry["password"]) == (NULL_GUID, fake_server.issued[-1])
    assert len(fake_server.issued) == 2
    assert "WARNING:" in result.stderr and "expires" in result.stderr
