"""``hamn auth login|logout|show``: sign the CLI in to a hamn server, once.

``login`` trades ``-u/-p`` for a refresh token at ``/oauth2/exchange`` and keeps
it in the session file (:mod:`hamn.cli.session`); every later command with
server options uses it, on that server only, until it expires. The password is
never kept. ``show`` prints who is signed in where and until when (never the
token); ``logout`` forgets the session.
"""

from __future__ import annotations

import logging
import sys

import click

from hamn.cli.client import DEFAULT_SERVER, Credentials, RegistryError
from hamn.cli.context import (
    ENV_PASSWORD,
    ENV_SERVER,
    ENV_USERNAME,
    HamnGroup,
    Invocation,
    command,
    describe,
    usage_error,
)
from hamn.cli.errors import CLIError
from hamn.cli.session import (
    Session,
    delete_session,
    load_session,
    save_session,
    session_path,
)

log = logging.getLogger("hamn.cli")

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@click.group("auth", cls=HamnGroup)
def auth() -> None:
    """Sign the CLI in to a hamn server (a session kept in your config directory)."""


def interactive() -> bool:
    """True when someone can answer a prompt (stdin is a terminal)."""
    return sys.stdin.isatty()


def _ask(value: str | None, prompt: str, flag: str, env: str, *, secret: bool) -> str:
    """The option's value, else a prompt on a terminal, else a usage error."""
    if value:
        return value
    if not interactive():
        raise usage_error(f"the following arguments are required: {flag} (or set {env})")
    answer: str = click.prompt(prompt, hide_input=secret, err=True)
    return answer


def _default_server() -> str:
    try:
        session = load_session()
    except CLIError:
        session = None  # a damaged file is about to be replaced
    return session.server if session is not None else DEFAULT_SERVER


@command(auth, "login", server=False)
@click.option(
    "--server",
    envvar=ENV_SERVER,
    metavar="URL",
    help=f"The hamn server (default: ${ENV_SERVER}, else the current session's server, "
    f"else {DEFAULT_SERVER}).",
)
@click.option(
    "-u", "--username", envvar=ENV_USERNAME, help=f"Your username (default: ${ENV_USERNAME})."
)
@click.option(
    "-p",
    "--password",
    envvar=ENV_PASSWORD,
    help=f"Your password (default: ${ENV_PASSWORD}; asked for on a terminal).",
)
def login(
    inv: Invocation, server: str | None, username: str | None, password: str | None
) -> dict[str, str]:
    """Sign in to a hamn server; later commands use the session until it expires."""
    username = _ask(username, "Username", "--username/-u", ENV_USERNAME, secret=False)
    password = _ask(password, "Password", "--password/-p", ENV_PASSWORD, secret=True)
    inv.server = server or _default_server()
    client = inv.client("")
    host = client.url("/").host.lower()
    if client.server.startswith("http://") and host not in _LOCAL_HOSTS:
        inv.warn(f"{client.server} is plain HTTP: your password crosses the network unencrypted.")
    try:
        token = client.exchange(Credentials(username, password))
    except RegistryError as exc:
        if exc.status == 401:
            raise CLIError(
                f"{client.server} refused the username or password ({exc.describe()})."
            ) from None
        raise CLIError(describe(exc)) from None
    session = Session.from_token(client.server, username, token)
    path = save_session(session)
    log.info("Session kept in %s", path)
    return session.public()


@command(auth, "logout", server=False)
def logout(inv: Invocation) -> None:
    """Sign out: forget the session (tokens already handed to docker stay until they expire)."""
    if not delete_session():
        inv.warn("Not signed in; there was no session to forget.")


@command(auth, "show", server=False)
def show(inv: Invocation) -> dict[str, str]:
    """Show who is signed in, to which server, and until when."""
    session = load_session()
    if session is None:
        raise CLIError(
            f"Not signed in (no {session_path()}). Run 'hamn auth login --server URL -u USER'."
        )
    if session.expired():
        inv.warn(
            f"The session has expired; run 'hamn auth login --server {session.server}' "
            "to sign in again."
        )
    return session.public()
