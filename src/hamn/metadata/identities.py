"""The control plane's store: registry settings, principals, role assignments,
scope maps, tokens, signing keys, and the authorisation version.

:class:`IdentityStore` shares a :class:`~hamn.metadata.store.MetadataStore`'s
database: reads go through ``run_read`` (or, for the lookups every request
makes, its prebuilt fast path) and writes through ``run_write``, so on SQLite
they join the same writer thread and group commit as pushes do.

Secrets are never stored in the clear, and the store never interprets them:
``*_hash`` values are slow hashes the auth layer computed and verifies, and
``admin_passwords_sealed`` and a signing key's ``private_key`` are opaque strings
the auth layer encrypted with its server key.

Every write that can change an authentication or authorisation decision bumps
``authz_state.version`` in its own transaction, so a process that caches
decisions keyed on :meth:`IdentityStore.authz_version` sees the change on its next
request. The bump is each write's last statement: on PostgreSQL the row lock is
then held only until commit, and no writer ever waits for another lock while
holding it. Writes that change nothing (deleting what is absent, creating what
exists) do not bump.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson
from sqlalchemy import Connection, Select, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from hamn.metadata import schema as t
from hamn.metadata.store import MetadataStore, utcnow

R = TypeVar("R")

SKUS: Final = ("Basic", "Standard", "Premium")
PRINCIPAL_KINDS: Final = ("user", "service_principal")
TOKEN_STATUSES: Final = ("enabled", "disabled")
TOKEN_PASSWORD_NAMES: Final = ("password1", "password2")

_SCOPE = re.compile(r"/|/registries/[^/\s]+(/repositories/[^\s]*[^/\s])?")


# -- errors ----------------------------------------------------------------------------------


class IdentityStoreError(Exception):
    """A control-plane write that cannot happen; ``kind`` and ``name`` say what it was about."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class AlreadyExists(IdentityStoreError):
    """A registry, principal, scope map, token or signing key of that name already exists
    (names compare case-insensitively, except signing keys' ids)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name, f"{kind} {name!r} already exists")


class NotFound(IdentityStoreError):
    """The registry, principal, scope map, token or signing key a write names does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name, f"{kind} {name!r} not found")


class InUse(IdentityStoreError):
    """A scope map cannot be deleted while tokens use it; ``users`` names them."""

    def __init__(self, kind: str, name: str, users: Sequence[str]) -> None:
        super().__init__(kind, name, f"{kind} {name!r} is used by {', '.join(users) or 'a token'}")
        self.users = tuple(users)


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryInfo:
    """A registry with its settings (SPEC §2); ``policies`` is a JSON object or None."""

    id: int
    name: str
    sku: str
    admin_user_enabled: bool
    anonymous_pull_enabled: bool
    provisioning_state: str
    policies: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    """What checking and showing a registry's admin user needs.

    The username is the registry's name. The hashes check a presented password;
    ``sealed`` holds both passwords encrypted by the auth layer, for
    ``credential show``.
    """

    registry_id: int
    registry: str
    enabled: bool
    password_hash: str | None = field(repr=False)
    password2_hash: str | None = field(repr=False)
    sealed: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """A user or a service principal (whose ``name`` is its appId)."""

    id: str
    kind: str
    name: str
    display_name: str | None
    secret_hash: str | None = field(repr=False)
    disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RoleAssignmentRecord:
    """A stored role assignment: a role granted to a principal at a scope (``/``,
    ``/registries/<r>`` or ``/registries/<r>/repositories/<repo>``, always lower
    case). ``hamn.auth.policy.RoleAssignment.parse(role, scope)`` makes it a policy
    input."""

    id: str
    principal_id: str
    principal_name: str
    principal_kind: str
    role: str
    scope: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ScopeMap:
    """A registry's named set of token actions (``repositories/<repo>/content/read``...)."""

    id: str
    registry_id: int
    name: str
    description: str | None
    actions: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TokenPassword:
    """One of a token's (at most two) passwords: its hash and optional expiry."""

    name: str
    secret_hash: str = field(repr=False)
    created_at: datetime
    expiry: datetime | None


@dataclass(frozen=True, slots=True)
class Token:
    """A repository-scoped token with what authenticating it needs: its status, its
    scope map's actions and its passwords (sorted by name)."""

    id: str
    registry_id: int
    name: str
    scope_map_id: str
    scope_map_name: str
    actions: tuple[str, ...]
    status: str
    created_at: datetime
    updated_at: datetime
    passwords: tuple[TokenPassword, ...]


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """A stored token signing key: it signs until ``signs_until`` and its tokens verify
    until ``verifies_until``. ``private_key`` is opaque (the auth layer's PEM, which it
    may seal); ``hamn.auth.tokens.SigningKey`` is the loaded key."""

    kid: str
    algorithm: str
    private_key: str = field(repr=False)
    public_key: str
    created_at: datetime
    signs_until: datetime
    verifies_until: datetime


# -- conversions -----------------------------------------------------------------------------


def _ts(value: datetime | str) -> datetime:
    # The SQLite fast path hands back the stored ISO text; other paths datetimes.
    # Everything hamn stores is UTC; SQLite forgets the zone.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ts_or_none(value: datetime | str | None) -> datetime | None:
    return None if value is None else _ts(value)


