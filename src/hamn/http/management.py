"""The management REST API under ``/api`` (SPEC §5.1; docs/design/control-plane.md has
the contract table) and its OpenAPI document, ``GET /api/openapi.json``.

One table, :data:`ManagementApi.operations`, lists every operation: its method and
path, its request and answer models, its status and the permission it needs. The
routes and the OpenAPI document are both built from it, and the bodies are validated
and rendered with the same pydantic models, so the document cannot drift from what
the server does.

A route parses (body at most 64 KiB, strict JSON), authenticates, calls one service
method and renders. Authorisation is the service's. Errors leave through the one
renderer (``http/errors.py``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from hamn.auth.policy import RoleDefinition
from hamn.errors import (
    BODY_INCOMPLETE,
    BODY_INVALID,
    NOT_FOUND,
    UNAUTHORIZED,
    UNSUPPORTED,
    HamnError,
)
from hamn.http import management_models as m
from hamn.http.errors import mark_body_complete
from hamn.metadata.identities import IdentityStore, Principal, RoleAssignmentRecord
from hamn.metadata.store import MetadataStore
from hamn.services.identity import Identity, IdentityKind
from hamn.services.management import (
    AdminPasswords,
    IssuedPrincipal,
    IssuedToken,
    ManagedRegistry,
    ManagementService,
    RegistryScopeMap,
)

#: The largest request body accepted (every management body is far smaller).
MAX_BODY_BYTES = 64 * 1024
#: Where the OpenAPI document is served, without authentication.
OPENAPI_PATH = "/api/openapi.json"

Authenticate = Callable[[Request], Awaitable[Identity]]
Handler = Callable[[Request, Identity, Any], Awaitable[Response]]

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="hamn", charset="UTF-8"'}
# 429: repeated failed sign-ins from one address or for one user (Retry-After says when).
_ERROR_STATUSES = (400, 401, 403, 404, 409, 429)
_PATH_PARAMETER = re.compile(r"{(\w+)}")
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


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


# -- reading -----------------------------------------------------------------------------------


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


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# -- rendering ---------------------------------------------------------------------------------


def _json(answer: BaseModel, status: int = 200) -> Response:
    return Response(answer.model_dump_json(), status_code=status, media_type="application/json")


def _values(items: Sequence[BaseModel]) -> Response:
    return Response(
        orjson.dumps({"value": [item.model_dump(mode="json") for item in items]}),
        media_type="application/json",
    )


def _no_content() -> Response:
    return Response(status_code=204)


def _status(stored: Any, default: str) -> str:
    return stored if stored in ("enabled", "disabled") else default


def _registry(managed: ManagedRegistry) -> m.Registry:
    info = managed.info
    stored: dict[str, Any] = info.policies or {}

    def policy(key: str) -> dict[str, Any]:
        value = stored.get(key)
        return value if isinstance(value, dict) else {}

    retention = policy("retentionPolicy")
    soft_delete = policy("softDeletePolicy")
    days = retention.get("days")
    retention_days = soft_delete.get("retentionDays")
    return m.Registry(
        id=f"/registries/{info.name}",
        name=info.name,
        loginServer=managed.login_server,
        sku=m.Sku(name=info.sku, tier=info.sku),
        adminUserEnabled=info.admin_user_enabled,
        anonymousPullEnabled=info.anonymous_pull_enabled,
        creationDate=info.created_at,
        provisioningState=info.provisioning_state,
        policies=m.Policies(
            quarantinePolicy=m.StatusPolicy(
                status=_status(policy("quarantinePolicy").get("status"), "disabled")
            ),
            trustPolicy=m.TrustPolicy(
                status=_status(policy("trustPolicy").get("status"), "disabled")
            ),
            retentionPolicy=m.RetentionPolicy(
                days=days if isinstance(days, int) else 7,
                status=_status(retention.get("status"), "disabled"),
                lastUpdatedTime=info.updated_at,
            ),
            softDeletePolicy=m.SoftDeletePolicy(
                retentionDays=retention_days if isinstance(retention_days, int) else 7,
                status=_status(soft_delete.get("status"), "disabled"),
            ),
            exportPolicy=m.StatusPolicy(
                status=_status(policy("exportPolicy").get("status"), "enabled")
            ),
        ),
    )


def _admin(passwords: AdminPasswords) -> m.AdminCredentials:
    return m.AdminCredentials(
        username=passwords.username,
        passwords=[
            m.AdminPassword(name="password", value=passwords.password),
            m.AdminPassword(name="password2", value=passwords.password2),
        ],
    )


def _scope_map(found: RegistryScopeMap) -> m.ScopeMap:
    scope_map = found.scope_map
    return m.ScopeMap(
        id=f"/registries/{found.registry}/scopeMaps/{scope_map.name}",
        name=scope_map.name,
        description=scope_map.description,
        actions=list(scope_map.actions),
        creationDate=scope_map.created_at,
    )


def _token_credentials(issued: IssuedToken) -> m.TokenCredentials:
    return m.TokenCredentials(
        username=issued.token.name,
        passwords=[
            m.TokenPassword(
                name=p.name,
                creationTime=p.created_at,
                expiry=p.expiry,
                value=issued.values.get(p.name),
            )
            for p in issued.token.passwords
        ],
    )


def _token(issued: IssuedToken) -> m.Token:
    token = issued.token
    return m.Token(
        id=f"/registries/{issued.registry}/tokens/{token.name}",
        name=token.name,
        scopeMapId=f"/registries/{issued.registry}/scopeMaps/{token.scope_map_name}",
        status=token.status,
        creationDate=token.created_at,
        credentials=_token_credentials(issued),
    )


def _role_definition(definition: RoleDefinition) -> m.RoleDefinition:
    return m.RoleDefinition(
        roleName=definition.role.value,
        dataActions=sorted(a.value for a in definition.data_actions),
        managementPermissions=sorted(p.value for p in definition.management),
    )


def _role_assignment(record: RoleAssignmentRecord) -> m.RoleAssignment:
    return m.RoleAssignment(
        id=record.id,
        principalId=record.principal_id,
        principalName=record.principal_name,
        principalType="User" if record.principal_kind == "user" else "ServicePrincipal",
        roleDefinitionName=record.role,
        scope=record.scope,
        createdOn=record.created_at,
    )


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


# -- the API -----------------------------------------------------------------------------------


class ManagementApi:
    """The ``/api`` routes over :class:`ManagementService`."""

    def __init__(self, service: ManagementService, authenticate: Authenticate) -> None:
        self.service = service
        self._authenticate = authenticate
        self.operations = self._operations()
        self._openapi = orjson.dumps(openapi_document(self.operations))

    # -- plumbing ------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        """One route per path (every method reaches it, so a wrong one gets a JSON 405),
        the OpenAPI document, and a JSON 404 for every other ``/api`` path."""
        by_path: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            by_path.setdefault(op.path, {})[op.method] = op
        routes: list[BaseRoute] = [Route(OPENAPI_PATH, self.openapi, methods=["GET"])]
        routes += [
            Route(path, self._dispatcher(ops), methods=_ALL_METHODS)
            for path, ops in by_path.items()
        ]
        routes.append(_Unknown())
        return routes

    def _dispatcher(self, ops: dict[str, Operation]) -> Callable[[Request], Awaitable[Response]]:
        allow = ", ".join(sorted(ops))

        async def dispatch(request: Request) -> Response:
            op = ops.get(request.method)
            if op is None:
                raise HamnError(
                    UNSUPPORTED,
                    f"{request.method} is not supported here; this path takes {allow}",
                    headers={"Allow": allow},
                )
            return await self._run(op, request)

        return dispatch

    async def _run(self, op: Operation, request: Request) -> Response:
        identity = await self._authenticate(request)
        if identity.kind is IdentityKind.ANONYMOUS:
            raise HamnError(
                UNAUTHORIZED,
                "the management API needs credentials: Basic with a user's name and password "
                "or a service principal's appId and secret, or a refresh token as Bearer",
                headers=_CHALLENGE,
            )
        raw = await _read_body(request)
        body = _parse(raw, op.body) if op.body is not None else None
        return await op.handler(request, identity, body)

    async def openapi(self, _: Request) -> Response:
        """The OpenAPI document (public)."""
        return Response(self._openapi, media_type="application/json")

    def _operations(self) -> list[Operation]:
        r = "/api/registries/{registry}"
        any_principal = "any user or service principal"
        read, write = "read on the registry", "write on the registry"
        rbac = "roleAssignments/write at /"
        read_root = "read at / (or the principal itself)"
        o = Operation
        return [
            o("GET", "/api/me", "me", self.me, "Who the caller is", any_principal, answer=m.Me),
            o("GET", "/api/registries", "listRegistries", self.list_registries,
              "The registries the caller can see", any_principal,
              answer=m.ValueList[m.Registry]),
            o("POST", "/api/registries", "createRegistry", self.create_registry,
              "Create a registry", "write at /", m.RegistryCreate, m.Registry, 201,
              creates=("registry", "/name")),
            o("POST", "/api/checkNameAvailability", "checkNameAvailability", self.check_name,
              "Whether a registry name is free and valid", any_principal, m.NameCheck,
              m.NameAvailability),
            o("GET", r, "getRegistry", self.get_registry, "One registry", read,
              answer=m.Registry),
            o("PATCH", r, "updateRegistry", self.update_registry,
              "Change a registry's SKU, admin user or anonymous pull", write, m.RegistryUpdate,
              m.Registry),
            o("DELETE", r, "deleteRegistry", self.delete_registry,
              "Delete a registry and everything in it", write, status=204),
            o("POST", f"{r}/listCredentials", "listCredentials", self.list_credentials,
              "The admin user's name and passwords", write, answer=m.AdminCredentials),
            o("POST", f"{r}/regenerateCredential", "regenerateCredential",
              self.regenerate_credential, "Renew one admin password", write,
              m.CredentialName, m.AdminCredentials),
            o("GET", f"{r}/usages", "listUsages", self.usages,
              "Storage and counts against the SKU's limits", read,
              answer=m.ValueList[m.Usage]),
            o("GET", f"{r}/scopeMaps", "listScopeMaps", self.list_scope_maps,
              "The registry's scope maps", read, answer=m.ValueList[m.ScopeMap]),
            o("POST", f"{r}/scopeMaps", "createScopeMap", self.create_scope_map,
              "Create a scope map", write, m.ScopeMapCreate, m.ScopeMap, 201,
              creates=("scopeMap", "/name")),
            o("GET", f"{r}/scopeMaps/{{scopeMap}}", "getScopeMap", self.get_scope_map,
              "One scope map", read, answer=m.ScopeMap),
            o("PATCH", f"{r}/scopeMaps/{{scopeMap}}", "updateScopeMap", self.update_scope_map,
              "Replace a scope map's actions or description", write, m.ScopeMapUpdate,
              m.ScopeMap),
            o("DELETE", f"{r}/scopeMaps/{{scopeMap}}", "deleteScopeMap", self.delete_scope_map,
              "Delete a scope map no token uses", write, status=204),
            o("GET", f"{r}/tokens", "listTokens", self.list_tokens, "The registry's tokens",
              read, answer=m.ValueList[m.Token]),
            o("POST", f"{r}/tokens", "createToken", self.create_token,
              "Create a token (with both passwords unless noPasswords)", write, m.TokenCreate,
              m.Token, 201, creates=("token", "/name")),
            o("GET", f"{r}/tokens/{{token}}", "getToken", self.get_token, "One token", read,
              answer=m.Token),
            o("PATCH", f"{r}/tokens/{{token}}", "updateToken", self.update_token,
              "Change a token's scope map or status", write, m.TokenUpdate, m.Token),
            o("DELETE", f"{r}/tokens/{{token}}", "deleteToken", self.delete_token,
              "Delete a token", write, status=204),
            o("POST", f"{r}/tokens/{{token}}/generateCredentials", "generateCredentials",
              self.generate_credentials, "Make or replace password1 or password2", write,
              m.TokenCredentialCreate, m.TokenCredentials),
            o("DELETE", f"{r}/tokens/{{token}}/passwords/{{name}}", "deleteTokenPassword",
              self.delete_token_password, "Delete one of a token's passwords", write,
              status=204),
            o("GET", "/api/roleDefinitions", "listRoleDefinitions", self.role_definitions,
              "The built-in roles", any_principal, answer=m.ValueList[m.RoleDefinition]),
            o("GET", "/api/roleAssignments", "listRoleAssignments", self.list_role_assignments,
              "Role assignments at scopes the caller can see", any_principal,
              answer=m.ValueList[m.RoleAssignment], query=("scope", "assignee", "role")),
            o("POST", "/api/roleAssignments", "createRoleAssignment",
              self.create_role_assignment, "Grant a role at a scope",
              "roleAssignments/write at the scope's registry (at / for /)",
              m.RoleAssignmentCreate, m.RoleAssignment, 201, creates=("id", "/id")),
            o("DELETE", "/api/roleAssignments/{id}", "deleteRoleAssignment",
              self.delete_role_assignment, "Remove a role assignment",
              "roleAssignments/write at its scope's registry (at / for /)", status=204),
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

    # -- the caller and roles ------------------------------------------------------------------
    async def me(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/me``."""
        me = await self.service.me(caller)
        kind = "servicePrincipal" if me.kind == "servicePrincipal" else "user"
        return _json(m.Me(id=me.id, name=me.name, kind=kind))

    async def role_definitions(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/roleDefinitions``."""
        roles = await self.service.role_definitions(caller)
        return _values([_role_definition(d) for d in roles])

    # -- registries ----------------------------------------------------------------------------
    async def list_registries(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/registries``."""
        return _values([_registry(r) for r in await self.service.list_registries(caller)])

    async def create_registry(
        self, _: Request, caller: Identity, body: m.RegistryCreate
    ) -> Response:
        """``POST /api/registries``."""
        created = await self.service.create_registry(
            caller,
            body.name,
            body.sku,
            admin_user_enabled=body.adminUserEnabled,
            anonymous_pull_enabled=body.anonymousPullEnabled,
        )
        return _json(_registry(created), 201)

    async def check_name(self, _: Request, caller: Identity, body: m.NameCheck) -> Response:
        """``POST /api/checkNameAvailability``."""
        answer = await self.service.check_name(caller, body.name)
        return _json(
            m.NameAvailability(
                nameAvailable=answer.available,
                reason=answer.reason,
                message=answer.message,
            )
        )

    async def get_registry(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/registries/{registry}``."""
        registry = request.path_params["registry"]
        return _json(_registry(await self.service.get_registry(caller, registry)))

    async def update_registry(
        self, request: Request, caller: Identity, body: m.RegistryUpdate
    ) -> Response:
        """``PATCH /api/registries/{registry}``."""
        updated = await self.service.update_registry(
            caller,
            request.path_params["registry"],
            sku=body.sku,
            admin_user_enabled=body.adminUserEnabled,
            anonymous_pull_enabled=body.anonymousPullEnabled,
        )
        return _json(_registry(updated))

    async def delete_registry(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE /api/registries/{registry}``."""
        await self.service.delete_registry(caller, request.path_params["registry"])
        return _no_content()

    async def list_credentials(self, request: Request, caller: Identity, _: None) -> Response:
        """``POST /api/registries/{registry}/listCredentials``."""
        passwords = await self.service.list_credentials(caller, request.path_params["registry"])
        return _json(_admin(passwords))

    async def regenerate_credential(
        self, request: Request, caller: Identity, body: m.CredentialName
    ) -> Response:
        """``POST /api/registries/{registry}/regenerateCredential``."""
        passwords = await self.service.regenerate_credential(
            caller, request.path_params["registry"], body.name
        )
        return _json(_admin(passwords))

    async def usages(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/registries/{registry}/usages``."""
        usages = await self.service.usages(caller, request.path_params["registry"])
        return _values(
            [
                m.Usage(
                    name=u.name,
                    limit=u.limit,
                    currentValue=u.current_value,
                    unit=u.unit,
                )
                for u in usages
            ]
        )

    # -- scope maps ----------------------------------------------------------------------------
    async def list_scope_maps(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../scopeMaps``."""
        found = await self.service.list_scope_maps(caller, request.path_params["registry"])
        return _values([_scope_map(s) for s in found])

    async def create_scope_map(
        self, request: Request, caller: Identity, body: m.ScopeMapCreate
    ) -> Response:
        """``POST .../scopeMaps``."""
        created = await self.service.create_scope_map(
            caller, request.path_params["registry"], body.name, body.actions, body.description
        )
        return _json(_scope_map(created), 201)

    async def get_scope_map(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../scopeMaps/{scopeMap}``."""
        registry, name = request.path_params["registry"], request.path_params["scopeMap"]
        return _json(_scope_map(await self.service.get_scope_map(caller, registry, name)))

    async def update_scope_map(
        self, request: Request, caller: Identity, body: m.ScopeMapUpdate
    ) -> Response:
        """``PATCH .../scopeMaps/{scopeMap}``."""
        registry, name = request.path_params["registry"], request.path_params["scopeMap"]
        updated = await self.service.update_scope_map(
            caller, registry, name, actions=body.actions, description=body.description
        )
        return _json(_scope_map(updated))

    async def delete_scope_map(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE .../scopeMaps/{scopeMap}``."""
        await self.service.delete_scope_map(
            caller, request.path_params["registry"], request.path_params["scopeMap"]
        )
        return _no_content()

    # -- tokens --------------------------------------------------------------------------------
    async def list_tokens(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../tokens``."""
        tokens = await self.service.list_tokens(caller, request.path_params["registry"])
        return _values([_token(t) for t in tokens])

    async def create_token(
        self, request: Request, caller: Identity, body: m.TokenCreate
    ) -> Response:
        """``POST .../tokens``."""
        issued = await self.service.create_token(
            caller,
            request.path_params["registry"],
            body.name,
            body.scopeMap,
            status=body.status,
            no_passwords=body.noPasswords,
        )
        return _json(_token(issued), 201)

    async def get_token(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../tokens/{token}``."""
        issued = await self.service.get_token(
            caller, request.path_params["registry"], request.path_params["token"]
        )
        return _json(_token(issued))

    async def update_token(
        self, request: Request, caller: Identity, body: m.TokenUpdate
    ) -> Response:
        """``PATCH .../tokens/{token}``."""
        issued = await self.service.update_token(
            caller,
            request.path_params["registry"],
            request.path_params["token"],
            scope_map=body.scopeMap,
            status=body.status,
        )
        return _json(_token(issued))

    async def delete_token(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE .../tokens/{token}``."""
        await self.service.delete_token(
            caller, request.path_params["registry"], request.path_params["token"]
        )
        return _no_content()

    async def generate_credentials(
        self, request: Request, caller: Identity, body: m.TokenCredentialCreate
    ) -> Response:
        """``POST .../tokens/{token}/generateCredentials``."""
        expiry: datetime | None = body.expiry
        issued = await self.service.generate_token_password(
            caller, request.path_params["registry"], request.path_params["token"], body.name, expiry
        )
        return _json(_token_credentials(issued))

    async def delete_token_password(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE .../tokens/{token}/passwords/{name}``."""
        params = request.path_params
        await self.service.delete_token_password(
            caller, params["registry"], params["token"], params["name"]
        )
        return _no_content()

    # -- role assignments ----------------------------------------------------------------------
    async def list_role_assignments(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/roleAssignments?scope=&assignee=&role=``."""
        q = request.query_params
        found = await self.service.list_role_assignments(
            caller, scope=q.get("scope"), assignee=q.get("assignee"), role=q.get("role")
        )
        return _values([_role_assignment(a) for a in found])

    async def create_role_assignment(
        self, _: Request, caller: Identity, body: m.RoleAssignmentCreate
    ) -> Response:
        """``POST /api/roleAssignments``."""
        created = await self.service.create_role_assignment(
            caller, body.role, body.assignee, body.scope
        )
        return _json(_role_assignment(created), 201)

    async def delete_role_assignment(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE /api/roleAssignments/{id}``."""
        await self.service.delete_role_assignment(caller, request.path_params["id"])
        return _no_content()

    # -- users and service principals ----------------------------------------------------------
    async def list_users(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/users``."""
        return _values([_user(p) for p in await self.service.list_principals(caller, "user")])

    async def create_user(self, _: Request, caller: Identity, body: m.UserCreate) -> Response:
        """``POST /api/users``."""
        issued = await self.service.create_user(
            caller, body.name, _secret(body.password), body.displayName
        )
        return _json(_issued_user(issued), 201)

    async def get_user(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/users/{name}``."""
        found = await self.service.get_principal(caller, "user", request.path_params["name"])
        return _json(_user(found))

    async def update_user(self, request: Request, caller: Identity, body: m.UserUpdate) -> Response:
        """``PATCH /api/users/{name}``."""
        updated = await self.service.update_user(
            caller,
            request.path_params["name"],
            password=_secret(body.password),
            disabled=body.disabled,
            display_name=body.displayName,
        )
        return _json(_user(updated))

    async def delete_user(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE /api/users/{name}``."""
        await self.service.delete_principal(caller, "user", request.path_params["name"])
        return _no_content()

    async def list_service_principals(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/servicePrincipals``."""
        found = await self.service.list_principals(caller, "service_principal")
        return _values([_service_principal(p) for p in found])

    async def create_service_principal(
        self, _: Request, caller: Identity, body: m.ServicePrincipalCreate
    ) -> Response:
        """``POST /api/servicePrincipals``."""
        issued = await self.service.create_service_principal(caller, body.displayName)
        return _json(_issued_service_principal(issued), 201)

    async def get_service_principal(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/servicePrincipals/{appId}``."""
        found = await self.service.get_principal(
            caller, "service_principal", request.path_params["appId"]
        )
        return _json(_service_principal(found))

    async def delete_service_principal(
        self, request: Request, caller: Identity, _: None
    ) -> Response:
        """``DELETE /api/servicePrincipals/{appId}``."""
        await self.service.delete_principal(
            caller, "service_principal", request.path_params["appId"]
        )
        return _no_content()

    async def reset_credential(self, request: Request, caller: Identity, _: None) -> Response:
        """``POST /api/servicePrincipals/{appId}/resetCredential``."""
        issued = await self.service.reset_credential(caller, request.path_params["appId"])
        return _json(_issued_service_principal(issued))


def management_routes(
    identities: IdentityStore,
    store: MetadataStore,
    secret_key: bytes,
    domain: str,
    authenticate: Authenticate,
) -> list[BaseRoute]:
    """The ``/api`` routes, for the composition root: the service over the stores, the
    server key that seals admin passwords, the login servers' domain, and the function
    that resolves a request's caller."""
    service = ManagementService(identities, store, secret_key=secret_key, domain=domain)
    return ManagementApi(service, authenticate).routes()


# -- the OpenAPI document ----------------------------------------------------------------------


def _links(op: Operation, operations: Sequence[Operation]) -> dict[str, Any]:
    """OpenAPI links from a creating operation to those on what it made (clients and
    schemathesis' stateful tests follow them)."""
    if op.creates is None:
        return {}
    param, pointer = op.creates
    made = f"{op.path}/{{{param}}}"
    known = {p: f"$request.path.{p}" for p in _PATH_PARAMETER.findall(op.path)}
    known[param] = f"$response.body#{pointer}"
    links: dict[str, Any] = {}
    for other in operations:
        needed = _PATH_PARAMETER.findall(other.path)
        if (other.path == made or other.path.startswith(made + "/")) and set(needed) <= set(known):
            links[other.operation_id] = {
                "operationId": other.operation_id,
                "parameters": {p: known[p] for p in needed},
            }
    return links


def openapi_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """OpenAPI 3.1 for ``operations``; every schema comes from the pydantic models."""
    models: list[tuple[type[BaseModel], Any]] = [(m.ErrorBody, "serialization")]
    for op in operations:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.answer is not None:
            models.append((op.answer, "serialization"))
    refs, schemas = models_json_schema(models, ref_template="#/components/schemas/{model}")
    error = {
        "description": "an error: the registered code, what to do, and what was wrong",
        "content": {"application/json": {"schema": refs[(m.ErrorBody, "serialization")]}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters: list[dict[str, Any]] = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
            for n in _PATH_PARAMETER.findall(op.path)
        ]
        parameters += [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in op.query
        ]
        success: dict[str, Any] = {"description": "done"}
        if op.answer is not None:
            schema = refs[(op.answer, "serialization")]
            success["content"] = {"application/json": {"schema": schema}}
        links = _links(op, operations)
        if links:
            success["links"] = links
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "description": f"Needs: {op.needs}.",
            "responses": {str(op.status): success, **{str(s): error for s in _ERROR_STATUSES}},
        }
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hamn management API",
            "version": "1",
            "description": "Registries, credentials, usage, scope maps, tokens, role "
            "assignments, users and service principals, in ACR's shapes.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }
