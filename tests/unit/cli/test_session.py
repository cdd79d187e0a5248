"""The CLI session (hamn.cli.session) and ``hamn auth login|logout|show``, over a
mock transport: the exact exchange request, the file and its mode, and which
credentials every other command then sends, to which fake_server."""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_support import NULL_GUID, FakeServer, basic, jwt
from click.testing import CliRunner

from hamn.cli.client import Credentials, RegistryClient
from hamn.cli.main import cli
from hamn.cli.session import (
    Session,
    load_session,
    same_server,
    save_session,
    service_of,
    session_path,
    token_expiry,
    write_private_file,
)

SERVER = "http://hamn.test:5000"


def hamn(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="hamn", input=input)


def login(fake_server: str = SERVER) -> Any:
    result = hamn("auth", "login", "--server", fake_server, "-u", "alice", "-p", "wonderland")
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------ pure parts


def test_private_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "secret.json"
    old = os.umask(0)
    try:
        write_private_file(target, b"one")
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
        target.chmod(0o644)  # a file another tool left readable is replaced, not reused
        write_private_file(target, b"two")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["secret.json"]  # no temp left


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "secret.json"
    write_private_file(target, b"old")

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_private_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]


def test_token_expiry_reads_exp_and_tolerates_garbage() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert token_expiry(jwt(when)) == when
    for bad in ("", "a.b", "a.!!!.c", "a." + "e30" + ".c", "x.bm90IGpzb24.y"):
        assert token_expiry(bad) is None


