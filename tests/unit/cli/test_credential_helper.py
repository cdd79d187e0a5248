"""``docker-credential-hamn``: docker's credential helper protocol over the session,
with the exchange replaced by a fake (no network)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from auth_support import NULL_GUID, jwt

from hamn.cli import credential_helper as helper
from hamn.cli.client import Credentials, RegistryError
from hamn.cli.session import Session, load_session, save_session, session_path

SERVER = "http://127.0.0.1:5000"


def signed_in(hours: float) -> Session:
    session = Session.from_token(SERVER, "alice", jwt(datetime.now(UTC) + timedelta(hours=hours)))
    save_session(session)
    return session


def run(action: str, stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    status = helper.run(action, io.StringIO(stdin), out)
    return status, out.getvalue()


class Trades:
    """A fake exchange that records what it was asked and answers fresh tokens."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.calls: list[tuple[str, Credentials]] = []
        self.refuse = refuse

    def __call__(self, server: str, credentials: Credentials) -> str:
        self.calls.append((server, credentials))
        if self.refuse:
            raise RegistryError(401, "POST", server + "/oauth2/exchange", message="no")
        return jwt(datetime.now(UTC) + timedelta(hours=24), n=len(self.calls))


@pytest.fixture
def trades(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Trades:
    fake = Trades()
    monkeypatch.setattr(helper, "exchange", fake)
    return fake


@pytest.mark.parametrize(
    "url", ["127.0.0.1:5000", "http://127.0.0.1:5000\n", "https://127.0.0.1:5000/v2/"]
)
def test_get_answers_the_session_token_for_its_server(trades: Trades, url: str) -> None:
    session = signed_in(hours=20)
    status, out = run("get", url)
    assert status == 0
    assert json.loads(out) == {
        "ServerURL": url.strip(),
        "Username": NULL_GUID,
        "Secret": session.refresh_token,
    }
    assert trades.calls == []


def test_get_for_another_server_or_without_a_session_is_not_found(trades: Trades) -> None:
    assert run("get", "127.0.0.1:5000") == (1, "credentials not found in native keychain\n")
    signed_in(hours=20)
    assert run("get", "quay.io") == (1, "credentials not found in native keychain\n")
    assert run("get", "127.0.0.1:5001") == (1, "credentials not found in native keychain\n")


def test_get_refreshes_a_token_near_its_end_and_keeps_the_new_one(trades: Trades) -> None:
    old = signed_in(hours=0.5)
    status, out = run("get", "127.0.0.1:5000")
    assert status == 0
    assert trades.calls == [(SERVER, Credentials(NULL_GUID, old.refresh_token))]
    fresh = json.loads(out)["Secret"]
    assert fresh != old.refresh_token
    saved = load_session()
    assert saved is not None and saved.refresh_token == fresh and saved.username == "alice"


def test_get_with_an_expired_session_is_not_found_and_says_why(
    trades: Trades, capsys: pytest.CaptureFixture[str]
) -> None:
    signed_in(hours=-1)
    assert run("get", "127.0.0.1:5000")[0] == 1
    assert "hamn auth login --server http://127.0.0.1:5000" in capsys.readouterr().err
    assert trades.calls == []


def test_store_trades_the_docker_login_for_a_session(trades: Trades) -> None:
    entry = {"ServerURL": "127.0.0.1:5000", "Username": "bob", "Secret": "builder"}
    assert run("store", json.dumps(entry)) == (0, "")
    assert trades.calls == [("127.0.0.1:5000", Credentials("bob", "builder"))]
    saved = load_session()
    assert saved is not None and saved.username == "bob" and saved.server == SERVER
    assert "builder" not in session_path().read_text()


def test_store_of_what_get_gave_is_a_no_op(trades: Trades) -> None:
    session = signed_in(hours=20)
    entry = {"ServerURL": "127.0.0.1:5000", "Username": NULL_GUID, "Secret": session.refresh_token}
    assert run("store", json.dumps(entry)) == (0, "")
    assert trades.calls == []


def test_store_refused_or_malformed_fails(trades: Trades) -> None:
    trades.refuse = True
    entry = {"ServerURL": "127.0.0.1:5000", "Username": "bob", "Secret": "wrong"}
    status, out = run("store", json.dumps(entry))
    assert status == 1 and "could not sign in" in out
    assert load_session() is None
    assert run("store", "not json")[0] == 1
    assert run("store", json.dumps({"ServerURL": "x"}))[0] == 1


def test_erase_forgets_the_session_of_that_server_only(trades: Trades) -> None:
    signed_in(hours=20)
    assert run("erase", "quay.io") == (0, "")
    assert load_session() is not None
    assert run("erase", "127.0.0.1:5000\n") == (0, "")
    assert load_session() is None


def test_list_and_version_and_unknown_actions(trades: Trades) -> None:
    assert run("list") == (0, "{}\n")
    signed_in(hours=20)
    assert json.loads(run("list")[1]) == {"127.0.0.1:5000": NULL_GUID}
    status, out = run("version")
    assert status == 0 and out.startswith("docker-credential-hamn ")
    assert run("frobnicate")[0] == 1
