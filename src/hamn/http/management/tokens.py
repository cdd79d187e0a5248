"""The scope map and token operations of ``/api/registries/{registry}``, over
:class:`TokenService`."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from hamn.http.management import models as m
from hamn.http.management.dispatch import json_response, no_content, values_response
from hamn.http.management.operation import (
    READ_REGISTRY,
    REGISTRY_PATH,
    WRITE_REGISTRY,
    Operation,
)
from hamn.services.identity import Identity
from hamn.services.management.tokens import IssuedToken, RegistryScopeMap, TokenService


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


class TokensApi:
    """``.../scopeMaps`` and ``.../tokens`` of a registry."""

    def __init__(self, service: TokenService) -> None:
        self.service = service

    def operations(self) -> list[Operation]:
        """This group's rows of the operations table."""
        r, read, write = REGISTRY_PATH, READ_REGISTRY, WRITE_REGISTRY
        o = Operation
        return [
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
        ]  # fmt: skip

    async def list_scope_maps(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../scopeMaps``."""
        found = await self.service.list_scope_maps(caller, request.path_params["registry"])
        return values_response([_scope_map(s) for s in found])

    async def create_scope_map(
        self, request: Request, caller: Identity, body: m.ScopeMapCreate
    ) -> Response:
        """``POST .../scopeMaps``."""
        created = await self.service.create_scope_map(
            caller, request.path_params["registry"], body.name, body.actions, body.description
        )
        return json_response(_scope_map(created), 201)

    async def get_scope_map(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../scopeMaps/{scopeMap}``."""
        registry, name = request.path_params["registry"], request.path_params["scopeMap"]
        return json_response(_scope_map(await self.service.get_scope_map(caller, registry, name)))

    async def update_scope_map(
        self, request: Request, caller: Identity, body: m.ScopeMapUpdate
    ) -> Response:
        """``PATCH .../scopeMaps/{scopeMap}``."""
        registry, name = request.path_params["registry"], request.path_params["scopeMap"]
        updated = await self.service.update_scope_map(
            caller, registry, name, actions=body.actions, description=body.description
        )
        return json_response(_scope_map(updated))

    async def delete_scope_map(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE .../scopeMaps/{scopeMap}``."""
        await self.service.delete_scope_map(
            caller, request.path_params["registry"], request.path_params["scopeMap"]
        )
        return no_content()

    # -- tokens --------------------------------------------------------------------------------
    async def list_tokens(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../tokens``."""
        tokens = await self.service.list_tokens(caller, request.path_params["registry"])
        return values_response([_token(t) for t in tokens])

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
        return json_response(_token(issued), 201)

    async def get_token(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET .../tokens/{token}``."""
        issued = await self.service.get_token(
            caller, request.path_params["registry"], request.path_params["token"]
        )
        return json_response(_token(issued))

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
        return json_response(_token(issued))

    async def delete_token(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE .../tokens/{token}``."""
        await self.service.delete_token(
            caller, request.path_params["registry"], request.path_params["token"]
        )
        return no_content()

    async def generate_credentials(
        self, request: Request, caller: Identity, body: m.TokenCredentialCreate
    ) -> Response:
        """``POST .../tokens/{token}/generateCredentials``."""
        expiry: datetime | None = body.expiry
        issued = await self.service.generate_token_password(
            caller, request.path_params["registry"], request.path_params["token"], body.name, expiry
        )
        return json_response(_token_credentials(issued))

    async def delete_token_password(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE .../tokens/{token}/passwords/{name}``."""
        params = request.path_params
        await self.service.delete_token_password(
            caller, params["registry"], params["token"], params["name"]
        )
        return no_content()
