"""The management plane's use cases (SPEC §5.1): registries, admin credentials, usage,
scope maps, tokens, role assignments, users and service principals.

Plain values in and out; every method takes the caller's :class:`Identity` first and
decides with the pure policy (``hamn.auth.policy``), never with rules of its own:

* Only principals (users, service principals) manage anything. Anonymous callers are
  told to authenticate (UNAUTHORIZED); a registry's admin user and repository-scoped
  tokens hold data-plane rights only (DENIED).
* A registry the caller cannot see (``policy.can_see_registry``) answers NOT_FOUND
  exactly as one that does not exist, so names do not leak; a visible registry where a
  permission is missing answers DENIED, naming the permission and the roles granting it.
* Acts that are not about one registry (creating registries, users, service principals,
  role assignments at ``/``) need the permission at ``/``.

Secrets. New passwords come from :func:`~hamn.auth.secrets.new_secret` and are returned
once; only their argon2id hashes are stored, computed on a worker thread (~30 ms each by
design, which must not stall the event loop). The admin user's two passwords are also
sealed together (AES-GCM under the server key, bound to the registry's name) because
``credential show`` prints them again, as ACR does. Nothing here logs.

Deleting or disabling the last enabled Owner at ``/`` is refused (IN_USE): nobody could
manage hamn afterwards. Two concurrent removals may still both pass that check.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

import orjson

from hamn.auth.policy import (
    ROLES,
    ManagementPermission,
    ResourceScope,
    Role,
    RoleDefinition,
    can_see_registry,
    management_permissions,
    parse_resource_scope,
    parse_role,
    parse_scope_map_action,
)
from hamn.auth.secrets import MAX_SECRET_LENGTH, SealError, hash_secret, new_secret, seal, unseal
from hamn.errors import (
    ADMIN_DISABLED,
    ALREADY_EXISTS,
    BODY_INVALID,
    DENIED,
    IN_USE,
    NAME_INVALID,
    NOT_FOUND,
    PARAMETER_INVALID,
    UNAUTHORIZED,
    UNKNOWN,
    ErrorCode,
    HamnError,
)
from hamn.metadata.identities import (
    SKUS,
    TOKEN_PASSWORD_NAMES,
    AlreadyExists,
    IdentityStore,
    InUse,
    NotFound,
    Principal,
    RegistryInfo,
    RoleAssignmentRecord,
    ScopeMap,
    Token,
    canonical_scope,
)
from hamn.metadata.store import MetadataStore
from hamn.oci.names import is_valid_registry_name
from hamn.services.identity import Identity, IdentityKind

T = TypeVar("T")

_GIB: Final = 1024**3
#: Included storage per SKU (SPEC §2), the Size usage's limit.
SKU_STORAGE: Final = {"Basic": 10 * _GIB, "Standard": 100 * _GIB, "Premium": 500 * _GIB}
#: Tokens and scope maps per SKU (ACR's limits), reported by show-usage.
SKU_TOKENS: Final = {"Basic": 100, "Standard": 500, "Premium": 50_000}
#: Webhooks per SKU (ACR's limits), reported by show-usage.
SKU_WEBHOOKS: Final = {"Basic": 2, "Standard": 10, "Premium": 500}
#: SKUs that allow anonymous pull (as in ACR).
ANONYMOUS_PULL_SKUS: Final = ("Standard", "Premium")
#: The admin user's two passwords, as ACR names them.
ADMIN_PASSWORD_NAMES: Final = ("password", "password2")
#: The shortest password a user may choose.
MIN_PASSWORD_LENGTH: Final = 12
#: The username of refresh tokens presented as Basic credentials; never a name.
NULL_GUID: Final = "00000000-0000-0000-0000-000000000000"

_REGISTRY_RULE = "registry names are 5 to 50 letters and digits (^[a-zA-Z0-9]{5,50}$)"
_SCOPE_MAP_NAME = re.compile(r"[a-zA-Z0-9_-]{5,50}")
_TOKEN_NAME = re.compile(r"[a-zA-Z0-9-]{5,50}")
# A user name is a Basic username: no ':' and no whitespace; e-mail addresses fit.
_USER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._@+-]{0,254}")

_M = ManagementPermission
_PRINCIPAL_WORDS: Final = {"user": "user", "service_principal": "service principal"}


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManagedRegistry:
    """A registry with its settings and the login server clients reach it by."""

    info: RegistryInfo
    login_server: str


@dataclass(frozen=True, slots=True)
class AdminPasswords:
    """The admin user of a registry: its username (the registry's name) and passwords."""

    username: str
    password: str = field(repr=False)
    password2: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NameAvailability:
    """checkNameAvailability's answer; ``reason`` is ``Invalid`` or ``AlreadyExists``."""

    available: bool
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """One line of show-usage: a limit and the current value, in ``Bytes`` or ``Count``."""

    name: str
    limit: int
    current_value: int
    unit: str


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


# -- checks ------------------------------------------------------------------------------------


def _principal(identity: Identity) -> Identity:
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


def _require(caller: Identity, registry: str | None, permission: ManagementPermission) -> None:
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


def _registry_not_found(name: str) -> HamnError:
    return HamnError(
        NOT_FOUND,
        f"registry {name[:100]!r} not found (or you may not see it)",
        detail={"registry": name[:100]},
    )


def _not_found(exc: NotFound) -> HamnError:
    if exc.kind == "registry":
        return _registry_not_found(exc.name)
    return HamnError(NOT_FOUND, str(exc), detail={exc.kind.replace(" ", ""): exc.name[:100]})


def _already_exists(exc: AlreadyExists, rule: str = "") -> HamnError:
    return HamnError(ALREADY_EXISTS, f"{exc}{rule}", detail={"name": exc.name[:100]})


def _body_invalid(message: str, **detail: object) -> HamnError:
    return HamnError(BODY_INVALID, message, detail=detail or None)


def _parsed(parse: Callable[[str], T], text: str, code: ErrorCode) -> T:
    """Parse a field with a policy parser; its "no such thing" (NOT_FOUND) becomes ``code``:
    a bad value in a body or query is the request's fault, not a missing resource."""
    try:
        return parse(text)
    except HamnError as exc:
        if exc.code is NOT_FOUND:
            raise HamnError(code, exc.message, detail=exc.detail) from None
        raise


def parse_sku(text: str) -> str:
    """The canonical SKU for ``text`` (case-insensitive); BODY_INVALID otherwise."""
    for sku in SKUS:
        if sku.lower() == text.lower():
            return sku
    raise _body_invalid(f"sku must be one of {', '.join(SKUS)}", sku=text[:100])


def _check_anonymous_pull(sku: str) -> None:
    if sku not in ANONYMOUS_PULL_SKUS:
        raise _body_invalid(
            f"anonymous pull needs the Standard or Premium SKU (as in ACR); this registry would "
            f"be {sku}: change the sku in the same request (--sku Standard)",
            sku=sku,
        )


def _check_name(name: str, pattern: re.Pattern[str], rule: str) -> None:
    if not pattern.fullmatch(name) or name == NULL_GUID:
        raise HamnError(NAME_INVALID, rule, detail={"name": name[:100]})


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_SECRET_LENGTH:
        raise _body_invalid(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_SECRET_LENGTH} characters; leave it "
            "out to have one generated",
            field="password",
        )


