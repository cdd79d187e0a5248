"""Rendering errors: every protocol error leaves hamn through :func:`error_response`."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hamn.errors import UNAVAILABLE, UNKNOWN, HamnError
from hamn.metadata.store import MetadataUnavailable
from hamn.storage.base import StorageError

log = logging.getLogger("hamn.http")

#: Set on ``request.state`` once a route has read the request body to its end.
_BODY_COMPLETE = "hamn_body_complete"


def mark_body_complete(request: Request) -> None:
    """Record that the route read the whole request body."""
    setattr(request.state, _BODY_COMPLETE, True)


def _body_left_unread(request: Request) -> bool:
    """Whether the request carries a body that the route stopped reading part-way (or never read).

    The rest of such a body is still on the connection, so the connection cannot
    carry another request; the error response must say ``Connection: close``, or
    the client reuses it and its next request fails.
    """
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    return has_body and not getattr(request.state, _BODY_COMPLETE, False)


def to_hamn_error(exc: BaseException) -> HamnError:
    """Map any exception onto a protocol error (the one place this happens)."""
    if isinstance(exc, HamnError):
        return exc
    if isinstance(exc, MetadataUnavailable):
        return HamnError(
            UNAVAILABLE,
            "the metadata database is not answering; retry",
            headers={"Retry-After": "2"},
        )
    if isinstance(exc, StorageError):
        return HamnError(
            UNAVAILABLE, "blob storage is not answering; retry", headers={"Retry-After": "2"}
        )
    return HamnError(UNKNOWN, "internal error; the server log has the details")


def error_response(err: HamnError, *, head: bool = False, close: bool = False) -> Response:
    """The spec's ``{"errors": [...]}`` envelope with the code's HTTP status.

    ``close`` ends the connection after the response (see :func:`_body_left_unread`).
    """
    entry: dict[str, object] = {"code": err.code.code, "message": err.message}
    if err.detail is not None:
        entry["detail"] = err.detail
    body = orjson.dumps({"errors": [entry]})
    headers = dict(err.headers)
    if head:
        headers["Content-Length"] = str(len(body))
        body = b""
    if close:
        headers["Connection"] = "close"
    return Response(body, status_code=err.status, headers=headers, media_type="application/json")


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for every error raised by a route."""
    err = to_hamn_error(exc)
    if isinstance(exc, MetadataUnavailable | StorageError):
        # Expected while the database or storage is briefly away: one line, no traceback.
        log.warning("answered 503: %s %s: %s", request.method, request.url.path, exc)
    elif err.status >= 500:
        log.error("request failed: %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(err, head=request.method == "HEAD", close=_body_left_unread(request))
