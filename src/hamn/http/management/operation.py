"""One operation of the management API: its method and path, its request and answer
models, its status and the permission it needs. The routes (``dispatch``) and the
OpenAPI document (``openapi``) are both built from the operations, so the document
cannot drift from what the server does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from hamn.services.identity import Identity

#: Where the OpenAPI document is served, without authentication.
OPENAPI_PATH: Final = "/api/openapi.json"
#: A registry's path; its scope maps, tokens and credentials are below it.
REGISTRY_PATH: Final = "/api/registries/{registry}"

# What operations need, in the words of the OpenAPI descriptions.
ANY_PRINCIPAL: Final = "any user or service principal"
READ_REGISTRY: Final = "read on the registry"
WRITE_REGISTRY: Final = "write on the registry"

#: A route's work once the caller is known and the body validated (None without a body).
Handler = Callable[[Request, Identity, Any], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the API: the route, its models, its answer and who may call it."""

    method: str
    path: str
    operation_id: str
    handler: Handler
    summary: str
    needs: str
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    query: tuple[str, ...] = ()
    #: For creating operations: the path parameter naming what was made, and where the
    #: answer carries it (a JSON pointer); the OpenAPI links to its sub-resources.
    creates: tuple[str, str] | None = None
