"""The principal operations of ``/api``: who the caller is, users and service
principals, over :class:`PrincipalService`."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from hamn.http.management import models as m
from hamn.http.management.dispatch import json_response, no_content, values_response
from hamn.http.management.operation import ANY_PRINCIPAL, Operation
from hamn.metadata.identities import Principal
from hamn.services.identity import Identity
from hamn.services.management.principals import IssuedPrincipal, PrincipalService


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _principal_fields(principal: Principal, password: str | None) -> dict[str, Any]:
    return {
        "id": principal.id,
        "displayName": principal.display_name,
        "disabled": principal.disabled,
        "createdOn": principal.created_at,
        "password": password,
    }


def _user(principal: Principal, password: str | None = None) -> m.User:
    return m.User(name=principal.name, **_principal_fields(principal, password))


def _service_principal(principal: Principal, password: str | None = None) -> m.ServicePrincipal:
    return m.ServicePrincipal(appId=principal.name, **_principal_fields(principal, password))


def _issued_user(issued: IssuedPrincipal) -> m.User:
    return _user(issued.principal, issued.password)


def _issued_service_principal(issued: IssuedPrincipal) -> m.ServicePrincipal:
    return _service_principal(issued.principal, issued.password)


class PrincipalsApi:
    """``/api/me``, ``/api/users`` and ``/api/servicePrincipals``."""

    def __init__(self, service: PrincipalService) -> None:
        self.service = service

    def caller_operations(self) -> list[Operation]:
        """``GET /api/me``, the first row of the operations table."""
        return [
            Operation(
                "GET", "/api/me", "me", self.me, "Who the caller is", ANY_PRINCIPAL, answer=m.Me
            )
        ]

    def operations(self) -> list[Operation]:
        """This group's rows of the operations table."""
        rbac = "roleAssignments/write at /"
        read_root = "read at / (or the principal itself)"
        o = Operation
        return [
            o("GET", "/api/users", "listUsers", self.list_users, "Users", "read at /",
              answer=m.ValueList[m.User]),
            o("POST", "/api/users", "createUser", self.create_user,
              "Create a user (a generated password is returned once)", rbac, m.UserCreate,
              m.User, 201, creates=("name", "/name")),
            o("GET", "/api/users/{name}", "getUser", self.get_user, "One user", read_root,
              answer=m.User),
            o("PATCH", "/api/users/{name}", "updateUser", self.update_user,
              "Change a user's password or disabled flag",
              f"{rbac} (a user may change its own password)", m.UserUpdate, m.User),
            o("DELETE", "/api/users/{name}", "deleteUser", self.delete_user, "Delete a user",
              rbac, status=204),
            o("GET", "/api/servicePrincipals", "listServicePrincipals",
              self.list_service_principals, "Service principals", "read at /",
              answer=m.ValueList[m.ServicePrincipal]),
            o("POST", "/api/servicePrincipals", "createServicePrincipal",
              self.create_service_principal,
              "Create a service principal (its secret is returned once)", rbac,
              m.ServicePrincipalCreate, m.ServicePrincipal, 201, creates=("appId", "/appId")),
            o("GET", "/api/servicePrincipals/{appId}", "getServicePrincipal",
              self.get_service_principal, "One service principal", read_root,
              answer=m.ServicePrincipal),
            o("DELETE", "/api/servicePrincipals/{appId}", "deleteServicePrincipal",
              self.delete_service_principal, "Delete a service principal", rbac, status=204),
            o("POST", "/api/servicePrincipals/{appId}/resetCredential", "resetCredential",
              self.reset_credential, "Give a service principal a new secret", rbac,
              answer=m.ServicePrincipal),
        ]  # fmt: skip

    async def me(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/me``."""
        me = await self.service.me(caller)
        kind = "servicePrincipal" if me.kind == "servicePrincipal" else "user"
        return json_response(m.Me(id=me.id, name=me.name, kind=kind))

    # -- users and service principals ----------------------------------------------------------
    async def list_users(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/users``."""
        return values_response(
            [_user(p) for p in await self.service.list_principals(caller, "user")]
        )

    async def create_user(self, _: Request, caller: Identity, body: m.UserCreate) -> Response:
        """``POST /api/users``."""
        issued = await self.service.create_user(
            caller, body.name, _secret(body.password), body.displayName
        )
        return json_response(_issued_user(issued), 201)

    async def get_user(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/users/{name}``."""
        found = await self.service.get_principal(caller, "user", request.path_params["name"])
        return json_response(_user(found))

    async def update_user(self, request: Request, caller: Identity, body: m.UserUpdate) -> Response:
        """``PATCH /api/users/{name}``."""
        updated = await self.service.update_user(
            caller,
            request.path_params["name"],
            password=_secret(body.password),
            disabled=body.disabled,
            display_name=body.displayName,
        )
        return json_response(_user(updated))

    async def delete_user(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE /api/users/{name}``."""
        await self.service.delete_principal(caller, "user", request.path_params["name"])
        return no_content()

    async def list_service_principals(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/servicePrincipals``."""
        found = await self.service.list_principals(caller, "service_principal")
        return values_response([_service_principal(p) for p in found])

    async def create_service_principal(
        self, _: Request, caller: Identity, body: m.ServicePrincipalCreate
    ) -> Response:
        """``POST /api/servicePrincipals``."""
        issued = await self.service.create_service_principal(caller, body.displayName)
        return json_response(_issued_service_principal(issued), 201)

    async def get_service_principal(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/servicePrincipals/{appId}``."""
        found = await self.service.get_principal(
            caller, "service_principal", request.path_params["appId"]
        )
        return json_response(_service_principal(found))

    async def delete_service_principal(
        self, request: Request, caller: Identity, _: None
    ) -> Response:
        """``DELETE /api/servicePrincipals/{appId}``."""
        await self.service.delete_principal(
            caller, "service_principal", request.path_params["appId"]
        )
        return no_content()

    async def reset_credential(self, request: Request, caller: Identity, _: None) -> Response:
        """``POST /api/servicePrincipals/{appId}/resetCredential``."""
        issued = await self.service.reset_credential(caller, request.path_params["appId"])
        return json_response(_issued_service_principal(issued))
