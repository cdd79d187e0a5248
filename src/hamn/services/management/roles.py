"""The built-in roles and role assignments (SPEC §2, §5.1).

A role assignment grants a role to a user (by name) or service principal (by appId) at
``/`` or at a registry. Changing one needs ROLE_ASSIGNMENT_WRITE at that registry, or at
``/`` for ``/``. Callers see only the assignments at scopes whose registry they can see
(``/`` needs READ at ``/``), and one they cannot see answers NOT_FOUND as one that does
not exist. Removing the last enabled Owner at ``/`` is refused (``checks.keep_an_owner``).
"""

from __future__ import annotations

from hamn.auth.policy import (
    ROLES,
    ManagementPermission,
    ResourceScope,
    RoleDefinition,
    can_see_registry,
    management_permissions,
    parse_resource_scope,
    parse_role,
)
from hamn.errors import ALREADY_EXISTS, BODY_INVALID, NOT_FOUND, PARAMETER_INVALID, HamnError
from hamn.metadata.identities import IdentityStore, RoleAssignmentRecord, canonical_scope
from hamn.services.identity import Identity
from hamn.services.management.checks import (
    as_principal,
    keep_an_owner,
    parse_field,
    require,
    stored,
    visible_registry,
)

_M = ManagementPermission


def _role_scope(scope: str) -> ResourceScope | None:
    """A stored (canonical) scope, or None if it no longer parses (then nobody sees it)."""
    try:
        return parse_resource_scope(scope)
    except HamnError:
        return None


class RoleService:
    """The role definitions and role assignments behind ``/api/roleDefinitions`` and
    ``/api/roleAssignments``."""

    def __init__(self, identities: IdentityStore) -> None:
        self._identities = identities

    async def role_definitions(self, identity: Identity) -> list[RoleDefinition]:
        """The built-in roles (SPEC §2)."""
        as_principal(identity)
        return list(ROLES.values())

    def _sees_scope(self, caller: Identity, scope: str) -> bool:
        parsed = _role_scope(scope)
        if parsed is None:
            return False
        if parsed.registry is None:
            return _M.READ in management_permissions(caller.assignments, None)
        return can_see_registry(caller.assignments, parsed.registry)

    async def _scope_registry(self, caller: Identity, scope: ResourceScope) -> str | None:
        """The name of the scope's registry (NOT_FOUND unless it exists and the caller can
        see it), or None for ``/``."""
        if scope.registry is None:
            return None
        return (await visible_registry(self._identities, caller, scope.registry)).name

    async def list_role_assignments(
        self,
        identity: Identity,
        *,
        scope: str | None = None,
        assignee: str | None = None,
        role: str | None = None,
    ) -> list[RoleAssignmentRecord]:
        """Role assignments at (and under) ``scope``, of one assignee and role, limited to
        the scopes whose registry the caller can see (``/`` needs READ at ``/``)."""
        caller = as_principal(identity)
        role_name = parse_field(parse_role, role, PARAMETER_INVALID).value if role else None
        scope_text = None
        if scope is not None:
            parsed = parse_field(parse_resource_scope, scope, PARAMETER_INVALID)
            await self._scope_registry(caller, parsed)
            scope_text = canonical_scope(str(parsed))
        principal_id = None
        if assignee is not None:
            principal = await self._identities.get_principal_by_name(assignee)
            if principal is None:
                return []
            principal_id = principal.id
        found = await self._identities.list_role_assignments(
            principal_id=principal_id, scope=scope_text, role=role_name
        )
        return [a for a in found if self._sees_scope(caller, a.scope)]

    async def create_role_assignment(
        self, identity: Identity, role: str, assignee: str, scope: str
    ) -> RoleAssignmentRecord:
        """Grant ``role`` to a user (by name) or service principal (by appId) at ``scope``
        (ROLE_ASSIGNMENT_WRITE at the scope's registry, or at ``/``)."""
        caller = as_principal(identity)
        parsed_role = parse_field(parse_role, role, BODY_INVALID)
        parsed_scope = parse_field(parse_resource_scope, scope, BODY_INVALID)
        require(caller, await self._scope_registry(caller, parsed_scope), _M.ROLE_ASSIGNMENT_WRITE)
        principal = await self._identities.get_principal_by_name(assignee)
        if principal is None:
            raise HamnError(
                NOT_FOUND,
                f"no user or service principal named {assignee[:100]!r}",
                detail={"assignee": assignee[:100]},
            )
        canonical = canonical_scope(str(parsed_scope))
        existing = await self._identities.list_role_assignments(
            principal_id=principal.id, scope=canonical, role=parsed_role.value
        )
        if any(a.scope == canonical for a in existing):
            raise HamnError(
                ALREADY_EXISTS,
                f"{principal.name!r} already holds {parsed_role.value} at {canonical!r}",
                detail={"id": next(a.id for a in existing if a.scope == canonical)},
            )
        return await stored(
            self._identities.create_role_assignment(principal.id, parsed_role.value, canonical)
        )

    async def delete_role_assignment(self, identity: Identity, assignment_id: str) -> None:
        """Remove a role assignment (ROLE_ASSIGNMENT_WRITE at its scope's registry or ``/``)."""
        caller = as_principal(identity)
        found = next(
            (a for a in await self._identities.list_role_assignments() if a.id == assignment_id),
            None,
        )
        scope = _role_scope(found.scope) if found is not None else None
        if found is None or scope is None or not self._sees_scope(caller, found.scope):
            raise HamnError(
                NOT_FOUND,
                f"role assignment {assignment_id[:64]!r} not found",
                detail={"id": assignment_id[:64]},
            )
        require(caller, scope.registry, _M.ROLE_ASSIGNMENT_WRITE)
        await keep_an_owner(self._identities, assignment_id=assignment_id)
        if not await self._identities.delete_role_assignment(assignment_id):
            raise HamnError(NOT_FOUND, f"role assignment {assignment_id[:64]!r} not found")
