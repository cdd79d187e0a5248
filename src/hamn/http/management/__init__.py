"""The management REST API under ``/api`` (SPEC §5.1; docs/design/control-plane.md has
the contract table) and its OpenAPI document, ``GET /api/openapi.json``.

Each resource group keeps its rows of the operations table and its handlers in its own
module (``registries``, ``tokens``, ``roles``, ``principals``) over its own service; an
:class:`~hamn.http.management.operation.Operation` names the method and path, the
request and answer models (``models``), the status and the permission needed. The
routes (``dispatch``) and the OpenAPI document (``openapi``) are both built from the
one table, and the bodies are validated and rendered with the same pydantic models, so
the document cannot drift from what the server does.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from hamn.http.management.dispatch import Authenticate, operation_routes
from hamn.http.management.openapi import openapi_document
from hamn.http.management.principals import PrincipalsApi
from hamn.http.management.registries import RegistriesApi
from hamn.http.management.roles import RolesApi
from hamn.http.management.tokens import TokensApi
from hamn.metadata.identities import IdentityStore
from hamn.metadata.store import MetadataStore
from hamn.services.management import ManagementServices


class ManagementApi:
    """The ``/api`` routes over the management services."""

    def __init__(self, services: ManagementServices, authenticate: Authenticate) -> None:
        self.services = services
        self._authenticate = authenticate
        principals = PrincipalsApi(services.principals)
        # In this order: it is the order of the OpenAPI document's paths.
        self.operations = [
            *principals.caller_operations(),
            *RegistriesApi(services.registries).operations(),
            *TokensApi(services.tokens).operations(),
            *RolesApi(services.roles).operations(),
            *principals.operations(),
        ]
        self._openapi = orjson.dumps(openapi_document(self.operations))

    def routes(self) -> list[BaseRoute]:
        """The operations' routes, the OpenAPI document, and a JSON 404 for every other
        ``/api`` path."""
        return operation_routes(self.operations, self._authenticate, self.openapi)

    async def openapi(self, _: Request) -> Response:
        """The OpenAPI document (public)."""
        return Response(self._openapi, media_type="application/json")


def management_routes(
    identities: IdentityStore,
    store: MetadataStore,
    secret_key: bytes,
    domain: str,
    authenticate: Authenticate,
    *,
    storage_quotas: Mapping[str, int] | None = None,
) -> list[BaseRoute]:
    """The ``/api`` routes, for the composition root: the services over the stores, the
    server key that seals admin passwords, the login servers' domain, and the function
    that resolves a request's caller."""
    services = ManagementServices.build(
        identities, store, secret_key=secret_key, domain=domain, storage_quotas=storage_quotas
    )
    return ManagementApi(services, authenticate).routes()
