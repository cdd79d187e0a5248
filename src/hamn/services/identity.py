"""Who is making a request: the :class:`Identity` every authorisation decision starts from.

An identity is resolved from credentials by :class:`hamn.services.auth.AuthService`
and is only ever valid for the authorisation version it was computed at, so its
role assignments are current (SPEC §2: a role change counts on the very next request).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hamn.auth.policy import RoleAssignment


class IdentityKind(StrEnum):
    """The kinds of callers (see docs/design/control-plane.md, "Identities on the wire")."""

    ANONYMOUS = "anonymous"
    #: A user or a service principal: role assignments decide what it may do.
    PRINCIPAL = "principal"
    #: A registry's admin user: that registry's data plane, nothing else.
    ADMIN = "admin"
    #: A repository-scoped token: its scope map in its registry, nothing else.
    TOKEN = "token"  # noqa: S105 - a kind, not a secret


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or anonymous) caller.

    ``subject`` is stable and goes into tokens' ``sub``: a principal's id,
    ``admin:<registry>`` or ``token:<token id>``. ``name`` is for messages and logs.
    ``registry`` is the registry an admin user or token belongs to.
    ``principal_kind`` is ``user`` or ``servicePrincipal`` for principals.
    ``assignments`` are a principal's role assignments (empty for other kinds).
    ``scope_map`` is a token's scope map actions.
    """

    kind: IdentityKind
    subject: str
    name: str
    registry: str | None = None
    principal_kind: str | None = None
    assignments: tuple[RoleAssignment, ...] = ()
    scope_map: tuple[str, ...] = ()

    @property
    def is_principal(self) -> bool:
        """Users and service principals: the only callers with management rights."""
        return self.kind is IdentityKind.PRINCIPAL


ANONYMOUS = Identity(IdentityKind.ANONYMOUS, "anonymous", "anonymous")