def _utc(value: datetime, what: str) -> datetime:
    # SQLite stores the wall-clock time without its zone, so only UTC may go in.
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def _check(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _check_name(value: str, limit: int, what: str) -> None:
    if not value or len(value) > limit:
        raise ValueError(f"{what} must have 1 to {limit} characters")


def _actions_json(actions: Iterable[str]) -> str:
    if isinstance(actions, str):  # a lone action would otherwise become its letters
        raise TypeError("actions must be a list of strings, not a string")
    listed = list(actions)
    if not all(isinstance(a, str) and a for a in listed):
        raise TypeError("actions must be non-empty strings")
    return orjson.dumps(listed).decode()


def _actions(text: str) -> tuple[str, ...]:
    return tuple(orjson.loads(text))


def canonical_scope(scope: str) -> str:
    """The stored form of a role assignment scope: lower case (registry names compare
    case-insensitively, repository names are lower case) without a trailing ``/``.

    Raises ValueError unless it is ``/``, ``/registries/<name>`` or
    ``/registries/<name>/repositories/<repository>``.
    """
    value = scope.lower()
    if len(value) > 1:
        value = value.rstrip("/")
    if len(value) > 512 or not _SCOPE.fullmatch(value):
        raise ValueError(f"invalid scope {scope!r}")
    return value


def _registry_scope(name_key: str) -> str:
    return f"/registries/{name_key}"


# -- prebuilt statements (the lookups every request makes, and their neighbours) ---------------

_R = t.registries.c
_P = t.principals.c
_A = t.role_assignments.c
_S = t.scope_maps.c
_T = t.tokens.c
_TP = t.token_passwords.c
_K = t.signing_keys.c

_AUTHZ_VERSION = select(t.authz_state.c.version).where(t.authz_state.c.id == 1)
_BUMP = (
    update(t.authz_state).where(t.authz_state.c.id == 1).values(version=t.authz_state.c.version + 1)
)

_REGISTRY_INFO_COLS = (
    _R.id,
    _R.name,
    _R.sku,
    _R.admin_user_enabled,
    _R.anonymous_pull_enabled,
    _R.provisioning_state,
    _R.policies,
    _R.created_at,
    _R.updated_at,
)
_REGISTRY_INFO_BY_KEY = select(*_REGISTRY_INFO_COLS).where(_R.name_key == bindparam("key"))
_REGISTRY_INFOS = select(*_REGISTRY_INFO_COLS)
_ADMIN_BY_KEY = select(
    _R.id,
    _R.name,
    _R.admin_user_enabled,
    _R.admin_password_hash,
    _R.admin_password2_hash,
    _R.admin_passwords_sealed,
).where(_R.name_key == bindparam("key"))
_REGISTRY_ID_BY_KEY = select(_R.id).where(_R.name_key == bindparam("key"))

_PRINCIPAL_COLS = (
    _P.id,
    _P.kind,
    _P.name,
    _P.display_name,
    _P.secret_hash,
    _P.disabled,
    _P.created_at,
    _P.updated_at,
)
_PRINCIPAL_BY_KEY = select(*_PRINCIPAL_COLS).where(_P.name_key == bindparam("key"))
_PRINCIPAL_BY_ID = select(*_PRINCIPAL_COLS).where(_P.id == bindparam("id"))

_ASSIGNMENTS = (
    select(_A.id, _A.principal_id, _P.name, _P.kind, _A.role, _A.scope, _A.created_at)
    .select_from(t.role_assignments.join(t.principals, _P.id == _A.principal_id))
    .order_by(_A.scope, _A.role, _P.name, _A.id)
)
_ASSIGNMENTS_FOR = _ASSIGNMENTS.where(_A.principal_id == bindparam("pid"))
_ASSIGNMENT_BY_KEY = _ASSIGNMENTS.where(
    _A.principal_id == bindparam("pid"),
    _A.role == bindparam("role"),
    _A.scope == bindparam("scope"),
)

_SCOPE_MAP_COLS = (
    _S.id,
    _S.registry_id,
    _S.name,
    _S.description,
    _S.actions,
    _S.created_at,
    _S.updated_at,
)
_SCOPE_MAP_BY_KEY = select(*_SCOPE_MAP_COLS).where(
    _S.registry_id == bindparam("rid"), _S.name_key == bindparam("key")
)
_SCOPE_MAPS_OF = (
    select(*_SCOPE_MAP_COLS).where(_S.registry_id == bindparam("rid")).order_by(_S.name, _S.id)
)

# A token with its scope map's actions and its passwords (one row per password,
# or one with NULL password columns): one statement, so one consistent snapshot.
_TOKEN_COLS = (
    _T.id,
    _T.registry_id,
    _T.name,
    _T.scope_map_id,
    _S.name,
    _S.actions,
    _T.status,
    _T.created_at,
    _T.updated_at,
    _TP.name,
    _TP.secret_hash,
    _TP.created_at,
    _TP.expiry,
)
_TOKEN_FROM = t.tokens.join(t.scope_maps, _S.id == _T.scope_map_id).outerjoin(
    t.token_passwords, _TP.token_id == _T.id
)
_TOKEN_BY_NAME = (
    select(*_TOKEN_COLS)
    .select_from(t.registries.join(_TOKEN_FROM, _T.registry_id == _R.id))
    .where(_R.name_key == bindparam("reg"), _T.name_key == bindparam("key"))
    .order_by(_TP.name)
)
_TOKEN_BY_KEY_IN = (
    select(*_TOKEN_COLS)
    .select_from(_TOKEN_FROM)
    .where(_T.registry_id == bindparam("rid"), _T.name_key == bindparam("key"))
    .order_by(_TP.name)
)
_TOKENS_OF = (
    select(*_TOKEN_COLS)
    .select_from(_TOKEN_FROM)
    .where(_T.registry_id == bindparam("rid"))
    .order_by(_T.name, _T.id, _TP.name)
)
_TOKENS_NAMED = (
    select(*_TOKEN_COLS)
    .select_from(_TOKEN_FROM)
    .where(_T.name_key == bindparam("key"))
    .order_by(_T.registry_id, _TP.name)
)
_TOKEN_BY_ID = select(*_TOKEN_COLS).select_from(_TOKEN_FROM).where(_T.id == bindparam("id"))
_REGISTRY_NAME_BY_ID = select(_R.name).where(_R.id == bindparam("id"))
_TOKEN_ID = select(_T.id).where(_T.registry_id == bindparam("rid"), _T.name_key == bindparam("key"))

_SIGNING_KEY_COLS = (
    _K.kid,
    _K.algorithm,
    _K.private_key,
    _K.public_key,
    _K.created_at,
    _K.signs_until,
    _K.verifies_until,
)
_SIGNING_KEY_BY_KID = select(*_SIGNING_KEY_COLS).where(_K.kid == bindparam("kid"))


def _registry_info(row: Sequence[Any]) -> RegistryInfo:
    created = _ts(row[7])
    return RegistryInfo(
        id=row[0],
        name=row[1],
        sku=row[2],
        admin_user_enabled=bool(row[3]),
        anonymous_pull_enabled=bool(row[4]),
        provisioning_state=row[5],
        policies=orjson.loads(row[6]) if row[6] is not None else None,
        created_at=created,
        # Null for a registry no control-plane write has touched (ensure_registry's).
        updated_at=_ts(row[8]) if row[8] is not None else created,
    )


def _principal(row: Sequence[Any]) -> Principal:
    return Principal(row[0], row[1], row[2], row[3], row[4], bool(row[5]), _ts(row[6]), _ts(row[7]))


def _assignment(row: Sequence[Any]) -> RoleAssignmentRecord:
    return RoleAssignmentRecord(row[0], row[1], row[2], row[3], row[4], row[5], _ts(row[6]))


def _scope_map(row: Sequence[Any]) -> ScopeMap:
    return ScopeMap(row[0], row[1], row[2], row[3], _actions(row[4]), _ts(row[5]), _ts(row[6]))


def _tokens(rows: Iterable[Sequence[Any]]) -> list[Token]:
    """Tokens from ``_TOKEN_COLS`` rows, in row order, each with its passwords."""
    out: list[Token] = []
    heads: dict[str, Sequence[Any]] = {}
    passwords: dict[str, list[TokenPassword]] = {}
    for row in rows:
        if row[0] not in heads:
            heads[row[0]] = row
            passwords[row[0]] = []
        if row[9] is not None:
            passwords[row[0]].append(
                TokenPassword(row[9], row[10], _ts(row[11]), _ts_or_none(row[12]))
            )
    for token_id, row in heads.items():
        out.append(
            Token(
                id=row[0],
                registry_id=row[1],
                name=row[2],
                scope_map_id=row[3],
                scope_map_name=row[4],
                actions=_actions(row[5]),
                status=row[6],
                created_at=_ts(row[7]),
                updated_at=_ts(row[8]),
                passwords=tuple(passwords[token_id]),
            )
        )
    return out


def _signing_key(row: Sequence[Any]) -> SigningKeyRecord:
    return SigningKeyRecord(row[0], row[1], row[2], row[3], _ts(row[4]), _ts(row[5]), _ts(row[6]))


def _inserted(conn: Connection, stmt: Any) -> bool:
    """Whether an insert-or-ignore (with RETURNING) stored its row. Not ``rowcount``:
    it is -1 on PostgreSQL once SQLAlchemy returns the primary key."""
    return conn.execute(stmt).first() is not None


@contextmanager
def _gone_means_not_found(kind: str, name: str) -> Iterator[None]:
    """A foreign key that fails because its parent was deleted by a concurrent
    transaction (PostgreSQL) means the parent is not found."""
    try:
        yield
    except IntegrityError as exc:
        raise NotFound(kind, name) from exc


# -- the store -------------------------------------------------------------------------------


class IdentityStore:
    """Reads and writes of the control plane's state, returning frozen dataclasses.

    ``get_*`` return None for what does not exist; writes raise :class:`NotFound`,
    :class:`AlreadyExists` or :class:`InUse`, and ValueError (TypeError) for
    values the schema cannot hold. Timestamps passed in must be timezone-aware.
    """

    def __init__(self, db: MetadataStore) -> None:
        self._db = db
        self._insert: Any = sqlite.insert if db.dialect == "sqlite" else postgresql.insert

    # -- plumbing ------------------------------------------------------------------------------
    async def _fast(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """A prebuilt lookup on the store's fast read path."""
        return list(await self._db.fast_read(stmt, dict(params)))

    async def _write(self, op: Callable[[Connection], R]) -> R:
        return await self._db.run_write(op)

    @staticmethod
    def _bump(conn: Connection) -> None:
        conn.execute(_BUMP)

    @staticmethod
    def _registry_id(conn: Connection, name: str) -> int:
        registry_id: int | None = conn.execute(_REGISTRY_ID_BY_KEY, {"key": name.lower()}).scalar()
        if registry_id is None:
            raise NotFound("registry", name)
        return registry_id

    @staticmethod
    def _scope_map_row(conn: Connection, registry_id: int, name: str) -> Sequence[Any]:
        row = conn.execute(_SCOPE_MAP_BY_KEY, {"rid": registry_id, "key": name.lower()}).first()
        if row is None:
            raise NotFound("scope map", name)
        return tuple(row)

    @staticmethod
    def _token_id(conn: Connection, registry_id: int, name: str) -> str:
        token_id: str | None = conn.execute(
            _TOKEN_ID, {"rid": registry_id, "key": name.lower()}
        ).scalar()
        if token_id is None:
            raise NotFound("token", name)
        return token_id

    @staticmethod
    def _token(conn: Connection, registry_id: int, name: str) -> Token:
        rows = conn.execute(_TOKEN_BY_KEY_IN, {"rid": registry_id, "key": name.lower()}).all()
        return _tokens(rows)[0]

    # -- authorisation version -----------------------------------------------------------------
    async def authz_version(self) -> int:
        """The authorisation version: it changes whenever anything that can alter an
        authentication or authorisation decision does, and on nothing else."""
        rows = await self._fast(_AUTHZ_VERSION, {})
        return int(rows[0][0])

    # -- registries ----------------------------------------------------------------------------
    async def create_registry(
        self,
        name: str,
        sku: str = "Basic",
        admin_user_enabled: bool = False,
        *,
        anonymous_pull_enabled: bool = False,
        policies: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> RegistryInfo:
        """Create a registry; AlreadyExists if one of that name exists in any letter case.

        The name's rules (SPEC §2) are the caller's to check.
        """
        _check(sku, SKUS, "sku")
        _check_name(name, 50, "a registry name")
        now = _utc(created_at, "created_at") if created_at else utcnow()
        stmt = (
            self._insert(t.registries)
            .values(
                name=name,
                name_key=name.lower(),
                sku=sku,
                admin_user_enabled=admin_user_enabled,
                anonymous_pull_enabled=anonymous_pull_enabled,
                provisioning_state="Succeeded",
                policies=orjson.dumps(dict(policies)).decode() if policies is not None else None,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name_key"])
            .returning(_R.id)
        )

        def op(conn: Connection) -> RegistryInfo:
            if not _inserted(conn, stmt):
                raise AlreadyExists("registry", name)
            row = conn.execute(_REGISTRY_INFO_BY_KEY, {"key": name.lower()}).one()
            self._bump(conn)
            return _registry_info(row)

        return await self._write(op)

    async def get_registry_info(self, name: str) -> RegistryInfo | None:
        """The registry with its settings (case-insensitive name), or None."""
        rows = await self._fast(_REGISTRY_INFO_BY_KEY, {"key": name.lower()})
        return _registry_info(rows[0]) if rows else None

    async def list_registries(self) -> list[RegistryInfo]:
        """Every registry, by name in byte order."""

        def op(conn: Connection) -> list[RegistryInfo]:
            return [_registry_info(row) for row in conn.execute(_REGISTRY_INFOS)]

        # Sorted here: ``registries.name`` has no bytewise collation on PostgreSQL.
        return sorted(await self._db.run_read(op), key=lambda r: r.name.encode())

    async def update_registry(
        self,
        name: str,
        *,
        sku: str | None = None,
        admin_user_enabled: bool | None = None,
        anonymous_pull_enabled: bool | None = None,
        policies: Mapping[str, Any] | None = None,
        provisioning_state: str | None = None,
    ) -> RegistryInfo:
        """Change the given settings (None leaves one as it is; ``policies`` replaces the
        whole object); NotFound if there is no such registry."""
        changes: dict[str, Any] = {}
        if sku is not None:
            _check(sku, SKUS, "sku")
            changes["sku"] = sku
        if admin_user_enabled is not None:
            changes["admin_user_enabled"] = admin_user_enabled
        if anonymous_pull_enabled is not None:
            changes["anonymous_pull_enabled"] = anonymous_pull_enabled
        if policies is not None:
            changes["policies"] = orjson.dumps(dict(policies)).decode()
        if provisioning_state is not None:
            _check_name(provisioning_state, 16, "provisioning_state")
            changes["provisioning_state"] = provisioning_state
        key = name.lower()

        def op(conn: Connection) -> RegistryInfo:
            registry_id = self._registry_id(conn, name)
            if changes:
                conn.execute(
                    update(t.registries)
                    .where(_R.id == registry_id)
                    .values(**changes, updated_at=utcnow())
                )
            row = conn.execute(_REGISTRY_INFO_BY_KEY, {"key": key}).one()
            if changes:
                self._bump(conn)
            return _registry_info(row)

        return await self._write(op)

    async def delete_registry(self, name: str) -> bool:
        """Delete the registry and everything in it, in one transaction; False if absent.

        Through foreign keys: its repositories with their manifests, tags and blob
        links, its uploads, scope maps, tokens and token passwords. Role assignments
        at its scope or below go too, so a registry created later under the same
        name does not inherit them. Blob rows stay (storage-wide; GC collects them),
        as do blob bytes and upload bytes in the blob driver.
        """
        key = name.lower()
        scope = _registry_scope(key)

        def op(conn: Connection) -> bool:
            registry_id = conn.execute(_REGISTRY_ID_BY_KEY, {"key": key}).scalar()
            if registry_id is None:
                return False
            # Tokens first: their scope maps are RESTRICT-protected, and the
            # cascade would not promise to reach the tokens before the maps.
            conn.execute(delete(t.tokens).where(_T.registry_id == registry_id))
            conn.execute(
                delete(t.role_assignments).where(
                    or_(_A.scope == scope, _A.scope.startswith(scope + "/", autoescape=True))
                )
            )
            conn.execute(delete(t.registries).where(_R.id == registry_id))
            self._bump(conn)
            return True

        return await self._write(op)

    async def set_admin_passwords(
        self,
        name: str,
        password_hash: str | None,
        password2_hash: str | None,
        sealed: str | None,
    ) -> None:
        """Replace the admin user's two password hashes and the sealed passwords
        together (renewing one password passes the other's unchanged); NotFound if
        there is no such registry."""

        def op(conn: Connection) -> None:
            registry_id = self._registry_id(conn, name)
            conn.execute(
                update(t.registries)
                .where(_R.id == registry_id)
                .values(
                    admin_password_hash=password_hash,
                    admin_password2_hash=password2_hash,
                    admin_passwords_sealed=sealed,
                    updated_at=utcnow(),
                )
            )
            self._bump(conn)

        await self._write(op)

    async def get_admin_credentials(self, name: str) -> AdminCredentials | None:
        """The admin user's state and secrets for the registry (case-insensitive), or None."""
        rows = await self._fast(_ADMIN_BY_KEY, {"key": name.lower()})
        if not rows:
            return None
        row = rows[0]
        return AdminCredentials(row[0], row[1], bool(row[2]), row[3], row[4], row[5])

    # -- principals ----------------------------------------------------------------------------
    async def create_principal(
        self,
        kind: str,
        name: str,
        *,
        display_name: str | None = None,
        secret_hash: str | None = None,
        disabled: bool = False,
    ) -> Principal:
        """Create a user or service principal with a new UUID; AlreadyExists if a
        principal of that name exists in any letter case."""
        _check(kind, PRINCIPAL_KINDS, "kind")
        _check_name(name, 255, "a principal name")
        if display_name is not None:
            _check_name(display_name, 255, "a display name")
        now = utcnow()
        principal = Principal(
            str(uuid.uuid4()), kind, name, display_name, secret_hash, disabled, now, now
        )
        stmt = (
            self._insert(t.principals)
            .values(
                id=principal.id,
                kind=kind,
                name=name,
                name_key=name.lower(),
                display_name=display_name,
                secret_hash=secret_hash,
                disabled=disabled,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name_key"])
            .returning(_P.id)
        )

        def op(conn: Connection) -> Principal:
            if not _inserted(conn, stmt):
                raise AlreadyExists("principal", name)
            self._bump(conn)
            return principal

        return await self._write(op)

    async def get_principal(self, principal_id: str) -> Principal | None:
        """The principal with this id, or None."""
        rows = await self._fast(_PRINCIPAL_BY_ID, {"id": principal_id})
        return _principal(rows[0]) if rows else None

    async def get_principal_by_name(self, name: str) -> Principal | None:
        """The principal with this name in any letter case (a user's name, a service
        principal's appId), or None."""
        rows = await self._fast(_PRINCIPAL_BY_KEY, {"key": name.lower()})
        return _principal(rows[0]) if rows else None

    async def list_principals(self, kind: str | None = None) -> list[Principal]:
        """Principals (of one kind, if given) by name in byte order."""
        stmt = select(*_PRINCIPAL_COLS).order_by(_P.name, _P.id)
        if kind is not None:
            _check(kind, PRINCIPAL_KINDS, "kind")
            stmt = stmt.where(_P.kind == kind)

        def op(conn: Connection) -> list[Principal]:
            return [_principal(row) for row in conn.execute(stmt)]

        return await self._db.run_read(op)

    async def _update_principal(self, principal_id: str, **values: Any) -> Principal:
        def op(conn: Connection) -> Principal:
            result = conn.execute(
                update(t.principals)
                .where(_P.id == principal_id)
                .values(**values, updated_at=utcnow())
            )
            if not result.rowcount:
                raise NotFound("principal", principal_id)
            row = conn.execute(_PRINCIPAL_BY_ID, {"id": principal_id}).one()
            self._bump(conn)
            return _principal(row)

        return await self._write(op)

    async def set_principal_secret(self, principal_id: str, secret_hash: str | None) -> Principal:
        """Replace the principal's secret hash (None: no password sign-in); NotFound if absent."""
        return await self._update_principal(principal_id, secret_hash=secret_hash)

    async def set_principal_disabled(self, principal_id: str, disabled: bool) -> Principal:
        """Disable or re-enable the principal; NotFound if absent."""
        return await self._update_principal(principal_id, disabled=disabled)

    async def delete_principal(self, principal_id: str) -> bool:
        """Delete the principal and (by cascade) its role assignments; False if absent."""

        def op(conn: Connection) -> bool:
            result = conn.execute(delete(t.principals).where(_P.id == principal_id))
            if not result.rowcount:
                return False
            self._bump(conn)
            return True

        return await self._write(op)

    # -- role assignments ----------------------------------------------------------------------
    async def create_role_assignment(
        self, principal_id: str, role: str, scope: str
    ) -> RoleAssignmentRecord:
        """Grant ``role`` to the principal at ``scope`` (see :func:`canonical_scope`).

        Idempotent: if the principal already holds the role at the scope, the
        existing assignment (same id) is returned and nothing changes, so a
        retried command succeeds. NotFound if there is no such principal. The role
        name is stored as given: the auth layer owns the list of roles.
        """
        _check_name(role, 64, "a role name")
        scope = canonical_scope(scope)
        key = {"pid": principal_id, "role": role, "scope": scope}
        stmt = (
            self._insert(t.role_assignments)
            .values(
                id=str(uuid.uuid4()),
                principal_id=principal_id,
                role=role,
                scope=scope,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["principal_id", "role", "scope"])
            .returning(_A.id)
        )

        def op(conn: Connection) -> RoleAssignmentRecord:
            if conn.execute(_PRINCIPAL_BY_ID, {"id": principal_id}).first() is None:
                raise NotFound("principal", principal_id)
            with _gone_means_not_found("principal", principal_id):
                created = _inserted(conn, stmt)
            row = conn.execute(_ASSIGNMENT_BY_KEY, key).one()
            if created:
                self._bump(conn)
            return _assignment(row)

        return await self._write(op)

    async def assignments_for(self, principal_id: str) -> list[RoleAssignmentRecord]:
        """Every role assignment of the principal, by scope then role (per request)."""
        rows = await self._fast(_ASSIGNMENTS_FOR, {"pid": principal_id})
        return [_assignment(row) for row in rows]

    async def list_role_assignments(
        self,
        *,
        principal_id: str | None = None,
        scope: str | None = None,
        role: str | None = None,
    ) -> list[RoleAssignmentRecord]:
        """Role assignments, by scope, role and principal name; filtered to one
        principal, to one role, and to ``scope`` and everything beneath it
        (``/registries/r`` takes ``/registries/r/repositories/x`` but not
        ``/registries/r2``; ``/`` takes all)."""
        stmt = _ASSIGNMENTS
        if principal_id is not None:
            stmt = stmt.where(_A.principal_id == principal_id)
        if role is not None:
            stmt = stmt.where(_A.role == role)
        if scope is not None:
            scope = canonical_scope(scope)
            if scope != "/":
                stmt = stmt.where(
                    or_(_A.scope == scope, _A.scope.startswith(scope + "/", autoescape=True))
                )

        def op(conn: Connection) -> list[RoleAssignmentRecord]:
            return [_assignment(row) for row in conn.execute(stmt)]

        return await self._db.run_read(op)

    async def delete_role_assignment(self, assignment_id: str) -> bool:
        """Delete one role assignment by id; False if absent."""

        def op(conn: Connection) -> bool:
            result = conn.execute(delete(t.role_assignments).where(_A.id == assignment_id))
            if not result.rowcount:
                return False
            self._bump(conn)
            return True

        return await self._write(op)

    # -- scope maps ----------------------------------------------------------------------------
    async def create_scope_map(
        self,
        registry: str,
        name: str,
        actions: Iterable[str],
        description: str | None = None,
    ) -> ScopeMap:
        """Create a scope map in the registry; AlreadyExists if the registry has one of
        that name in any letter case, NotFound if there is no such registry.

        Actions are stored as given, in order; their grammar is the auth layer's.
        """
        _check_name(name, 64, "a scope map name")
        actions_json = _actions_json(actions)
        now = utcnow()
        scope_map_id = str(uuid.uuid4())

        def op(conn: Connection) -> ScopeMap:
            registry_id = self._registry_id(conn, registry)
            stmt = (
                self._insert(t.scope_maps)
                .values(
                    id=scope_map_id,
                    registry_id=registry_id,
                    name=name,
                    name_key=name.lower(),
                    description=description,
                    actions=actions_json,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["registry_id", "name_key"])
                .returning(_S.id)
            )
            with _gone_means_not_found("registry", registry):
                created = _inserted(conn, stmt)
            if not created:
                raise AlreadyExists("scope map", name)
            self._bump(conn)
            return ScopeMap(
                scope_map_id, registry_id, name, description, _actions(actions_json), now, now
            )

        return await self._write(op)

    async def get_scope_map(self, registry: str, name: str) -> ScopeMap | None:
        """The registry's scope map of that name (any letter case), or None."""

        def op(conn: Connection) -> ScopeMap | None:
            row = conn.execute(
                select(*_SCOPE_MAP_COLS)
                .select_from(t.scope_maps.join(t.registries, _R.id == _S.registry_id))
                .where(_R.name_key == registry.lower(), _S.name_key == name.lower())
            ).first()
            return _scope_map(row) if row else None

        return await self._db.run_read(op)

    async def list_scope_maps(self, registry: str) -> list[ScopeMap]:
        """The registry's scope maps by name in byte order; NotFound if no such registry."""

        def op(conn: Connection) -> list[ScopeMap]:
            registry_id = self._registry_id(conn, registry)
            return [_scope_map(row) for row in conn.execute(_SCOPE_MAPS_OF, {"rid": registry_id})]

        return await self._db.run_read(op)

    async def update_scope_map(
        self,
        registry: str,
        name: str,
        *,
        actions: Iterable[str] | None = None,
        description: str | None = None,
    ) -> ScopeMap:
        """Replace the scope map's actions and/or description (None leaves one as it
        is); NotFound if there is no such registry or scope map."""
        changes: dict[str, Any] = {}
        if actions is not None:
            changes["actions"] = _actions_json(actions)
        if description is not None:
            changes["description"] = description

        def op(conn: Connection) -> ScopeMap:
            registry_id = self._registry_id(conn, registry)
            row = self._scope_map_row(conn, registry_id, name)
            if not changes:
                return _scope_map(row)
            conn.execute(
                update(t.scope_maps).where(_S.id == row[0]).values(**changes, updated_at=utcnow())
            )
            row = self._scope_map_row(conn, registry_id, name)
            self._bump(conn)
            return _scope_map(row)

        return await self._write(op)

    async def delete_scope_map(self, registry: str, name: str) -> bool:
        """Delete the scope map; False if absent, InUse while a token uses it."""

        def op(conn: Connection) -> bool:
            registry_id = conn.execute(_REGISTRY_ID_BY_KEY, {"key": registry.lower()}).scalar()
            if registry_id is None:
                return False
            scope_map_id = conn.execute(
                select(_S.id).where(_S.registry_id == registry_id, _S.name_key == name.lower())
            ).scalar()
            if scope_map_id is None:
                return False
            users = list(
                conn.execute(
                    select(_T.name).where(_T.scope_map_id == scope_map_id).order_by(_T.name)
                ).scalars()
            )
            if users:
                raise InUse("scope map", name, users)
            try:
                conn.execute(delete(t.scope_maps).where(_S.id == scope_map_id))
            except IntegrityError as exc:  # a token committed since the check above
                raise InUse("scope map", name, ()) from exc
            self._bump(conn)
            return True

        return await self._write(op)

    # -- tokens --------------------------------------------------------------------------------
    async def create_token(
        self, registry: str, name: str, scope_map: str, status: str = "enabled"
    ) -> Token:
        """Create a token in the registry using the registry's scope map named
        ``scope_map``; it has no passwords yet (see :meth:`set_token_password`).

        AlreadyExists if the registry has a token of that name in any letter case;
        NotFound if there is no such registry or scope map.
        """
        _check_name(name, 64, "a token name")
        _check(status, TOKEN_STATUSES, "status")
        now = utcnow()
        token_id = str(uuid.uuid4())

        def op(conn: Connection) -> Token:
            registry_id = self._registry_id(conn, registry)
            scope_map_row = self._scope_map_row(conn, registry_id, scope_map)
            stmt = (
                self._insert(t.tokens)
                .values(
                    id=token_id,
                    registry_id=registry_id,
                    name=name,
                    name_key=name.lower(),
                    scope_map_id=scope_map_row[0],
                    status=status,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["registry_id", "name_key"])
                .returning(_T.id)
            )
            with _gone_means_not_found("scope map", scope_map):
                created = _inserted(conn, stmt)
            if not created:
                raise AlreadyExists("token", name)
            self._bump(conn)
            return Token(
                token_id,
                registry_id,
                name,
                scope_map_row[0],
                scope_map_row[2],
                _actions(scope_map_row[4]),
                status,
                now,
                now,
                (),
            )

        return await self._write(op)

    async def get_token(self, registry: str, name: str) -> Token | None:
        """The registry's token of that name (any letter case) with its scope map's
        actions and its passwords, in one statement (per request); or None."""
        rows = await self._fast(_TOKEN_BY_NAME, {"reg": registry.lower(), "key": name.lower()})
        return _tokens(rows)[0] if rows else None

    async def tokens_named(self, name: str) -> list[Token]:
        """Every registry's token of that name (any letter case): what a Basic
        ``<token>:<password>`` may be, before the registry is known."""
        return _tokens(await self._fast(_TOKENS_NAMED, {"key": name.lower()}))

    async def get_token_by_id(self, token_id: str) -> Token | None:
        """The token with this id (a bearer token's subject), or None."""
        rows = await self._fast(_TOKEN_BY_ID, {"id": token_id})
        return _tokens(rows)[0] if rows else None

    async def registry_name(self, registry_id: int) -> str | None:
        """The name of the registry with this id, or None."""
        rows = await self._fast(_REGISTRY_NAME_BY_ID, {"id": registry_id})
        return str(rows[0][0]) if rows else None

    async def list_tokens(self, registry: str) -> list[Token]:
        """The registry's tokens by name in byte order; NotFound if no such registry."""

        def op(conn: Connection) -> list[Token]:
            registry_id = self._registry_id(conn, registry)
            return _tokens(conn.execute(_TOKENS_OF, {"rid": registry_id}))

        return await self._db.run_read(op)

    async def update_token(
        self,
        registry: str,
        name: str,
        *,
        status: str | None = None,
        scope_map: str | None = None,
    ) -> Token:
        """Change the token's status and/or scope map (by name; None leaves one as it
        is); NotFound if there is no such registry, token or scope map."""
        if status is not None:
            _check(status, TOKEN_STATUSES, "status")

        def op(conn: Connection) -> Token:
            registry_id = self._registry_id(conn, registry)
            token_id = self._token_id(conn, registry_id, name)
            changes: dict[str, Any] = {}
            if status is not None:
                changes["status"] = status
            if scope_map is not None:
                changes["scope_map_id"] = self._scope_map_row(conn, registry_id, scope_map)[0]
            if changes:
                with _gone_means_not_found("scope map", scope_map or ""):
                    conn.execute(
                        update(t.tokens)
                        .where(_T.id == token_id)
                        .values(**changes, updated_at=utcnow())
                    )
            token = self._token(conn, registry_id, name)
            if changes:
                self._bump(conn)
            return token

        return await self._write(op)

    async def delete_token(self, registry: str, name: str) -> bool:
        """Delete the token and its passwords; False if absent."""

        def op(conn: Connection) -> bool:
            registry_id = conn.execute(_REGISTRY_ID_BY_KEY, {"key": registry.lower()}).scalar()
            if registry_id is None:
                return False
            result = conn.execute(
                delete(t.tokens).where(_T.registry_id == registry_id, _T.name_key == name.lower())
            )
            if not result.rowcount:
                return False
            self._bump(conn)
            return True

        return await self._write(op)

    async def set_token_password(
        self,
        registry: str,
        token: str,
        password_name: str,
        secret_hash: str,
        expiry: datetime | None = None,
    ) -> TokenPassword:
        """Set (create or replace) the token's ``password1`` or ``password2``;
        NotFound if there is no such registry or token."""
        _check(password_name, TOKEN_PASSWORD_NAMES, "password name")
        expires = _utc(expiry, "expiry") if expiry is not None else None
        now = utcnow()

        def op(conn: Connection) -> TokenPassword:
            registry_id = self._registry_id(conn, registry)
            token_id = self._token_id(conn, registry_id, token)
            stmt = self._insert(t.token_passwords).values(
                token_id=token_id,
                name=password_name,
                secret_hash=secret_hash,
                created_at=now,
                expiry=expires,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["token_id", "name"],
                set_={"secret_hash": secret_hash, "created_at": now, "expiry": expires},
            )
            with _gone_means_not_found("token", token):
                conn.execute(stmt)
            conn.execute(update(t.tokens).where(_T.id == token_id).values(updated_at=now))
            self._bump(conn)
            return TokenPassword(password_name, secret_hash, now, expires)

        return await self._write(op)

    async def delete_token_password(self, registry: str, token: str, password_name: str) -> bool:
        """Delete one of the token's passwords; False if it (or the token) is absent."""

        def op(conn: Connection) -> bool:
            registry_id = conn.execute(_REGISTRY_ID_BY_KEY, {"key": registry.lower()}).scalar()
            if registry_id is None:
                return False
            token_id = conn.execute(_TOKEN_ID, {"rid": registry_id, "key": token.lower()}).scalar()
            if token_id is None:
                return False
            result = conn.execute(
                delete(t.token_passwords).where(_TP.token_id == token_id, _TP.name == password_name)
            )
            if not result.rowcount:
                return False
            conn.execute(update(t.tokens).where(_T.id == token_id).values(updated_at=utcnow()))
            self._bump(conn)
            return True

        return await self._write(op)

    async def list_token_passwords(self, registry: str, token: str) -> list[TokenPassword]:
        """The token's passwords by name; NotFound if there is no such registry or token."""
        found = await self.get_token(registry, token)
        if found is None:
            raise NotFound("token", token)
        return list(found.passwords)

    # -- signing keys --------------------------------------------------------------------------
    async def add_signing_key(
        self,
        kid: str,
        algorithm: str,
        private_key: str,
        public_key: str,
        *,
        signs_until: datetime,
        verifies_until: datetime,
        created_at: datetime | None = None,
    ) -> SigningKeyRecord:
        """Add a token signing key; AlreadyExists if ``kid`` is taken.

        ``verifies_until`` must not come before ``signs_until``: a token signed at
        the last moment must still verify for its lifetime.
        """
        _check_name(kid, 64, "a key id")
        _check_name(algorithm, 16, "an algorithm")
        signs = _utc(signs_until, "signs_until")
        verifies = _utc(verifies_until, "verifies_until")
        if verifies < signs:
            raise ValueError("verifies_until must not be before signs_until")
        now = _utc(created_at, "created_at") if created_at else utcnow()
        key = SigningKeyRecord(kid, algorithm, private_key, public_key, now, signs, verifies)
        stmt = (
            self._insert(t.signing_keys)
            .values(
                kid=kid,
                algorithm=algorithm,
                private_key=private_key,
                public_key=public_key,
                created_at=now,
                signs_until=signs,
                verifies_until=verifies,
            )
            .on_conflict_do_nothing(index_elements=["kid"])
            .returning(_K.kid)
        )

        def op(conn: Connection) -> SigningKeyRecord:
            if not _inserted(conn, stmt):
                raise AlreadyExists("signing key", kid)
            self._bump(conn)
            return key

        return await self._write(op)

    async def get_signing_key(self, kid: str) -> SigningKeyRecord | None:
        """The key with this id (a token's ``kid``), whatever its state, or None."""
        rows = await self._fast(_SIGNING_KEY_BY_KID, {"kid": kid})
        return _signing_key(rows[0]) if rows else None

    async def _signing_keys(self, condition: Any) -> list[SigningKeyRecord]:
        stmt = select(*_SIGNING_KEY_COLS).where(condition).order_by(_K.created_at.desc(), _K.kid)

        def op(conn: Connection) -> list[SigningKeyRecord]:
            return [_signing_key(row) for row in conn.execute(stmt)]

        return await self._db.run_read(op)

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        """Every stored key, newest first."""
        return await self._signing_keys(_K.kid.is_not(None))

    async def active_signing_keys(self, now: datetime | None = None) -> list[SigningKeyRecord]:
        """Keys that may sign new tokens (``signs_until`` after ``now``), newest first."""
        at = _utc(now, "now") if now else utcnow()
        return await self._signing_keys(_K.signs_until > at)

    async def verifiable_signing_keys(self, now: datetime | None = None) -> list[SigningKeyRecord]:
        """Keys whose tokens are still accepted (``verifies_until`` after ``now``),
        newest first."""
        at = _utc(now, "now") if now else utcnow()
        return await self._signing_keys(_K.verifies_until > at)

    async def retire_signing_key(self, kid: str, at: datetime | None = None) -> SigningKeyRecord:
        """Stop signing with the key from ``at`` (default now); tokens it signed still
        verify until its ``verifies_until``. NotFound if absent."""
        when = _utc(at, "at") if at else utcnow()

        def op(conn: Connection) -> SigningKeyRecord:
            row = conn.execute(_SIGNING_KEY_BY_KID, {"kid": kid}).first()
            if row is None:
                raise NotFound("signing key", kid)
            key = _signing_key(row)
            if key.signs_until <= when:
                return key
            conn.execute(update(t.signing_keys).where(_K.kid == kid).values(signs_until=when))
            self._bump(conn)
            return _signing_key(conn.execute(_SIGNING_KEY_BY_KID, {"kid": kid}).one())

        return await self._write(op)

    async def delete_expired_signing_keys(self, now: datetime | None = None) -> int:
        """Delete keys that verify nothing any more (``verifies_until`` not after
        ``now``); how many went."""
        at = _utc(now, "now") if now else utcnow()

        def op(conn: Connection) -> int:
            result = conn.execute(delete(t.signing_keys).where(_K.verifies_until <= at))
            if result.rowcount:
                self._bump(conn)
            return int(result.rowcount)

        return await self._write(op)


__all__ = [
    "PRINCIPAL_KINDS",
    "SKUS",
    "TOKEN_PASSWORD_NAMES",
    "TOKEN_STATUSES",
    "AdminCredentials",
    "AlreadyExists",
    "IdentityStore",
    "IdentityStoreError",
    "InUse",
    "NotFound",
    "Principal",
    "RegistryInfo",
    "RoleAssignmentRecord",
    "ScopeMap",
    "SigningKeyRecord",
    "Token",
    "TokenPassword",
    "canonical_scope",
]
