"""Users and service principals, and who the caller is (SPEC §5.1).

Reading them needs READ at ``/`` (a principal may always read itself); creating,
changing and deleting them needs ROLE_ASSIGNMENT_WRITE at ``/``, except that a user may
change its own password. A generated password or secret comes from
:func:`~hamn.auth.secrets.new_secret` and is returned once; only its argon2id hash is
stored. Deleting or disabling the last enabled Owner at ``/`` is refused
(``checks.keep_an_owner``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Final

from hamn.auth.policy import ManagementPermission
from hamn.auth.secrets import MAX_SECRET_LENGTH, hash_secret, new_secret
from hamn.errors import NOT_FOUND, HamnError
from hamn.metadata.identities import IdentityStore, Principal
from hamn.services.identity import Identity
from hamn.services.management.checks import (
    Hasher,
    as_principal,
    body_invalid,
    check_name,
    hash_off_loop,
    keep_an_owner,
    require,
    stored,
)

#: The shortest password a user may choose.
MIN_PASSWORD_LENGTH: Final = 12

# A user name is a Basic username: no ':' and no whitespace; e-mail addresses fit.
_USER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._@+-]{0,254}")

_M = ManagementPermission
_PRINCIPAL_WORDS: Final = {"user": "user", "service_principal": "service principal"}


@dataclass(frozen=True, slots=True)
class IssuedPrincipal:
    """A user or service principal, with the password just made (shown this once) or None."""

    principal: Principal
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Caller:
    """``GET /api/me``: the principal's id, name and kind (``user``/``servicePrincipal``)."""

    id: str
    name: str
    kind: str


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_SECRET_LENGTH:
        raise body_invalid(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_SECRET_LENGTH} characters; leave it "
            "out to have one generated",
            field="password",
        )


class PrincipalService:
    """The caller, users and service principals behind ``/api/me``, ``/api/users`` and
    ``/api/servicePrincipals``."""

    def __init__(self, identities: IdentityStore, *, hasher: Hasher = hash_secret) -> None:
        self._identities = identities
        # Tests pass a cheaper hasher; the server always uses the OWASP parameters.
        self._hasher = hasher

    async def me(self, identity: Identity) -> Caller:
        """Who the caller is."""
        caller = as_principal(identity)
        return Caller(caller.subject, caller.name, caller.principal_kind or "user")

    async def list_principals(self, identity: Identity, kind: str) -> list[Principal]:
        """Users or service principals (READ at ``/``)."""
        require(as_principal(identity), None, _M.READ)
        return await self._identities.list_principals(kind)

    async def _named(
        self, identity: Identity, kind: str, name: str, permission: ManagementPermission
    ) -> Principal:
        """The principal ``name`` of ``kind``; the caller needs ``permission`` at ``/``
        unless it is that principal and asks to read it."""
        caller = as_principal(identity)
        found = await self._identities.get_principal_by_name(name)
        myself = found is not None and found.id == caller.subject and permission is _M.READ
        if not myself:
            require(caller, None, permission)
        if found is None or found.kind != kind:
            raise HamnError(
                NOT_FOUND,
                f"{_PRINCIPAL_WORDS[kind]} {name[:100]!r} not found",
                detail={"name": name[:100]},
            )
        return found

    async def get_principal(self, identity: Identity, kind: str, name: str) -> Principal:
        """One user (by name) or service principal (by appId): READ at ``/``, or itself."""
        return await self._named(identity, kind, name, _M.READ)

    async def create_user(
        self,
        identity: Identity,
        name: str,
        password: str | None = None,
        display_name: str | None = None,
    ) -> IssuedPrincipal:
        """Create a user (ROLE_ASSIGNMENT_WRITE at ``/``) with the given password, or a
        generated one that is returned this once."""
        require(as_principal(identity), None, _M.ROLE_ASSIGNMENT_WRITE)
        check_name(
            name,
            _USER_NAME,
            "user names are 1 to 255 characters of letters, digits and '.', '_', '@', '+', '-', "
            "starting with a letter or digit",
        )
        generated = password is None
        if password is None:
            password = new_secret()
        _check_password(password)
        hashed = await hash_off_loop(self._hasher, password)
        principal = await stored(
            self._identities.create_principal(
                "user", name, display_name=display_name, secret_hash=hashed
            ),
            " (user names and appIds are unique regardless of letter case)",
        )
        return IssuedPrincipal(principal, password if generated else None)

    async def create_service_principal(
        self, identity: Identity, display_name: str
    ) -> IssuedPrincipal:
        """Create a service principal (ROLE_ASSIGNMENT_WRITE at ``/``): a new appId and a
        generated secret, returned this once."""
        require(as_principal(identity), None, _M.ROLE_ASSIGNMENT_WRITE)
        secret = new_secret()
        hashed = await hash_off_loop(self._hasher, secret)
        principal = await stored(
            self._identities.create_principal(
                "service_principal",
                str(uuid.uuid4()),
                display_name=display_name,
                secret_hash=hashed,
            )
        )
        return IssuedPrincipal(principal, secret)

    async def update_user(
        self,
        identity: Identity,
        name: str,
        *,
        password: str | None = None,
        disabled: bool | None = None,
        display_name: str | None = None,
    ) -> Principal:
        """Change a user's password or disabled flag (ROLE_ASSIGNMENT_WRITE at ``/``); a
        user may change its own password."""
        caller = as_principal(identity)
        found = await self._identities.get_principal_by_name(name)
        own_password = (
            found is not None
            and found.id == caller.subject
            and disabled is None
            and display_name is None
        )
        user = (
            found
            if own_password and found
            else await self._named(identity, "user", name, _M.ROLE_ASSIGNMENT_WRITE)
        )
        if display_name is not None and display_name != user.display_name:
            raise body_invalid(
                "a user's displayName cannot be changed yet; create the user again",
                field="displayName",
            )
        if password is not None:
            _check_password(password)
            hashed = await hash_off_loop(self._hasher, password)
            user = await stored(self._identities.set_principal_secret(user.id, hashed))
        if disabled is not None and disabled != user.disabled:
            if disabled:
                await keep_an_owner(self._identities, principal_id=user.id)
            user = await stored(self._identities.set_principal_disabled(user.id, disabled))
        return user

    async def reset_credential(self, identity: Identity, app_id: str) -> IssuedPrincipal:
        """Give a service principal a new secret (ROLE_ASSIGNMENT_WRITE at ``/``)."""
        principal = await self._named(
            identity, "service_principal", app_id, _M.ROLE_ASSIGNMENT_WRITE
        )
        secret = new_secret()
        hashed = await hash_off_loop(self._hasher, secret)
        updated = await stored(self._identities.set_principal_secret(principal.id, hashed))
        return IssuedPrincipal(updated, secret)

    async def delete_principal(self, identity: Identity, kind: str, name: str) -> None:
        """Delete a user or service principal and its role assignments
        (ROLE_ASSIGNMENT_WRITE at ``/``)."""
        principal = await self._named(identity, kind, name, _M.ROLE_ASSIGNMENT_WRITE)
        await keep_an_owner(self._identities, principal_id=principal.id)
        if not await self._identities.delete_principal(principal.id):
            raise HamnError(NOT_FOUND, f"{_PRINCIPAL_WORDS[kind]} {name[:100]!r} not found")
