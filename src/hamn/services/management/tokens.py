"""Scope maps and repository-scoped tokens of a registry (SPEC §5.1).

A scope map lists ``repositories/<repo>/<action>`` entries; a token holds the actions
of one scope map, with up to two passwords (``password1``, ``password2``). Reading needs
READ on the registry, every change WRITE (``checks.permitted_registry``). A password is
returned once, when it is made; only its argon2id hash is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hamn.auth.policy import ManagementPermission, parse_scope_map_action
from hamn.auth.secrets import hash_secret, new_secret
from hamn.errors import BODY_INVALID, IN_USE, NAME_INVALID, NOT_FOUND, HamnError
from hamn.metadata.identities import (
    TOKEN_PASSWORD_NAMES,
    IdentityStore,
    InUse,
    NotFound,
    ScopeMap,
    Token,
)
from hamn.services.identity import Identity
from hamn.services.management.checks import (
    Hasher,
    body_invalid,
    check_name,
    hash_off_loop,
    not_found,
    parse_field,
    permitted_registry,
    stored,
)

_SCOPE_MAP_NAME = re.compile(r"[a-zA-Z0-9_-]{5,50}")
_TOKEN_NAME = re.compile(r"[a-zA-Z0-9-]{5,50}")

_M = ManagementPermission


@dataclass(frozen=True, slots=True)
class RegistryScopeMap:
    """A scope map with its registry's name as stored (for ids)."""

    registry: str
    scope_map: ScopeMap


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token with the values of the passwords just made (shown this once only)."""

    registry: str
    token: Token
    values: Mapping[str, str] = field(default_factory=dict, repr=False)


class TokenService:
    """The scope maps and tokens behind ``/api/registries/{registry}/scopeMaps`` and
    ``.../tokens``."""

    def __init__(self, identities: IdentityStore, *, hasher: Hasher = hash_secret) -> None:
        self._identities = identities
        # Tests pass a cheaper hasher; the server always uses the OWASP parameters.
        self._hasher = hasher

    # -- scope maps ----------------------------------------------------------------------------
    @staticmethod
    def _actions(actions: Sequence[str]) -> list[str]:
        if not actions:
            raise body_invalid("a scope map needs at least one action", field="actions")
        parsed = [str(parse_field(parse_scope_map_action, a, BODY_INVALID)) for a in actions]
        return list(dict.fromkeys(parsed))

    async def list_scope_maps(self, identity: Identity, registry: str) -> list[RegistryScopeMap]:
        """The registry's scope maps (READ)."""
        info = await permitted_registry(self._identities, identity, registry, _M.READ)
        found = await stored(self._identities.list_scope_maps(info.name))
        return [RegistryScopeMap(info.name, s) for s in found]

    async def create_scope_map(
        self,
        identity: Identity,
        registry: str,
        name: str,
        actions: Sequence[str],
        description: str | None = None,
    ) -> RegistryScopeMap:
        """Create a scope map (WRITE); actions are ``repositories/<repo>/<action>``."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        check_name(
            name,
            _SCOPE_MAP_NAME,
            "scope map names are 5 to 50 letters, digits, '-' and '_' (^[a-zA-Z0-9_-]{5,50}$)",
        )
        checked = self._actions(actions)
        made = await stored(
            self._identities.create_scope_map(info.name, name, checked, description)
        )
        return RegistryScopeMap(info.name, made)

    async def get_scope_map(self, identity: Identity, registry: str, name: str) -> RegistryScopeMap:
        """One scope map (READ)."""
        info = await permitted_registry(self._identities, identity, registry, _M.READ)
        found = await self._identities.get_scope_map(info.name, name)
        if found is None:
            raise not_found(NotFound("scope map", name))
        return RegistryScopeMap(info.name, found)

    async def update_scope_map(
        self,
        identity: Identity,
        registry: str,
        name: str,
        *,
        actions: Sequence[str] | None = None,
        description: str | None = None,
    ) -> RegistryScopeMap:
        """Replace a scope map's actions and/or description (WRITE)."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        checked = self._actions(actions) if actions is not None else None
        updated = await stored(
            self._identities.update_scope_map(
                info.name, name, actions=checked, description=description
            )
        )
        return RegistryScopeMap(info.name, updated)

    async def delete_scope_map(self, identity: Identity, registry: str, name: str) -> None:
        """Delete a scope map (WRITE); IN_USE, naming them, while tokens use it."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        try:
            deleted = await self._identities.delete_scope_map(info.name, name)
        except InUse as exc:
            users = ", ".join(exc.users) or "a token created just now"
            raise HamnError(
                IN_USE,
                f"scope map {name!r} is used by {users}; delete those tokens or give them "
                "another scope map first",
                detail={"tokens": list(exc.users)},
            ) from None
        if not deleted:
            raise not_found(NotFound("scope map", name))

    # -- tokens --------------------------------------------------------------------------------
    async def _token(self, registry: str, name: str) -> Token:
        found = await self._identities.get_token(registry, name)
        if found is None:
            raise not_found(NotFound("token", name))
        return found

    async def _new_token_password(
        self, registry: str, token: str, password_name: str, expiry: datetime | None = None
    ) -> str:
        secret = new_secret()
        hashed = await hash_off_loop(self._hasher, secret)
        await stored(
            self._identities.set_token_password(registry, token, password_name, hashed, expiry)
        )
        return secret

    async def list_tokens(self, identity: Identity, registry: str) -> list[IssuedToken]:
        """The registry's tokens (READ), without password values."""
        info = await permitted_registry(self._identities, identity, registry, _M.READ)
        found = await stored(self._identities.list_tokens(info.name))
        return [IssuedToken(info.name, t) for t in found]

    async def create_token(
        self,
        identity: Identity,
        registry: str,
        name: str,
        scope_map: str,
        *,
        status: str = "enabled",
        no_passwords: bool = False,
    ) -> IssuedToken:
        """Create a token on a scope map (WRITE) with both passwords, unless ``no_passwords``."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        check_name(
            name,
            _TOKEN_NAME,
            "token names are 5 to 50 letters, digits and '-' (^[a-zA-Z0-9-]{5,50}$)",
        )
        if name.lower() == info.name.lower():
            raise HamnError(
                NAME_INVALID,
                f"a token cannot be named {name!r}: that is the registry's admin username",
                detail={"name": name},
            )
        token = await stored(self._identities.create_token(info.name, name, scope_map, status))
        values: dict[str, str] = {}
        if not no_passwords:
            for password_name in TOKEN_PASSWORD_NAMES:
                values[password_name] = await self._new_token_password(
                    info.name, token.name, password_name
                )
        return IssuedToken(info.name, await self._token(info.name, token.name), values)

    async def get_token(self, identity: Identity, registry: str, name: str) -> IssuedToken:
        """One token (READ), without password values."""
        info = await permitted_registry(self._identities, identity, registry, _M.READ)
        return IssuedToken(info.name, await self._token(info.name, name))

    async def update_token(
        self,
        identity: Identity,
        registry: str,
        name: str,
        *,
        scope_map: str | None = None,
        status: str | None = None,
    ) -> IssuedToken:
        """Change a token's scope map and/or status (WRITE)."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        token = await stored(
            self._identities.update_token(info.name, name, status=status, scope_map=scope_map)
        )
        return IssuedToken(info.name, token)

    async def delete_token(self, identity: Identity, registry: str, name: str) -> None:
        """Delete a token and its passwords (WRITE)."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        if not await self._identities.delete_token(info.name, name):
            raise not_found(NotFound("token", name))

    async def generate_token_password(
        self,
        identity: Identity,
        registry: str,
        name: str,
        password_name: str,
        expiry: datetime | None = None,
    ) -> IssuedToken:
        """Make (or replace) ``password1`` or ``password2`` of a token (WRITE)."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        if password_name not in TOKEN_PASSWORD_NAMES:
            raise body_invalid("name must be password1 or password2", field="name")
        if expiry is not None and expiry <= datetime.now(UTC):
            raise body_invalid("expiry must be in the future", field="expiry")
        token = await self._token(info.name, name)
        value = await self._new_token_password(info.name, token.name, password_name, expiry)
        return IssuedToken(
            info.name, await self._token(info.name, token.name), {password_name: value}
        )

    async def delete_token_password(
        self, identity: Identity, registry: str, name: str, password_name: str
    ) -> None:
        """Delete one of a token's passwords (WRITE)."""
        info = await permitted_registry(self._identities, identity, registry, _M.WRITE)
        token = await self._token(info.name, name)
        if not await self._identities.delete_token_password(info.name, token.name, password_name):
            raise HamnError(
                NOT_FOUND,
                f"token {token.name!r} has no password named {password_name[:50]!r}",
                detail={"password": password_name[:50]},
            )
