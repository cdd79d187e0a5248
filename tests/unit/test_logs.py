"""Server logging (hamn.logs) and the request middleware's ids and access log, in-process.

JSON lines, the request id on every line written while a request is handled,
and credentials never reaching the output.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from hamn.config import Settings
from hamn.http.observability import RequestObservability, new_request_id
from hamn.logs import (
    FIELDS,
    REDACTED,
    JsonFormatter,
    configure_logging,
    redact,
    redact_headers,
    redact_query,
    request_id,
)

JWT = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJhbGljZSIsImFjY2VzcyI6W119"
    ".MEUCIQDx3Kq9gTf0yW8sQ2-b_7"
)


def record(msg: str, *args: object, **kwargs: Any) -> logging.LogRecord:
    return logging.getLogger("hamn.test").makeRecord(
        "hamn.test", logging.INFO, __file__, 1, msg, args, None, **kwargs
    )


def line(rec: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter().format(rec)
    assert "\n" not in text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """hamn's logging configured as in a worker, writing to a buffer; undone afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("hamn").level)
    out = io.StringIO()
    configure_logging("info", out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("hamn").setLevel(saved[2])


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(s) for s in out.getvalue().splitlines()]


# ------------------------------------------------------------------ formatting


def test_a_line_has_time_level_logger_message_and_request_id() -> None:
    entry = line(record("pushed %s", "x"))
    assert entry["message"] == "pushed x"
    assert entry["level"] == "info"
    assert entry["logger"] == "hamn.test"
    assert entry["request_id"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_time_is_utc() -> None:
    rec = record("x")
    rec.created = 0.25
    assert line(rec)["time"] == "1970-01-01T00:00:00.250Z"


def test_fields_are_top_level_and_keep_their_types() -> None:
    entry = line(record("x", extra={FIELDS: {"status": 201, "path": "/v2/", "repository": None}}))
    assert (entry["status"], entry["path"], entry["repository"]) == (201, "/v2/", None)


def test_an_exception_is_one_string_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.getLogger("hamn.test").makeRecord(
            "hamn.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = line(rec)
    assert "Traceback" in entry["exception"]
    assert "ValueError: boom" in entry["exception"]


def test_configure_logging_follows_the_level(captured: io.StringIO) -> None:
    log = logging.getLogger("hamn.services.test")
    log.debug("hidden")
    configure_logging("debug", captured)
    log.debug("shown")
    assert [e["message"] for e in lines(captured)] == ["shown"]


def test_other_libraries_stay_at_warning(captured: io.StringIO) -> None:
    configure_logging("debug", captured)
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")
    assert lines(captured) == []


# ------------------------------------------------------------------- request ids


def test_a_sane_request_id_is_kept_and_others_are_replaced() -> None:
    assert new_request_id("abc-1.2_X") == "abc-1.2_X"
    for bad in (None, "", "a" * 65, "has space", "semi;colon", "ü"):
        generated = new_request_id(bad)
        assert re.fullmatch(r"[0-9a-f]{16}", generated), generated
    assert new_request_id(None) != new_request_id(None)


def test_lines_carry_the_request_id_of_their_context() -> None:
    token = request_id.set("req-7")
    try:
        assert line(record("inside"))["request_id"] == "req-7"
    finally:
        request_id.reset(token)
    assert line(record("outside"))["request_id"] is None


async def _call(app: RequestObservability, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"abc", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(
    path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> Scope:
    return {
        "type": "http",
        "method": "PUT",
        "path": path,
        "query_string": query,
        "headers": headers or [],
        "client": ("192.0.2.1", 4000),
    }


async def _inner(scope: Scope, receive: Receive, send: Send) -> None:
    """An application that reads the body, logs, and answers."""
    body = (await receive())["body"]
    logging.getLogger("hamn.services.test").info("handling %d bytes", len(body))
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"created"})


def test_the_middleware_sets_the_id_on_the_response_and_every_line(
    captured: io.StringIO,
) -> None:
    app = RequestObservability(_inner, metrics=None, access_log_enabled=True)
    sent = asyncio.run(
        _call(app, _scope("/v2/r/blobs/uploads/u", headers=[(b"x-request-id", b"c-1")]))
    )
    assert (b"x-request-id", b"c-1") in sent[0]["headers"]
    service_line, access_line = lines(captured)
    assert service_line["request_id"] == access_line["request_id"] == "c-1"
    assert service_line["message"] == "handling 3 bytes"
    assert access_line["logger"] == "hamn.access"
    assert access_line["status"] == 201
    assert (access_line["bytes_in"], access_line["bytes_out"]) == (3, 7)
    assert access_line["method"] == "PUT"
    assert access_line["path"] == "/v2/r/blobs/uploads/u"
    assert access_line["route"] == "other"  # the dispatcher, absent here, tells the kind
    assert isinstance(access_line["duration_ms"], float)
    assert request_id.get() is None


def test_the_middleware_generates_an_id_when_the_client_sent_none(captured: io.StringIO) -> None:
    app = RequestObservability(_inner, metrics=None, access_log_enabled=True)
    sent = asyncio.run(_call(app, _scope("/v2/")))
    ids = [v for k, v in sent[0]["headers"] if k == b"x-request-id"]
    assert len(ids) == 1
    assert lines(captured)[-1]["request_id"] == ids[0].decode()


def test_a_crash_is_logged_with_status_500_and_its_id(captured: io.StringIO) -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    app = RequestObservability(crashing, metrics=None, access_log_enabled=True)
    with pytest.raises(RuntimeError):
        asyncio.run(_call(app, _scope("/v2/")))
    assert lines(captured)[-1]["status"] == 500


def test_the_access_log_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAMN_ACCESS_LOG", raising=False)
    assert Settings().access_log is False
    monkeypatch.setenv("HAMN_ACCESS_LOG", "true")
    assert Settings().access_log is True


# --------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        ("authorization: bearer abc.def-ghi", "abc.def-ghi"),
        (f"token {JWT} rejected", JWT),
        (f"sig={JWT.split('.')[2]}&t={JWT}", JWT),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ("{'client_secret': 'x y z'}", "x y z"),
        ("password=hunter2&user=bob", "hunter2"),
        ("PASSWD: hunter2", "hunter2"),
        ("refresh_token=r3fr3sh", "r3fr3sh"),
        ("_state=c2lnbmVk", "c2lnbmVk"),
        ("postgresql://hamn:dbpass@db/hamn", "dbpass"),
    ],
)
def test_credentials_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "GET /v2/library/ubuntu/manifests/latest 200",
        "/v2/a/blobs/sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
        "token expired",
        "upload_state=keep",
        "code=BLOB_UNKNOWN",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_query_keeps_keys_and_drops_secret_values() -> None:
    query = "_state=SIGNED&digest=sha256:ab&code=oauthcode&Access_Token=t&%5Fstate=x&n=10&flag"
    assert redact_query(query) == (
        "_state=[redacted]&digest=sha256:ab&code=[redacted]&Access_Token=[redacted]"
        "&%5Fstate=[redacted]&n=10&flag"
    )


def test_credential_headers_are_redacted() -> None:
    basic = base64.b64encode(b"alice:hunter2").decode()
    shown = redact_headers(
        [
            ("Authorization", f"Basic {basic}"),
            ("Cookie", "session=abc"),
            ("Accept", "application/json"),
            ("X-Note", f"carries {JWT}"),
        ]
    )
    assert shown["authorization"] == REDACTED
    assert shown["cookie"] == REDACTED
    assert shown["accept"] == "application/json"
    assert JWT not in shown["x-note"]


def test_the_formatter_redacts_messages_fields_and_exceptions() -> None:
    try:
        raise PermissionError(f"bad token {JWT}")
    except PermissionError as exc:
        rec = record(
            "login with password=%s",
            "hunter2",
            extra={FIELDS: {"path": "/x?access_token=zzz&refresh_token=yyy"}},
        )
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    text = JsonFormatter().format(rec)
    for secret in ("hunter2", "zzz", "yyy", JWT):
        assert secret not in text
