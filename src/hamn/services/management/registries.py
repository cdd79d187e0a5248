"""Registries, their admin user's credentials, and their usage (SPEC §5.1).

Registries are named ``^[a-zA-Z0-9]{5,50}$``, unique regardless of letter case, and
reached by clients at ``<name lower>.<domain>``. Creating one needs WRITE at ``/``;
everything else needs READ or WRITE on the registry (``checks.permitted_registry``).

The admin user's two passwords come from :func:`~hamn.auth.secrets.new_secret`. Only
their argon2id hashes are checked at sign-in, but they are also sealed together (AES-GCM
under the server key, bound to the registry's name) because ``credential show`` prints
them again, as ACR does. Nothing here logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import orjson

from hamn.auth.policy import ManagementPermission, can_see_registry
from hamn.auth.secrets import SealError, hash_secret, new_secret, seal, unseal
from hamn.errors import ADMIN_DISABLED, IN_USE, NAME_INVALID, UNKNOWN, HamnError
from hamn.metadata.identities import SKUS, IdentityStore, RegistryInfo
from hamn.metadata.store import MetadataStore, utcnow
from hamn.oci.names import is_valid_registry_name
from hamn.services.identity import Identity
from hamn.services.management.checks import (
    Hasher,
    as_principal,
    body_invalid,
    hash_off_loop,
    permitted_registry,
    registry_not_found,
    require,
    stored,
)
from hamn.services.retention import MAX_DAYS as MAX_RETENTION_DAYS
from hamn.services.retention import RetentionPolicy, retention_policy, with_retention
from hamn.services.soft_delete_policy import MAX_DAYS as MAX_SOFT_DELETE_DAYS
from hamn.services.soft_delete_policy import MIN_DAYS as MIN_SOFT_DELETE_DAYS
from hamn.services.soft_delete_policy import (
    SoftDeletePolicy,
    conflict,
    soft_delete_policy,
    with_soft_delete,
)

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

_REGISTRY_RULE = "registry names are 5 to 50 letters and digits (^[a-zA-Z0-9]{5,50}$)"

_M = ManagementPermission


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


def parse_sku(text: str) -> str:
    """The canonical SKU for ``text`` (case-insensitive); BODY_INVALID otherwise."""
    for sku in SKUS:
        if sku.lower() == text.lower():
            return sku
    raise body_invalid(f"sku must be one of {', '.join(SKUS)}", sku=text[:100])


def _check_anonymous_pull(sku: str) -> None:
    if sku not in ANONYMOUS_PULL_SKUS:
        raise body_invalid(
            f"anonymous pull needs the Standard or Premium SKU (as in ACR); this registry would "
            f"be {sku}: change the sku in the same request (--sku Standard)",
            sku=sku,
        )


def _admin_associated_data(registry: str) -> bytes:
    # Binds the sealed value to its registry: copied to another row, it does not open.
    return f"admin-passwords:/registries/{registry.lower()}".encode()


def retention_of(info: RegistryInfo) -> RetentionPolicy:
    """The registry's retention policy; never set, it was last updated with the registry."""
    policy = retention_policy(info.policies)
    if policy.last_updated is None:
        return replace(policy, last_updated=info.updated_at)
    return policy


def soft_delete_of(info: RegistryInfo) -> SoftDeletePolicy:
    """The registry's soft delete policy; never set, it was last updated with the registry."""
    policy = soft_delete_policy(info.policies)
    if policy.last_updated is None:
        return replace(policy, last_updated=info.updated_at)
    return policy


def _check_status(status: str | None) -> None:
    if status is not None and status not in ("enabled", "disabled"):
        raise body_invalid("status must be enabled or disabled", status=status[:20])


def _refuse_conflict(info: RegistryInfo, enabling: str) -> None:
    why = conflict(info.policies, enabling, info.name)
    if why is not None:
        raise HamnError(IN_USE, why, detail={"registry": info.name, "policy": enabling})