def test_service_is_the_host_header_of_the_server() -> None:
    assert service_of("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert service_of("localhost:5000") == "localhost:5000"
    assert service_of("https://local.hamn.test") == "local.hamn.test"
    assert same_server("localhost:5000", "http://LOCALHOST:5000/")
    assert not same_server("http://a.test", "https://a.test")
    assert not same_server("http://a.test:1", "http://a.test:2")


def test_session_path_follows_xdg(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert session_path() == isolated_home / ".config/hamn/session.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert session_path() == isolated_home / ".config/hamn/session.json"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert session_path() == isolated_home / ".config/hamn/session.json"


def test_session_round_trip_and_damaged_file(isolated_home: Path) -> None:
    session = Session.from_token(SERVER, "alice", jwt(datetime(2030, 1, 1, tzinfo=UTC)))
    path = save_session(session)
    assert json.loads(path.read_text()) == {
        "server": SERVER,
        "username": "alice",
        "expiresOn": "2030-01-01T00:00:00Z",
        "refreshToken": session.refresh_token,
    }
    assert load_session() == session
    path.write_text('{"server": "x"}')
    with pytest.raises(Exception, match="damaged"):
        load_session()


# ------------------------------------------------------------------ auth login


def test_auth_login_exchanges_the_password_and_keeps_the_token(
    fake_server: FakeServer, isolated_home: Path
) -> None:
    result = login()
    assert len(fake_server.requests) == 1
    request = fake_server.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{SERVER}/oauth2/exchange")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert fake_server.form() == {
        "grant_type": "password",
        "username": "alice",
        "password": "wonderland",
        "service": "hamn.test:5000",
    }
    path = isolated_home / ".config/hamn/session.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["refreshToken"] == fake_server.issued[0]
    assert saved["server"] == SERVER and saved["username"] == "alice"
    shown = json.loads(result.stdout)
    assert shown == {k: saved[k] for k in ("server", "username", "expiresOn")}
    assert "wonderland" not in path.read_text()


def test_auth_login_reads_the_environment_and_prompts_for_nothing_without_a_tty(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAMN_SERVER", SERVER)
    monkeypatch.setenv("HAMN_USERNAME", "alice")
    monkeypatch.setenv("HAMN_PASSWORD", "wonderland")
    assert hamn("auth", "login").exit_code == 0
    assert fake_server.form()["username"] == "alice"
    monkeypatch.delenv("HAMN_PASSWORD")
    result = hamn("auth", "login")
    assert result.exit_code == 2
    assert "--password/-p (or set HAMN_PASSWORD)" in result.stderr


def test_auth_login_prompts_for_the_password_on_a_terminal(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["hamn.cli.commands.auth"], "interactive", lambda: True)
    monkeypatch.setattr("click.prompt", lambda *a, **k: "wonderland")
    result = hamn("auth", "login", "--server", SERVER, "-u", "alice")
    assert result.exit_code == 0, result.output
    assert fake_server.form()["password"] == "wonderland"


def test_auth_login_with_a_bad_password_says_so_and_keeps_nothing(
    fake_server: FakeServer, isolated_home: Path
) -> None:
    result = hamn("auth", "login", "--server", SERVER, "-u", "alice", "-p", "nope")
    assert result.exit_code == 1
    assert "refused the username or password" in result.stderr
    assert not (isolated_home / ".config/hamn/session.json").exists()


def test_auth_show_and_logout(fake_server: FakeServer, isolated_home: Path) -> None:
    assert hamn("auth", "show").exit_code == 1
    login()
    shown = json.loads(hamn("auth", "show").stdout)
    assert set(shown) == {"server", "username", "expiresOn"}
    assert fake_server.issued[0] not in hamn("auth", "show", "-o", "yaml").stdout
    assert hamn("auth", "logout").exit_code == 0
    assert not session_path().exists()
    again = hamn("auth", "logout")
    assert again.exit_code == 0 and "Not signed in" in again.stderr


# ------------------------------------------------------------------ precedence


def authorizations(fake_server: FakeServer) -> list[str | None]:
    return [
        r.headers.get("Authorization")
        for r in fake_server.requests
        if r.url.path == "/v2/local/_catalog"
    ]


def test_commands_use_the_session_on_its_server_by_default(fake_server: FakeServer) -> None:
    login()
    result = hamn("repository", "list", "-n", "local")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["hello"]
    catalog = next(r for r in fake_server.requests if r.url.path == "/v2/local/_catalog")
    assert str(catalog.url).startswith(f"{SERVER}/v2/local/_catalog")
    assert {r.headers["Authorization"] for r in fake_server.requests[1:]} == {
        basic(NULL_GUID, fake_server.issued[0])
    }


def test_credentials_precedence(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server.users["bob"] = "builder"
    login()
    args = ("repository", "list", "-n", "local", "--server", SERVER)
    monkeypatch.setenv("HAMN_USERNAME", "bob")
    monkeypatch.setenv("HAMN_PASSWORD", "builder")
    assert hamn(*args, "-u", "alice", "-p", "wonderland").exit_code == 0
    assert hamn(*args).exit_code == 0
    monkeypatch.delenv("HAMN_USERNAME")
    monkeypatch.delenv("HAMN_PASSWORD")
    assert hamn(*args).exit_code == 0
    assert authorizations(fake_server) == [
        basic("alice", "wonderland"),
        basic("bob", "builder"),
        basic(NULL_GUID, fake_server.issued[0]),
    ]


def test_the_session_never_goes_to_another_server(fake_server: FakeServer) -> None:
    login()
    result = hamn("repository", "list", "-n", "local", "--server", "http://other.test:5000")
    assert result.exit_code == 1
    assert authorizations(fake_server) == [None]
    assert str(fake_server.requests[-1].url).startswith("http://other.test:5000/")
    assert "hamn auth login --server http://other.test:5000" in result.stderr
    assert "-u/--username and -p/--password" in result.stderr


def test_hamn_server_overrides_the_sessions_server(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    login()
    monkeypatch.setenv("HAMN_SERVER", "http://other.test:5000")
    hamn("repository", "list", "-n", "local")
    assert str(fake_server.requests[-1].url).startswith("http://other.test:5000/")
    assert authorizations(fake_server) == [None]


def test_an_expired_session_says_to_sign_in_again(fake_server: FakeServer) -> None:
    fake_server.lifetime = timedelta(seconds=-1)
    login()
    result = hamn("repository", "list", "-n", "local")
    assert result.exit_code == 1
    assert "expired" in result.stderr
    assert f"hamn auth login --server {SERVER}" in result.stderr
    assert authorizations(fake_server) == []
    # Explicit credentials still work while the session is stale.
    explicit = hamn("repository", "list", "-n", "local", "-u", "alice", "-p", "wonderland")
    assert explicit.exit_code == 0


def test_a_refused_session_says_how_to_sign_in(fake_server: FakeServer) -> None:
    login()
    fake_server.issued.clear()  # the server forgot the token (secret changed, user disabled)
    result = hamn("repository", "list", "-n", "local")
    assert result.exit_code == 1
    assert f"hamn auth login --server {SERVER}" in result.stderr


# ------------------------------------------------------------------ redaction


@pytest.mark.parametrize(
    "credentials",
    [Credentials("alice", "wonderland"), Credentials(NULL_GUID, "old-refresh-token")],
)
def test_debug_log_redacts_the_exchange(debug_log: list[str], credentials: Credentials) -> None:
    fake = FakeServer()
    fake.issued.append("old-refresh-token")
    client = RegistryClient(SERVER, "", transport=httpx.MockTransport(fake))
    token = client.exchange(credentials)
    text = "\n".join(debug_log)
    assert "Request body:" in text and "service=hamn.test%3A5000" in text
    for secret in ("wonderland", "old-refresh-token", token):
        assert secret not in text
    assert "REDACTED" in text


def test_hamn_debug_never_prints_the_session_token(fake_server: FakeServer) -> None:
    login()
    result = hamn("repository", "list", "-n", "local", "--debug")
    assert result.exit_code == 0
    assert fake_server.issued[0] not in result.output
    assert fake_server.issued[0] not in result.stderr


def test_exchange_without_a_refresh_token_in_the_answer_fails_clearly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    client = RegistryClient(SERVER, "", transport=httpx.MockTransport(handler))
    with pytest.raises(Exception, match="no refresh_token"):
        client.exchange(Credentials("alice", "x"))
