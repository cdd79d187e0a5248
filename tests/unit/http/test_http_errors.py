"""The one error renderer: every failure leaves as the spec's JSON envelope with a
status a client can act on (a storage outage is retryable; a bug says nothing of
the internals)."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hamn.errors import MANIFEST_UNKNOWN, HamnError
from hamn.http.errors import handle_exception
from hamn.storage.base import StorageError


def _app(exc: Exception) -> TestClient:
    async def fail(_: Request) -> Response:
        raise exc

    app = Starlette(
        routes=[Route("/x", fail, methods=["GET", "HEAD", "PUT"])],
        exception_handlers={HamnError: handle_exception, Exception: handle_exception},
    )
    return TestClient(app, raise_server_exceptions=False)


def test_a_storage_outage_is_a_retryable_503() -> None:
    r = _app(StorageError("disk gone")).get("/x")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert orjson.loads(r.content)["errors"][0]["code"] == "UNAVAILABLE"
    assert "disk gone" not in r.text


def test_a_database_outage_is_a_retryable_503() -> None:
    from hamn.metadata.store import MetadataUnavailable

    r = _app(MetadataUnavailable("OperationalError")).get("/x")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    entry = orjson.loads(r.content)["errors"][0]
    assert entry["code"] == "UNAVAILABLE" and "database" in entry["message"]


def test_an_unexpected_failure_is_a_500_that_reveals_nothing() -> None:
    r = _app(RuntimeError("secret internals")).get("/x")
    assert r.status_code == 500
    body = orjson.loads(r.content)
    assert body["errors"][0]["code"] == "UNKNOWN"
    assert "secret internals" not in r.text


def test_a_domain_error_keeps_its_code_message_and_detail() -> None:
    err = HamnError(MANIFEST_UNKNOWN, "no such tag", detail={"reference": "v9"})
    r = _app(err).get("/x")
    assert r.status_code == 404
    assert orjson.loads(r.content) == {
        "errors": [
            {"code": "MANIFEST_UNKNOWN", "message": "no such tag", "detail": {"reference": "v9"}}
        ]
    }


def test_head_gets_the_status_and_length_but_no_body() -> None:
    r = _app(HamnError(MANIFEST_UNKNOWN)).head("/x")
    assert r.status_code == 404
    assert r.content == b""
    assert int(r.headers["Content-Length"]) > 0


def test_an_unread_body_closes_the_connection() -> None:
    """The rest of the body is still on the wire: the connection cannot carry another request."""
    r = _app(HamnError(MANIFEST_UNKNOWN)).put("/x", content=b"x" * 1000)
    assert r.headers.get("Connection") == "close"
    r = _app(HamnError(MANIFEST_UNKNOWN)).get("/x")
    assert r.headers.get("Connection") != "close"
