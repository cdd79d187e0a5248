"""``docker-credential-hamn``: docker's credential helper protocol, backed by the session.

Set ``"credHelpers": {"<host:port>": "hamn"}`` (or ``"credsStore": "hamn"``) in
docker's ``config.json`` and docker asks this program for credentials instead
of keeping a password in the file. The protocol: the action is the one
argument; the input comes on stdin, the answer on stdout.

* ``get`` (stdin: a server URL): ``{"ServerURL", "Username", "Secret"}`` with the
  null GUID and a refresh token when the ``hamn auth login`` session is for
  that server: the session's own token while it has more than
  :data:`REFRESH_BEFORE` left, else a fresh one from ``/oauth2/exchange``, kept
  in the session. Any other server: exit status 1 and the protocol's
  "credentials not found in native keychain", so docker goes on without.
* ``store`` (stdin: ``{"ServerURL", "Username", "Secret"}``, after a ``docker
  login``): the credentials are traded for a refresh token and become the
  session, so nothing secret is kept on disk beyond the session itself.
* ``erase`` (stdin: a server URL, on ``docker logout``): forgets the session
  when it is for that server.
* ``list``: ``{"<server>": "<username>"}`` for the session's server.
* ``version``: the program's version.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO

from hamn import __version__
from hamn.cli.client import (
    NULL_GUID,
    Credentials,
    RegistryClient,
    RegistryError,
    ServerUnreachable,
)
from hamn.cli.errors import CLIError
from hamn.cli.session import (
    Session,
    delete_session,
    load_session,
    save_session,
    service_of,
)

#: The protocol's "not found" message: docker then goes on without credentials.
NOT_FOUND = "credentials not found in native keychain"
#: A session token with less than this left is traded for a fresh one before use.
REFRESH_BEFORE = timedelta(hours=1)

Exchange = Callable[[str, Credentials], str]


class HelperError(Exception):
    """The helper failed; the message goes to stdout, as the protocol wants."""


def host_of(server_url: str) -> str:
    """``host[:port]`` of what docker passes: a URL, a ``host:port``, maybe with a path."""
    value = server_url.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    return value.split("/", 1)[0].lower()


def exchange(server: str, credentials: Credentials) -> str:
    """A refresh token for ``credentials`` from ``server``'s ``/oauth2/exchange``."""
    with RegistryClient(server, "") as client:
        return client.exchange(credentials)


def _session_for(server_url: str) -> Session | None:
    session = load_session()
    if session is None or service_of(session.server).lower() != host_of(server_url):
        return None
    return session


def get(server_url: str, *, trade: Exchange | None = None, now: datetime | None = None) -> str:
    """The ``get`` answer for ``server_url`` (JSON), or :class:`HelperError`."""
    trade = trade or exchange
    server_url = server_url.strip()
    session = _session_for(server_url)
    now = now or datetime.now(UTC)
    if session is None:
        raise HelperError(NOT_FOUND)
    if session.expired(now):
        print(
            f"docker-credential-hamn: the hamn session for {session.server} has expired; "
            f"run 'hamn auth login --server {session.server}'.",
            file=sys.stderr,
        )
        raise HelperError(NOT_FOUND)
    token = session.refresh_token
    if session.expires_on - now < REFRESH_BEFORE:
        try:
            token = trade(session.server, session.credentials())
        except (RegistryError, ServerUnreachable) as exc:
            # The old token still works for a while; docker may still succeed with it.
            print(f"docker-credential-hamn: could not refresh ({exc})", file=sys.stderr)
        else:
            save_session(Session.from_token(session.server, session.username, token))
    return json.dumps({"ServerURL": server_url, "Username": NULL_GUID, "Secret": token})


def store(payload: str, *, trade: Exchange | None = None) -> None:
    """``store``: trade the credentials docker logged in with for a session."""
    trade = trade or exchange
    try:
        entry = json.loads(payload)
        server_url, username, secret = entry["ServerURL"], entry["Username"], entry["Secret"]
    except (ValueError, KeyError, TypeError):
        raise HelperError('store expects {"ServerURL", "Username", "Secret"}') from None
    if not all(isinstance(v, str) and v for v in (server_url, username, secret)):
        raise HelperError("store expects non-empty ServerURL, Username and Secret")
    current = _session_for(server_url)
    server = current.server if current is not None else host_of(server_url)
    if current is not None and secret == current.refresh_token:
        return  # docker stores what get just gave it
    try:
        token = trade(server, Credentials(username, secret))
    except (RegistryError, ServerUnreachable) as exc:
        raise HelperError(f"could not sign in to {server}: {exc}") from None
    shown = current.username if current is not None and username == NULL_GUID else username
    save_session(Session.from_token(server, shown, token))


def erase(server_url: str) -> None:
    """``erase``: forget the session when it is for ``server_url``."""
    if _session_for(server_url) is not None:
        delete_session()


def list_servers() -> str:
    """``list``: the session's server and the username ``get`` answers with."""
    session = load_session()
    servers = {} if session is None else {service_of(session.server): NULL_GUID}
    return json.dumps(servers)


def run(action: str, stdin: IO[str], stdout: IO[str]) -> int:
    """Carry out one protocol action; the exit status."""
    try:
        if action == "get":
            stdout.write(get(stdin.read()) + "\n")
        elif action == "store":
            store(stdin.read())
        elif action == "erase":
            erase(stdin.read())
        elif action == "list":
            stdout.write(list_servers() + "\n")
        elif action == "version":
            stdout.write(f"docker-credential-hamn {__version__}\n")
        else:
            stdout.write(f"unknown action: {action} (get, store, erase, list, version)\n")
            return 1
    except HelperError as exc:
        stdout.write(f"{exc}\n")
        return 1
    except CLIError as exc:
        stdout.write(f"{exc.format_message()}\n")
        return 1
    return 0


def main() -> None:
    """Console entry point: ``docker-credential-hamn get|store|erase|list|version``."""
    if len(sys.argv) != 2:
        sys.stderr.write("usage: docker-credential-hamn get|store|erase|list|version\n")
        sys.exit(1)
    sys.exit(run(sys.argv[1], sys.stdin, sys.stdout))