def _admin_associated_data(registry: str) -> bytes:
    # Binds the sealed value to its registry: copied to another row, it does not open.
    return f"admin-passwords:/registries/{registry.lower()}".encode()


def _role_scope(scope: str) -> ResourceScope | None:
    """A stored (canonical) scope, or None if it no longer parses (then nobody sees it)."""
    try:
        return parse_resource_scope(scope)
    except HamnError:
        return None


# -- the service -------------------------------------------------------------------------------


class ManagementService:
    """The use cases behind ``/api``: one method per operation of the contract table."""

    def __init__(
        self,
        identities: IdentityStore,
        metadata: MetadataStore,
        *,
        secret_key: bytes,
        domain: str,
        hasher: Callable[[str], str] = hash_secret,
    ) -> None:
        self._identities = identities
        self._metadata = metadata
        self._key = secret_key
        self._domain = domain.lower().strip(".")
        # Tests pass a cheaper hasher; the server always uses the OWASP parameters.
        self._hasher = hasher

    async def _hash(self, secret: str) -> str:
        return await asyncio.to_thread(self._hasher, secret)

    def _managed(self, info: RegistryInfo) -> ManagedRegistry:
        return ManagedRegistry(info, f"{info.name.lower()}.{self._domain}")

    async def _visible(self, caller: Identity, name: str) -> RegistryInfo:
        """The registry, if it exists and the caller can see it; else NOT_FOUND."""
        info = (
            await self._identities.get_registry_info(name) if is_valid_registry_name(name) else None
        )
        if info is None or not can_see_registry(caller.assignments, info.name):
            raise _registry_not_found(name)
        return info

    async def _registry(
        self, identity: Identity, name: str, permission: ManagementPermission
    ) -> RegistryInfo:
        caller = _principal(identity)
        info = await self._visible(caller, name)
        _require(caller, info.name, permission)
        return info

    @staticmethod
    async def _store(call: Awaitable[T], rule: str = "") -> T:
        """Await a store write, turning its errors into protocol errors."""
        try:
            return await call
        except NotFound as exc:
            raise _not_found(exc) from None
        except AlreadyExists as exc:
            raise _already_exists(exc, rule) from None

    # -- the caller and the roles --------------------------------------------------------------
    async def me(self, identity: Identity) -> Caller:
        """Who the caller is."""
        caller = _principal(identity)
        return Caller(caller.subject, caller.name, caller.principal_kind or "user")

    async def role_definitions(self, identity: Identity) -> list[RoleDefinition]:
        """The built-in roles (SPEC §2)."""
        _principal(identity)
        return list(ROLES.values())

    # -- registries ----------------------------------------------------------------------------
    async def list_registries(self, identity: Identity) -> list[ManagedRegistry]:
        """The registries the caller can see, by name."""
        caller = _principal(identity)
        return [
            self._managed(info)
            for info in await self._identities.list_registries()
            if can_see_registry(caller.assignments, info.name)
        ]

    async def check_name(self, identity: Identity, name: str) -> NameAvailability:
        """Whether a registry could be created with this name."""
        _principal(identity)
        if not is_valid_registry_name(name):
            return NameAvailability(False, "Invalid", _REGISTRY_RULE)
        if await self._identities.get_registry_info(name) is not None:
            return NameAvailability(
                False, "AlreadyExists", f"the registry name {name!r} is already in use"
            )
        return NameAvailability(True)

    async def create_registry(
        self,
        identity: Identity,
        name: str,
        sku: str,
        *,
        admin_user_enabled: bool = False,
        anonymous_pull_enabled: bool = False,
    ) -> ManagedRegistry:
        """Create a registry (WRITE at ``/``); with the admin user, make its two passwords."""
        caller = _principal(identity)
        _require(caller, None, _M.WRITE)
        if not is_valid_registry_name(name):
            raise HamnError(NAME_INVALID, _REGISTRY_RULE, detail={"name": name[:100]})
        canonical = parse_sku(sku)
        if anonymous_pull_enabled:
            _check_anonymous_pull(canonical)
        info = await self._store(
            self._identities.create_registry(
                name,
                canonical,
                admin_user_enabled,
                anonymous_pull_enabled=anonymous_pull_enabled,
            ),
            " (registry names are unique regardless of letter case)",
        )
        if admin_user_enabled:
            await self._new_admin_passwords(info.name)
        return self._managed(info)

    async def get_registry(self, identity: Identity, name: str) -> ManagedRegistry:
        """One registry (READ on it)."""
        return self._managed(await self._registry(identity, name, _M.READ))

    async def update_registry(
        self,
        identity: Identity,
        name: str,
        *,
        sku: str | None = None,
        admin_user_enabled: bool | None = None,
        anonymous_pull_enabled: bool | None = None,
    ) -> ManagedRegistry:
        """Change the SKU, the admin user or anonymous pull (WRITE on the registry).

        Enabling the admin user makes its passwords if it has none.
        """
        info = await self._registry(identity, name, _M.WRITE)
        canonical = parse_sku(sku) if sku is not None else None
        anonymous = (
            anonymous_pull_enabled
            if anonymous_pull_enabled is not None
            else info.anonymous_pull_enabled
        )
        if anonymous:
            _check_anonymous_pull(canonical or info.sku)
        updated = await self._store(
            self._identities.update_registry(
                info.name,
                sku=canonical,
                admin_user_enabled=admin_user_enabled,
                anonymous_pull_enabled=anonymous_pull_enabled,
            )
        )
        if admin_user_enabled:
            credentials = await self._identities.get_admin_credentials(info.name)
            if credentials is not None and credentials.sealed is None:
                await self._new_admin_passwords(info.name)
        return self._managed(updated)

    async def delete_registry(self, identity: Identity, name: str) -> None:
        """Delete the registry and everything in it (WRITE on it)."""
        info = await self._registry(identity, name, _M.WRITE)
        if not await self._identities.delete_registry(info.name):
            raise _registry_not_found(name)

    # -- admin credentials ---------------------------------------------------------------------
    async def _seal_and_store(
        self, registry: str, passwords: tuple[str, str], hashes: tuple[str, str]
    ) -> AdminPasswords:
        sealed = seal(
            orjson.dumps(list(passwords)).decode(), self._key, _admin_associated_data(registry)
        )
        await self._store(self._identities.set_admin_passwords(registry, *hashes, sealed))
        return AdminPasswords(registry, *passwords)

    async def _new_admin_passwords(self, registry: str) -> AdminPasswords:
        passwords = (new_secret(), new_secret())
        hashes = (await self._hash(passwords[0]), await self._hash(passwords[1]))
        return await self._seal_and_store(registry, passwords, hashes)

    def _unseal(self, registry: str, sealed: str) -> tuple[str, str]:
        opened = orjson.loads(unseal(sealed, self._key, _admin_associated_data(registry)))
        return str(opened[0]), str(opened[1])

    async def _enabled_admin(self, identity: Identity, name: str) -> tuple[str, str | None]:
        """The registry's name and sealed passwords, if its admin user is enabled (WRITE)."""
        info = await self._registry(identity, name, _M.WRITE)
        credentials = await self._identities.get_admin_credentials(info.name)
        if credentials is None:
            raise _registry_not_found(name)
        if not credentials.enabled:
            raise HamnError(
                ADMIN_DISABLED,
                f"the admin user of registry {info.name!r} is disabled; run "
                f"'hamn update -n {info.name} --admin-enabled true' to enable it",
                detail={"registry": info.name},
            )
        return info.name, credentials.sealed

    async def list_credentials(self, identity: Identity, name: str) -> AdminPasswords:
        """The admin user's username and two passwords (ACR's ``credential show``)."""
        registry, sealed = await self._enabled_admin(identity, name)
        if sealed is None:  # enabled by a write that had not made them yet
            return await self._new_admin_passwords(registry)
        try:
            return AdminPasswords(registry, *self._unseal(registry, sealed))
        except SealError:
            raise HamnError(
                UNKNOWN,
                f"the admin passwords of {registry!r} were sealed under another server key; "
                f"renew both ('hamn credential renew -n {registry} --password-name password')",
            ) from None

    async def regenerate_credential(
        self, identity: Identity, name: str, password_name: str
    ) -> AdminPasswords:
        """Replace ``password`` or ``password2`` (ACR's ``credential renew``); the other stays.

        If the stored passwords cannot be opened (another server key), both are renewed.
        """
        registry, sealed = await self._enabled_admin(identity, name)
        credentials = await self._identities.get_admin_credentials(registry)
        try:
            if sealed is None or credentials is None:
                raise SealError("no passwords yet")
            old = self._unseal(registry, sealed)
            old_hashes = (credentials.password_hash or "", credentials.password2_hash or "")
        except SealError:
            return await self._new_admin_passwords(registry)
        fresh = new_secret()
        fresh_hash = await self._hash(fresh)
        if password_name == ADMIN_PASSWORD_NAMES[0]:
            return await self._seal_and_store(
                registry, (fresh, old[1]), (fresh_hash, old_hashes[1])
            )
        return await self._seal_and_store(registry, (old[0], fresh), (old_hashes[0], fresh_hash))

    # -- usage ---------------------------------------------------------------------------------
    async def usages(self, identity: Identity, name: str) -> list[Usage]:
        """Size (distinct blob bytes) against the SKU's storage, and the counts (READ)."""
        info = await self._registry(identity, name, _M.READ)
        size = await self._metadata.registry_size(info.id)
        tokens = await self._store(self._identities.list_tokens(info.name))
        scope_maps = await self._store(self._identities.list_scope_maps(info.name))
        return [
            Usage("Size", SKU_STORAGE[info.sku], size, "Bytes"),
            Usage("Webhooks", SKU_WEBHOOKS[info.sku], 0, "Count"),
            # Replication does not exist in hamn yet.
            Usage("Replications", 0, 0, "Count"),
            Usage("ScopeMaps", SKU_TOKENS[info.sku], len(scope_maps), "Count"),
            Usage("Tokens", SKU_TOKENS[info.sku], len(tokens), "Count"),
        ]

    # -- scope maps ----------------------------------------------------------------------------
    @staticmethod
    def _actions(actions: Sequence[str]) -> list[str]:
        if not actions:
            raise _body_invalid("a scope map needs at least one action", field="actions")
        parsed = [str(_parsed(parse_scope_map_action, a, BODY_INVALID)) for a in actions]
        return list(dict.fromkeys(parsed))

    async def list_scope_maps(self, identity: Identity, registry: str) -> list[RegistryScopeMap]:
        """The registry's scope maps (READ)."""
        info = await self._registry(identity, registry, _M.READ)
        found = await self._store(self._identities.list_scope_maps(info.name))
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
        info = await self._registry(identity, registry, _M.WRITE)
        _check_name(
            name,
            _SCOPE_MAP_NAME,
            "scope map names are 5 to 50 letters, digits, '-' and '_' (^[a-zA-Z0-9_-]{5,50}$)",
        )
        checked = self._actions(actions)
        made = await self._store(
            self._identities.create_scope_map(info.name, name, checked, description)
        )
        return RegistryScopeMap(info.name, made)

    async def get_scope_map(self, identity: Identity, registry: str, name: str) -> RegistryScopeMap:
        """One scope map (READ)."""
        info = await self._registry(identity, registry, _M.READ)
        found = await self._identities.get_scope_map(info.name, name)
        if found is None:
            raise _not_found(NotFound("scope map", name))
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
        info = await self._registry(identity, registry, _M.WRITE)
        checked = self._actions(actions) if actions is not None else None
        updated = await self._store(
            self._identities.update_scope_map(
                info.name, name, actions=checked, description=description
            )
        )
        return RegistryScopeMap(info.name, updated)

    async def delete_scope_map(self, identity: Identity, registry: str, name: str) -> None:
        """Delete a scope map (WRITE); IN_USE, naming them, while tokens use it."""
        info = await self._registry(identity, registry, _M.WRITE)
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
            raise _not_found(NotFound("scope map", name))

    # -- tokens --------------------------------------------------------------------------------
    async def _token(self, registry: str, name: str) -> Token:
        found = await self._identities.get_token(registry, name)
        if found is None:
            raise _not_found(NotFound("token", name))
        return found

    async def _new_token_password(
        self, registry: str, token: str, password_name: str, expiry: datetime | None = None
    ) -> str:
        secret = new_secret()
        hashed = await self._hash(secret)
        await self._store(
            self._identities.set_token_password(registry, token, password_name, hashed, expiry)
        )
        return secret

    async def list_tokens(self, identity: Identity, registry: str) -> list[IssuedToken]:
        """The registry's tokens (READ), without password values."""
        info = await self._registry(identity, registry, _M.READ)
        found = await self._store(self._identities.list_tokens(info.name))
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
        info = await self._registry(identity, registry, _M.WRITE)
        _check_name(
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
        token = await self._store(self._identities.create_token(info.name, name, scope_map, status))
        values: dict[str, str] = {}
        if not no_passwords:
            for password_name in TOKEN_PASSWORD_NAMES:
                values[password_name] = await self._new_token_password(
                    info.name, token.name, password_name
                )
        return IssuedToken(info.name, await self._token(info.name, token.name), values)

    async def get_token(self, identity: Identity, registry: str, name: str) -> IssuedToken:
        """One token (READ), without password values."""
        info = await self._registry(identity, registry, _M.READ)
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
        info = await self._registry(identity, registry, _M.WRITE)
        token = await self._store(
            self._identities.update_token(info.name, name, status=status, scope_map=scope_map)
        )
        return IssuedToken(info.name, token)

    async def delete_token(self, identity: Identity, registry: str, name: str) -> None:
        """Delete a token and its passwords (WRITE)."""
        info = await self._registry(identity, registry, _M.WRITE)
        if not await self._identities.delete_token(info.name, name):
            raise _not_found(NotFound("token", name))

    async def generate_token_password(
        self,
        identity: Identity,
        registry: str,
        name: str,
        password_name: str,
        expiry: datetime | None = None,
    ) -> IssuedToken:
        """Make (or replace) ``password1`` or ``password2`` of a token (WRITE)."""
        info = await self._registry(identity, registry, _M.WRITE)
        if password_name not in TOKEN_PASSWORD_NAMES:
            raise _body_invalid("name must be password1 or password2", field="name")
        if expiry is not None and expiry <= datetime.now(UTC):
            raise _body_invalid("expiry must be in the future", field="expiry")
        token = await self._token(info.name, name)
        value = await self._new_token_password(info.name, token.name, password_name, expiry)
        return IssuedToken(
            info.name, await self._token(info.name, token.name), {password_name: value}
        )

    async def delete_token_password(
        self, identity: Identity, registry: str, name: str, password_name: str
    ) -> None:
        """Delete one of a token's passwords (WRITE)."""
        info = await self._registry(identity, registry, _M.WRITE)
        token = await self._token(info.name, name)
        if not await self._identities.delete_token_password(info.name, token.name, password_name):
            raise HamnError(
                NOT_FOUND,
                f"token {token.name!r} has no password named {password_name[:50]!r}",
                detail={"password": password_name[:50]},
            )

    # -- role assignments ----------------------------------------------------------------------
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
        return (await self._visible(caller, scope.registry)).name

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
        caller = _principal(identity)
        role_name = _parsed(parse_role, role, PARAMETER_INVALID).value if role else None
        scope_text = None
        if scope is not None:
            parsed = _parsed(parse_resource_scope, scope, PARAMETER_INVALID)
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
        caller = _principal(identity)
        parsed_role = _parsed(parse_role, role, BODY_INVALID)
        parsed_scope = _parsed(parse_resource_scope, scope, BODY_INVALID)
        _require(caller, await self._scope_registry(caller, parsed_scope), _M.ROLE_ASSIGNMENT_WRITE)
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
        return await self._store(
            self._identities.create_role_assignment(principal.id, parsed_role.value, canonical)
        )

    async def delete_role_assignment(self, identity: Identity, assignment_id: str) -> None:
        """Remove a role assignment (ROLE_ASSIGNMENT_WRITE at its scope's registry or ``/``)."""
        caller = _principal(identity)
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
        _require(caller, scope.registry, _M.ROLE_ASSIGNMENT_WRITE)
        await self._keep_an_owner(assignment_id=assignment_id)
        if not await self._identities.delete_role_assignment(assignment_id):
            raise HamnError(NOT_FOUND, f"role assignment {assignment_id[:64]!r} not found")

    async def _keep_an_owner(
        self, *, assignment_id: str | None = None, principal_id: str | None = None
    ) -> None:
        """IN_USE if the change would leave no enabled principal holding Owner at ``/``."""
        owners = [
            a
            for a in await self._identities.list_role_assignments(scope="/", role=Role.OWNER.value)
            if a.scope == "/"
        ]
        if not owners:
            return
        enabled = {p.id for p in await self._identities.list_principals() if not p.disabled}
        remaining = [
            a
            for a in owners
            if a.id != assignment_id
            and a.principal_id != principal_id
            and a.principal_id in enabled
        ]
        if not remaining:
            raise HamnError(
                IN_USE,
                "this would remove the last enabled Owner at '/', and nobody could manage hamn "
                "any more; assign Owner at '/' to another user or service principal first",
            )

    # -- users and service principals ----------------------------------------------------------
    async def list_principals(self, identity: Identity, kind: str) -> list[Principal]:
        """Users or service principals (READ at ``/``)."""
        _require(_principal(identity), None, _M.READ)
        return await self._identities.list_principals(kind)

    async def _named(
        self, identity: Identity, kind: str, name: str, permission: ManagementPermission
    ) -> Principal:
        """The principal ``name`` of ``kind``; the caller needs ``permission`` at ``/``
        unless it is that principal and asks to read it."""
        caller = _principal(identity)
        found = await self._identities.get_principal_by_name(name)
        myself = found is not None and found.id == caller.subject and permission is _M.READ
        if not myself:
            _require(caller, None, permission)
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
        _require(_principal(identity), None, _M.ROLE_ASSIGNMENT_WRITE)
        _check_name(
            name,
            _USER_NAME,
            "user names are 1 to 255 characters of letters, digits and '.', '_', '@', '+', '-', "
            "starting with a letter or digit",
        )
        generated = password is None
        if password is None:
            password = new_secret()
        _check_password(password)
        hashed = await self._hash(password)
        principal = await self._store(
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
        _require(_principal(identity), None, _M.ROLE_ASSIGNMENT_WRITE)
        secret = new_secret()
        hashed = await self._hash(secret)
        principal = await self._store(
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
        caller = _principal(identity)
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
            raise _body_invalid(
                "a user's displayName cannot be changed yet; create the user again",
                field="displayName",
            )
        if password is not None:
            _check_password(password)
            hashed = await self._hash(password)
            user = await self._store(self._identities.set_principal_secret(user.id, hashed))
        if disabled is not None and disabled != user.disabled:
            if disabled:
                await self._keep_an_owner(principal_id=user.id)
            user = await self._store(self._identities.set_principal_disabled(user.id, disabled))
        return user

    async def reset_credential(self, identity: Identity, app_id: str) -> IssuedPrincipal:
        """Give a service principal a new secret (ROLE_ASSIGNMENT_WRITE at ``/``)."""
        principal = await self._named(
            identity, "service_principal", app_id, _M.ROLE_ASSIGNMENT_WRITE
        )
        secret = new_secret()
        hashed = await self._hash(secret)
        updated = await self._store(self._identities.set_principal_secret(principal.id, hashed))
        return IssuedPrincipal(updated, secret)

    async def delete_principal(self, identity: Identity, kind: str, name: str) -> None:
        """Delete a user or service principal and its role assignments
        (ROLE_ASSIGNMENT_WRITE at ``/``)."""
        principal = await self._named(identity, kind, name, _M.ROLE_ASSIGNMENT_WRITE)
        await self._keep_an_owner(principal_id=principal.id)
        if not await self._identities.delete_principal(principal.id):
            raise HamnError(NOT_FOUND, f"{_PRINCIPAL_WORDS[kind]} {name[:100]!r} not found")
