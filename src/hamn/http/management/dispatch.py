"""The machinery every management operation shares: one route per path that picks the
operation by method (a wrong one gets a JSON 405), authentication, reading and
validating the body, rendering the answer, and a JSON 404 for every other ``/api`` path.

A route parses (body at most 64 KiB, strict JSON), authenticates, calls one service
method and renders. Authorisation is the service's. Errors leave through the one
renderer (``http/errors.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from hamn.errors import (
    BODY_INCOMPLETE,
    BODY_INVALID,
    NOT_FOUND,
    PARAMETER_INVALID,
    UNAUTHORIZED,
    UNSUPPORTED,
    HamnError,
)
from hamn.http.errors import mark_body_complete
from hamn.http.management.operation import OPENAPI_PATH, Operation
from hamn.services.identity import Identity, IdentityKind

#: The largest request body accepted (every management body is far smaller).
MAX_BODY_BYTES = 64 * 1024

Authenticate = Callable[[Request], Awaitable[Identity]]
Endpoint = Callable[[Request], Awaitable[Response]]

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="hamn", charset="UTF-8"'}
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


# -- reading the body --------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HamnError(
            BODY_INVALID,
            f"the request body is {declared} bytes; management bodies are at most 64 KiB",
            detail={"limit": MAX_BODY_BYTES},
        )
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HamnError(
                    BODY_INVALID,
                    "the request body is larger than 64 KiB, the limit for management bodies",
                    detail={"limit": MAX_BODY_BYTES},
                )
            parts.append(chunk)
    except ClientDisconnect:
        raise HamnError(BODY_INCOMPLETE) from None
    mark_body_complete(request)
    return b"".join(parts)


def _field(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location) or "(body)"


def _parse(raw: bytes, model: type[BaseModel]) -> BaseModel:
    """Validate a JSON body; BODY_INVALID says which fields are wrong and how (never the
    values given: they may be passwords)."""
    if not raw.strip():
        raise HamnError(BODY_INVALID, f"this operation needs a JSON object body ({model.__name__})")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = [
            {"field": _field(e["loc"]), "problem": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        if any(p["type"] == "json_invalid" for p in problems):
            message = f"the body is not valid JSON: {problems[0]['problem']}"
        else:
            message = "the body is invalid: " + "; ".join(
                f"{p['field']}: {p['problem']}" for p in problems[:5]
            )
        raise HamnError(BODY_INVALID, message, detail=problems[:20]) from None


# -- rendering ---------------------------------------------------------------------------------


def json_response(answer: BaseModel, status: int = 200) -> Response:
    """``answer`` as JSON."""
    return Response(answer.model_dump_json(), status_code=status, media_type="application/json")


def values_response(items: Sequence[BaseModel]) -> Response:
    """A list as ``{"value": [...]}``, as ACR answers lists."""
    return Response(
        orjson.dumps({"value": [item.model_dump(mode="json") for item in items]}),
        media_type="application/json",
    )


def no_content() -> Response:
    """204, for deletions."""
    return Response(status_code=204)


class _Unknown(BaseRoute):
    """Every other ``/api`` path answers a JSON 404. A plain ``{rest:path}`` route would
    miss paths with a (decoded) newline, leaving them to Starlette's text 404."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/api" or path.startswith("/api/")):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")[:200]
        raise HamnError(NOT_FOUND, f"no management operation at {path!r}; see {OPENAPI_PATH}")


# -- routing -----------------------------------------------------------------------------------


def operation_routes(
    operations: Sequence[Operation], authenticate: Authenticate, openapi: Endpoint
) -> list[BaseRoute]:
    """One route per path (every method reaches it, so a wrong one gets a JSON 405),
    the OpenAPI document, and a JSON 404 for every other ``/api`` path."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = op
    routes: list[BaseRoute] = [Route(OPENAPI_PATH, openapi, methods=["GET"])]
    routes += [
        Route(path, _dispatcher(ops, authenticate), methods=_ALL_METHODS)
        for path, ops in by_path.items()
    ]
    routes.append(_Unknown())
    return routes


def _dispatcher(ops: dict[str, Operation], authenticate: Authenticate) -> Endpoint:
    allow = ", ".join(sorted(ops))

    async def dispatch(request: Request) -> Response:
        op = ops.get(request.method)
        if op is None:
            raise HamnError(
                UNSUPPORTED,
                f"{request.method} is not supported here; this path takes {allow}",
                headers={"Allow": allow},
            )
        return await _run(op, request, authenticate)

    return dispatch


async def _run(op: Operation, request: Request, authenticate: Authenticate) -> Response:
    identity = await authenticate(request)
    if identity.kind is IdentityKind.ANONYMOUS:
        raise HamnError(
            UNAUTHORIZED,
            "the management API needs credentials: Basic with a user's name and password "
            "or a service principal's appId and secret, or a refresh token as Bearer",
            headers=_CHALLENGE,
        )
    _refuse_nul(request)
    raw = await _read_body(request)
    body = _parse(raw, op.body) if op.body is not None else None
    return await op.handler(request, identity, body)


def _refuse_nul(request: Request) -> None:
    """No name, id or filter holds a NUL character (PostgreSQL text cannot hold one):
    say so instead of letting the database fail the request."""
    for key, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if "\x00" in str(value) or "\x00" in key:
            raise HamnError(
                PARAMETER_INVALID,
                f"{key[:40]!r} holds a NUL character",
                detail={"parameter": key[:40]},
            )
