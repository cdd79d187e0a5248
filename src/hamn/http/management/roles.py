"""The role operations of ``/api``: the built-in role definitions and role
assignments, over :class:`RoleService`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hamn.auth.policy import RoleDefinition
from hamn.http.management import models as m
from hamn.http.management.dispatch import json_response, no_content, values_response
from hamn.http.management.operation import ANY_PRINCIPAL, Operation
from hamn.metadata.identities import RoleAssignmentRecord
from hamn.services.identity import Identity
from hamn.services.management.roles import RoleService


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


class RolesApi:
    """``/api/roleDefinitions`` and ``/api/roleAssignments``."""

    def __init__(self, service: RoleService) -> None:
        self.service = service

    def operations(self) -> list[Operation]:
        """This group's rows of the operations table."""
        any_principal = ANY_PRINCIPAL
        o = Operation
        return [
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
        ]  # fmt: skip

    # -- role definitions ----------------------------------------------------------------------
    async def role_definitions(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/roleDefinitions``."""
        roles = await self.service.role_definitions(caller)
        return values_response([_role_definition(d) for d in roles])

    # -- role assignments ----------------------------------------------------------------------
    async def list_role_assignments(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/roleAssignments?scope=&assignee=&role=``."""
        q = request.query_params
        found = await self.service.list_role_assignments(
            caller, scope=q.get("scope"), assignee=q.get("assignee"), role=q.get("role")
        )
        return values_response([_role_assignment(a) for a in found])

    async def create_role_assignment(
        self, _: Request, caller: Identity, body: m.RoleAssignmentCreate
    ) -> Response:
        """``POST /api/roleAssignments``."""
        created = await self.service.create_role_assignment(
            caller, body.role, body.assignee, body.scope
        )
        return json_response(_role_assignment(created), 201)

    async def delete_role_assignment(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE /api/roleAssignments/{id}``."""
        await self.service.delete_role_assignment(caller, request.path_params["id"])
        return no_content()