class RegistryService:
    """The registries, their admin credentials and usage behind ``/api/registries``."""

    def __init__(
        self,
        identities: IdentityStore,
        metadata: MetadataStore,
        *,
        secret_key: bytes,
        domain: str,
        hasher: Hasher = hash_secret,
        storage_quotas: Mapping[str, int] | None = None,
    ) -> None:
        self._identities = identities
        self._metadata = metadata
        self._key = secret_key
        # The quotas the data plane enforces (Settings.storage_quotas); SKU_STORAGE by default.
        self._quotas: Mapping[str, int] = storage_quotas or SKU_STORAGE
        self._domain = domain.lower().strip(".")
        # Tests pass a cheaper hasher; the server always uses the OWASP parameters.
        self._hasher = hasher

    def _managed(self, info: RegistryInfo) -> ManagedRegistry:
        return ManagedRegistry(info, f"{info.name.lower()}.{self._domain}")

    # -- registries ----------------------------------------------------------------------------
    async def list_registries(self, identity: Identity) -> list[ManagedRegistry]:
        """The registries the caller can see, by name."""
        caller = as_principal(identity)
        return [
            self._managed(info)
            for info in await self._identities.list_registries()
            if can_see_registry(caller.assignments, info.name)
        ]

    async def check_name(self, identity: Identity, name: str) -> NameAvailability:
        """Whether a registry could be created with this name."""
        as_principal(identity)
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
        caller = as_principal(identity)
        require(caller, None, _M.WRITE)
        if not is_valid_registry_name(name):
            raise HamnError(NAME_INVALID, _REGISTRY_RULE, detail={"name": name[:100]})
        canonical = parse_sku(sku)
        if anonymous_pull_enabled:
            _check_anonymous_pull(canonical)
        info = await stored(
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
        return self._managed(await permitted_registry(self._identities, identity, name, _M.READ))

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
        info = await permitted_registry(self._identities, identity, name, _M.WRITE)
        canonical = parse_sku(sku) if sku is not None else None
        anonymous = (
            anonymous_pull_enabled
            if anonymous_pull_enabled is not None
            else info.anonymous_pull_enabled
        )
        if anonymous:
            _check_anonymous_pull(canonical or info.sku)
        updated = await stored(
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
        info = await permitted_registry(self._identities, identity, name, _M.WRITE)
        if not await self._identities.delete_registry(info.name):
            raise registry_not_found(name)

    # -- the retention policy ------------------------------------------------------------------
    async def get_retention(self, identity: Identity, name: str) -> RetentionPolicy:
        """The registry's untagged-manifest retention policy (READ on it)."""
        info = await permitted_registry(self._identities, identity, name, _M.READ)
        return retention_of(info)

    async def update_retention(
        self,
        identity: Identity,
        name: str,
        *,
        status: str | None = None,
        days: int | None = None,
    ) -> RetentionPolicy:
        """Change the retention policy (WRITE on the registry); enabling it records the
        time, and only manifests untagged after it count (as in ACR)."""
        info = await permitted_registry(self._identities, identity, name, _M.WRITE)
        _check_status(status)
        if days is not None and not 0 <= days <= MAX_RETENTION_DAYS:
            raise body_invalid(f"days must be 0 to {MAX_RETENTION_DAYS}", days=days)
        if status == "enabled":
            _refuse_conflict(info, "retention")
        policies, policy = with_retention(info.policies, utcnow(), status=status, days=days)
        await stored(self._identities.update_registry(info.name, policies=policies))
        return policy

    # -- the soft delete policy ----------------------------------------------------------------
    async def get_soft_delete(self, identity: Identity, name: str) -> SoftDeletePolicy:
        """The registry's soft delete policy (READ on it)."""
        info = await permitted_registry(self._identities, identity, name, _M.READ)
        return soft_delete_of(info)

    async def update_soft_delete(
        self,
        identity: Identity,
        name: str,
        *,
        status: str | None = None,
        days: int | None = None,
    ) -> SoftDeletePolicy:
        """Change the soft delete policy (WRITE on the registry). Enabling it while the
        retention policy is enabled is refused (IN_USE, 409), as ACR refuses it."""
        info = await permitted_registry(self._identities, identity, name, _M.WRITE)
        _check_status(status)
        if days is not None and not MIN_SOFT_DELETE_DAYS <= days <= MAX_SOFT_DELETE_DAYS:
            raise body_invalid(
                f"days must be {MIN_SOFT_DELETE_DAYS} to {MAX_SOFT_DELETE_DAYS}", days=days
            )
        if status == "enabled":
            _refuse_conflict(info, "softDelete")
        policies, policy = with_soft_delete(info.policies, utcnow(), status=status, days=days)
        await stored(self._identities.update_registry(info.name, policies=policies))
        return policy

    # -- admin credentials ---------------------------------------------------------------------
    async def _seal_and_store(
        self, registry: str, passwords: tuple[str, str], hashes: tuple[str, str]
    ) -> AdminPasswords:
        sealed = seal(
            orjson.dumps(list(passwords)).decode(), self._key, _admin_associated_data(registry)
        )
        await stored(self._identities.set_admin_passwords(registry, *hashes, sealed))
        return AdminPasswords(registry, *passwords)

    async def _new_admin_passwords(self, registry: str) -> AdminPasswords:
        passwords = (new_secret(), new_secret())
        hashes = (
            await hash_off_loop(self._hasher, passwords[0]),
            await hash_off_loop(self._hasher, passwords[1]),
        )
        return await self._seal_and_store(registry, passwords, hashes)

    def _unseal(self, registry: str, sealed: str) -> tuple[str, str]:
        opened = orjson.loads(unseal(sealed, self._key, _admin_associated_data(registry)))
        return str(opened[0]), str(opened[1])

    async def _enabled_admin(self, identity: Identity, name: str) -> tuple[str, str | None]:
        """The registry's name and sealed passwords, if its admin user is enabled (WRITE)."""
        info = await permitted_registry(self._identities, identity, name, _M.WRITE)
        credentials = await self._identities.get_admin_credentials(info.name)
        if credentials is None:
            raise registry_not_found(name)
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
        fresh_hash = await hash_off_loop(self._hasher, fresh)
        if password_name == ADMIN_PASSWORD_NAMES[0]:
            return await self._seal_and_store(
                registry, (fresh, old[1]), (fresh_hash, old_hashes[1])
            )
        return await self._seal_and_store(registry, (old[0], fresh), (old_hashes[0], fresh_hash))

    # -- usage ---------------------------------------------------------------------------------
    async def usages(self, identity: Identity, name: str) -> list[Usage]:
        """Size (distinct blob bytes) against the SKU's storage, and the counts (READ)."""
        info = await permitted_registry(self._identities, identity, name, _M.READ)
        size = await self._metadata.registry_size(info.id)
        tokens = await stored(self._identities.list_tokens(info.name))
        scope_maps = await stored(self._identities.list_scope_maps(info.name))
        return [
            Usage("Size", self._quotas.get(info.sku, SKU_STORAGE[info.sku]), size, "Bytes"),
            Usage("Webhooks", SKU_WEBHOOKS[info.sku], 0, "Count"),
            # Replication does not exist in hamn yet.
            Usage("Replications", 0, 0, "Count"),
            Usage("ScopeMaps", SKU_TOKENS[info.sku], len(scope_maps), "Count"),
            Usage("Tokens", SKU_TOKENS[info.sku], len(tokens), "Count"),
        ]
