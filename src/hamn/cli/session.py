"""The CLI's sign-in: a session file, refresh tokens, and private files written safely.

``hamn auth login`` trades a username and password for a refresh token at the
server's ``/oauth2/exchange`` and keeps ``{server, username, refreshToken,
expiresOn}`` in ``$XDG_CONFIG_HOME/hamn/session.json`` (default
``~/.config/hamn``). Commands then authenticate as ACR's clients do: Basic with
the null GUID as the username and the refresh token as the password. The
password itself is never kept.

Files holding secrets (the session, docker's ``config.json``, the containers
tools' ``auth.json``) are written by :func:`write_private_file`: a temporary file
created with mode 0600 in the same directory, then renamed over the target, so
the file is never readable by others and never half-written, even for an
instant.

The expiry of a refresh token is read from its ``exp`` claim without checking
the signature: the client only uses it to tell the user when to sign in again;
the server decides what the token is worth.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from hamn.cli.client import NULL_GUID, Credentials, normalize_server
from hamn.cli.errors import CLIError

__all__ = ["NULL_GUID", "Session", "load_session", "save_session", "session_path"]
#: How long a refresh token lives when its ``exp`` cannot be read (the server's default).
DEFAULT_REFRESH_LIFETIME = timedelta(hours=24)
SESSION_FILE = "session.json"


def config_home() -> Path:
    """``$XDG_CONFIG_HOME``, else ``~/.config`` (the XDG base directory rule)."""
    value = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".config"


def session_path() -> Path:
    """Where the session is kept: ``$XDG_CONFIG_HOME/hamn/session.json``."""
    return config_home() / "hamn" / SESSION_FILE


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600).

    The parent directory is created 0700 when missing. ``mkstemp`` creates the
    temporary file with 0600 before a byte is written, and the rename replaces
    the target in one step, so no reader ever sees a partial or open file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file is missing or empty.

    A file that is not a JSON object is an error rather than something to
    overwrite: it may hold another tool's credentials.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CLIError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CLIError(f"{path} is not valid JSON ({exc}); fix or remove it.") from None
    if not isinstance(value, dict):
        raise CLIError(f"{path} does not hold a JSON object; fix or remove it.")
    return value


def token_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT, unverified (for display only); None if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def service_of(server: str) -> str:
    """The token ``service`` for a server URL: its ``host[:port]`` as the Host header has it."""
    return httpx.URL(normalize_server(server)).netloc.decode("ascii")


def same_server(a: str, b: str) -> bool:
    """True when two ``--server`` values name the same origin."""
    try:
        ua, ub = httpx.URL(normalize_server(a)), httpx.URL(normalize_server(b))
    except httpx.InvalidURL:
        return False
    return (ua.scheme, ua.host.lower(), ua.port) == (ub.scheme, ub.host.lower(), ub.port)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in CLI: the server, who signed in, and the refresh token to present."""

    server: str
    username: str
    refresh_token: str
    expires_on: datetime

    @classmethod
    def from_token(cls, server: str, username: str, refresh_token: str) -> Session:
        """A session for a token just issued; its expiry comes from the token."""
        expires = token_expiry(refresh_token) or datetime.now(UTC) + DEFAULT_REFRESH_LIFETIME
        return cls(normalize_server(server), username, refresh_token, expires)

    def expired(self, now: datetime | None = None) -> bool:
        """True once the refresh token has expired."""
        return (now or datetime.now(UTC)) >= self.expires_on

    def credentials(self) -> Credentials:
        """What a command sends: Basic with the null GUID and the refresh token."""
        return Credentials(NULL_GUID, self.refresh_token)

    def public(self) -> dict[str, str]:
        """What ``hamn auth show`` prints: never the token."""
        return {
            "server": self.server,
            "username": self.username,
            "expiresOn": _iso(self.expires_on),
        }

    def to_json(self) -> dict[str, str]:
        """The file's content."""
        return {**self.public(), "refreshToken": self.refresh_token}


def expired_message(session: Session) -> str:
    """What to say when the session has expired."""
    return (
        f"Your hamn session for {session.server} expired at {_iso(session.expires_on)}. "
        f"Run 'hamn auth login --server {session.server}' to sign in again."
    )


def load_session(path: Path | None = None) -> Session | None:
    """The saved session, or None when nobody is signed in."""
    path = path or session_path()
    data = read_json_file(path)
    if not data:
        return None
    try:
        expires = datetime.fromisoformat(str(data["expiresOn"]).replace("Z", "+00:00"))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return Session(
            normalize_server(str(data["server"])),
            str(data["username"]),
            str(data["refreshToken"]),
            expires,
        )
    except (KeyError, ValueError):
        raise CLIError(
            f"The session file {path} is damaged. Run 'hamn auth logout', then 'hamn auth login'."
        ) from None


def save_session(session: Session, path: Path | None = None) -> Path:
    """Keep the session (mode 0600, written atomically); returns the file's path."""
    path = path or session_path()
    write_private_file(path, (json.dumps(session.to_json(), indent=2) + "\n").encode())
    return path


def delete_session(path: Path | None = None) -> bool:
    """Forget the session; False when there was none."""
    try:
        (path or session_path()).unlink()
    except FileNotFoundError:
        return False
    return True
