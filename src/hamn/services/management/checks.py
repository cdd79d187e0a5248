"""What every management service checks the same way: who may use the management plane
at all, who may do what (decided by ``hamn.auth.policy``, never by rules of our own),
which registry the caller may see, how store errors become protocol errors, and the
rules shared by names and bodies.

* Only principals (users, service principals) manage anything. Anonymous callers are
  told to authenticate (UNAUTHORIZED); a registry's admin user and repository-scoped
  tokens hold data-plane rights only (DENIED).
* A registry the caller cannot see (``policy.can_see_registry``) answers NOT_FOUND
  exactly as one that does not exist, so names do not leak; a visible registry where a
  permission is missing answers DENIED, naming the permission and the roles granting it.
* Deleting or disabling the last enabled Owner at ``/`` is refused (IN_USE): nobody could
  manage hamn afterwards. Two concurrent removals may still both pass that check.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from hamn.auth.policy import (
    ROLES,
    ManagementPermission,
    Role,
    can_see_registry,
    management_permissions,
)
from hamn.errors import (
    ALREADY_EXISTS,
    BODY_INVALID,
    DENIED,
    IN_USE,
    NAME_INVALID,
    NOT_FOUND,
    UNAUTHORIZED,
    ErrorCode,
    HamnError,
)
from hamn.metadata.identities import AlreadyExists, IdentityStore, NotFound, RegistryInfo
from hamn.oci.names import is_valid_registry_name
from hamn.services.identity import Identity, IdentityKind

T = TypeVar("T")

#: Hashes a new secret (argon2id); tests pass a cheaper one.
Hasher = Callable[[str], str]

#: The username of refresh tokens presented as Basic credentials; never a name.
NULL_GUID: Final = "00000000-0000-0000-0000-000000000000"


# -- who may do what ---------------------------------------------------------------------------


def as_principal(identity: Identity) -> Identity:
    """The caller, if it may use the management plane at all."""
    if identity.kind is IdentityKind.ANONYMOUS:
        raise HamnError(
            UNAUTHORIZED,
            "the management API needs credentials: a user's name and password, or a "
            "service principal's appId and secret",
        )
    if not identity.is_principal:
        raise HamnError(
            DENIED,
            f"{identity.name!r} is a registry's admin user or a repository-scoped token: "
            "those reach the data plane only; the management API needs a user or a "
            "service principal",
        )
    return identity


def _granted_by(permission: ManagementPermission) -> str:
    return " or ".join(d.role.value for d in ROLES.values() if permission in d.management)


def require(caller: Identity, registry: str | None, permission: ManagementPermission) -> None:
    """DENIED unless the caller holds ``permission`` on ``registry`` (``None``: at ``/``)."""
    if permission in management_permissions(caller.assignments, registry):
        return
    where = "'/'" if registry is None else f"registry {registry!r} or at '/'"
    raise HamnError(
        DENIED,
        f"this needs the management permission {permission.value!r}, granted by "
        f"{_granted_by(permission)} at {where}",
        detail={"permission": permission.value, "scope": "/" if registry is None else registry},
    )


async def visible_registry(identities: IdentityStore, caller: Identity, name: str) -> RegistryInfo:
    """The registry, if it exists and the caller can see it; else NOT_FOUND."""
    info = await identities.get_registry_info(name) if is_valid_registry_name(name) else None
    if info is None or not can_see_registry(caller.assignments, info.name):
        raise registry_not_found(name)
    return info


async def permitted_registry(
    identities: IdentityStore, identity: Identity, name: str, permission: ManagementPermission
) -> RegistryInfo:
    """The registry, if the caller is a principal, can see it and holds ``permission`` on it."""
    caller = as_principal(identity)
    info = await visible_registry(identities, caller, name)
    require(caller, info.name, permission)
    return info


async def keep_an_owner(
    identities: IdentityStore,
    *,
    assignment_id: str | None = None,
    principal_id: str | None = None,
) -> None:
    """IN_USE if the change would leave no enabled principal holding Owner at ``/``."""
    owners = [
        a
        for a in await identities.list_role_assignments(scope="/", role=Role.OWNER.value)
        if a.scope == "/"
    ]
    if not owners:
        return
    enabled = {p.id for p in await identities.list_principals() if not p.disabled}
    remaining = [
        a
        for a in owners
        if a.id != assignment_id and a.principal_id != principal_id and a.principal_id in enabled
    ]
    if not remaining:
        raise HamnError(
            IN_USE,
            "this would remove the last enabled Owner at '/', and nobody could manage hamn "
            "any more; assign Owner at '/' to another user or service principal first",
        )


# -- store errors as protocol errors -----------------------------------------------------------


def registry_not_found(name: str) -> HamnError:
    """NOT_FOUND for a registry that does not exist or that the caller may not see."""
    return HamnError(
        NOT_FOUND,
        f"registry {name[:100]!r} not found (or you may not see it)",
        detail={"registry": name[:100]},
    )


def not_found(exc: NotFound) -> HamnError:
    """The store's "no such thing" as NOT_FOUND."""
    if exc.kind == "registry":
        return registry_not_found(exc.name)
    return HamnError(NOT_FOUND, str(exc), detail={exc.kind.replace(" ", ""): exc.name[:100]})


def _already_exists(exc: AlreadyExists, rule: str = "") -> HamnError:
    return HamnError(ALREADY_EXISTS, f"{exc}{rule}", detail={"name": exc.name[:100]})


async def stored(call: Awaitable[T], rule: str = "") -> T:
    """Await a store write, turning its errors into protocol errors."""
    try:
        return await call
    except NotFound as exc:
        raise not_found(exc) from None
    except AlreadyExists as exc:
        raise _already_exists(exc, rule) from None


# -- names, bodies and secrets -----------------------------------------------------------------


def body_invalid(message: str, **detail: object) -> HamnError:
    """BODY_INVALID with what was wrong (never a secret)."""
    return HamnError(BODY_INVALID, message, detail=detail or None)


def parse_field(parse: Callable[[str], T], text: str, code: ErrorCode) -> T:
    """Parse a field with a policy parser; its "no such thing" (NOT_FOUND) becomes ``code``:
    a bad value in a body or query is the request's fault, not a missing resource."""
    try:
        return parse(text)
    except HamnError as exc:
        if exc.code is NOT_FOUND:
            raise HamnError(code, exc.message, detail=exc.detail) from None
        raise


def check_name(name: str, pattern: re.Pattern[str], rule: str) -> None:
    """NAME_INVALID, stating ``rule``, unless ``name`` matches (the null GUID never does)."""
    if not pattern.fullmatch(name) or name == NULL_GUID:
        raise HamnError(NAME_INVALID, rule, detail={"name": name[:100]})


async def hash_off_loop(hasher: Hasher, secret: str) -> str:
    """Hash on a worker thread: ~30 ms each by design, which must not stall the event loop."""
    return await asyncio.to_thread(hasher, secret)
