"""Logging for the server: one JSON object per line on stderr, request ids, no secrets.

Every record carries the id of the request being handled when it was written
(:data:`request_id`, a context variable set by the web layer), so any module
can log with plain :mod:`logging` and its lines still join up with the access
log. Everything that reaches the output passes :func:`redact` first: a log is
read by more people than the registry's credentials are meant for.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TextIO
from urllib.parse import unquote_plus

import orjson

#: The id of the request this task is handling; ``None`` outside a request.
request_id: ContextVar[str | None] = ContextVar("hamn_request_id", default=None)

#: Attribute of a :class:`logging.LogRecord` holding structured fields to output
#: (pass ``extra={FIELDS: {...}}``).
FIELDS = "hamn_fields"

REDACTED = "[redacted]"

#: Query parameters whose values are credentials (compared case-insensitively). The upload
#: ``_state`` is a signed session token; ``code`` is an OAuth authorization code; ``sig``
#: signs a blob link (hamn's own, an Azure SAS), which is the link's only credential.
SECRET_KEYS = frozenset(
    {
        "_state",
        "sig",
        "x-amz-signature",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "code",
    }
)

#: Headers whose values are credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-registry-auth"}
)

_B64URL = r"[A-Za-z0-9_-]"
_SECRET_TEXT = re.compile(
    # A JWT: base64url header and payload (both JSON objects, so "eyJ"), then a signature.
    rf"(?P<jwt>eyJ{_B64URL}+\.{_B64URL}+\.{_B64URL}*)"
    # An HTTP credential: "Basic dXNlcjpwYXNz", "Bearer abc.def".
    r"|(?P<scheme>\b(?:[Bb]asic|[Bb]earer)\s+)[A-Za-z0-9._~+/=-]+"
    # Credentials in a URL: scheme://user:password@host.
    r"|(?P<userinfo>://[^/\s:@]+:)[^/\s@]+(?=@)"
    # A secret field in JSON, a form or a query: password=..., "token": "...".
    r"|(?P<field>(?i:[\"']?\b(?:_state|(?:client_)?secret|passw(?:or)?d|(?:access_|refresh_|id_)?token)"
    r"[\"']?\s*[:=]\s*))(?:\"[^\"]*\"|'[^']*'|[^\s&,;\"'}]+)"
)


def _replace_secret(m: re.Match[str]) -> str:
    if m["jwt"]:
        return REDACTED
    prefix = m["scheme"] or m["userinfo"] or m["field"]
    return f"{prefix}{REDACTED}"


#: Every match of ``_SECRET_TEXT`` contains one of these (lower-cased). Looking for them
#: first is ten times faster than the pattern, and almost no line has one.
_SECRET_HINTS = ("eyj", "basic", "bearer", "://", "state", "secret", "passw", "token")


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""
    lowered = text.lower()
    for hint in _SECRET_HINTS:
        if hint in lowered:
            return _SECRET_TEXT.sub(_replace_secret, text)
    return text


def redact_query(query: str) -> str:
    """A query string with the values of :data:`SECRET_KEYS` replaced; every key is kept."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        key, sep, _ = part.partition("=")
        if sep and unquote_plus(key).lower() in SECRET_KEYS:
            part = f"{key}={REDACTED}"
        parts.append(part)
    return redact("&".join(parts))


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict for a log line, credentials replaced (repeated names are joined)."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        shown = REDACTED if key in SECRET_HEADERS else redact(value)
        out[key] = f"{out[key]}, {shown}" if key in out else shown
    return out


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, request_id, fields.

    ``time`` is ISO 8601 in UTC with milliseconds. Structured fields given as
    ``extra={FIELDS: {...}}`` are added at the top level; an exception becomes
    ``exception`` (its traceback as one string). Strings are redacted.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        # strftime costs more than the rest of a line, and lines come many per second.
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON for ``record``."""
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": request_id.get(),
        }
        fields: Mapping[str, Any] | None = getattr(record, FIELDS, None)
        if fields:
            for key, value in fields.items():
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = redact("".join(traceback.format_exception(record.exc_info[1])))
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) as JSON; hamn's loggers at ``level``.

    Other libraries' loggers stay at WARNING: at ``debug`` SQLAlchemy alone would
    write every statement.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("hamn").setLevel(level.upper())


def granian_log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for granian (its ``log_dictconfig``): JSON on stderr.

    ``hamn serve`` can pass it so that granian's own lines (start-up, worker
    restarts) are JSON too.
    """
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {
            "_granian": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "granian.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }
