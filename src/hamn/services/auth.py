"""Authentication and grants: credentials become an :class:`Identity`, an identity holds actions.

The one place that turns what a request carries into who it is and what it may do:

* **Basic credentials** (:meth:`AuthService.authenticate_basic`) are, in order, a
  refresh token under the null GUID, a user or service principal, a registry's admin
  user, or a repository-scoped token. Every candidate is checked with argon2id (about
  30 ms on purpose), so a successful check is cached per process, keyed on a hash of
  the credentials and on the authorisation version: one cheap read per request, and
  any change to identities, roles or registries invalidates every cached answer at once.
* **Bearer tokens** (:meth:`AuthService.verify_access_token`) are verified against the
  signing keys; their subject becomes the identity as it stands *now*, so a revoked
  role, a deleted principal or a disabled token counts on the very next request, even
  for tokens issued before (SPEC §2).
* **Grants** (:meth:`AuthService.actions`) come from :mod:`hamn.auth.policy`, never
  from here: this module only gathers the inputs (assignments, admin user, scope map,
  anonymous pull) for the registry the request is routed to.

Keys. The server key (32 bytes, from settings or a 0600 file in the data directory)
seals the admin passwords and the token signing keys at rest. Signing keys are
Ed25519, kept in the database so every process verifies every other's tokens; a new
one is made when the current one nears the end of its signing period, and old ones
keep verifying for the longest token lifetime.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hamn.auth import secrets as auth_secrets
from hamn.auth import tokens
from hamn.auth.policy import (
    Action,
    RoleAssignment,
    admin_actions,
    anonymous_actions,
    granted_actions,
    scope_map_actions,
)
from hamn.auth.scopes import Scope
from hamn.metadata.identities import (
    AlreadyExists,
    IdentityStore,
    Principal,
    RegistryInfo,
    Token,
)
from hamn.services.identity import ANONYMOUS, Identity, IdentityKind

log = logging.getLogger("hamn.auth")

#: The username under which a refresh token is presented as a password (ACR, docker).
NULL_GUID = "00000000-0000-0000-0000-000000000000"
#: The ``iss`` of every token hamn signs.
ISSUER = "hamn"
#: How long one signing key signs; it verifies for the longest token lifetime after.
SIGNING_PERIOD = timedelta(days=30)
#: A new signing key is made when the current one has less than this left to sign.
ROTATE_BEFORE = timedelta(days=2)
#: How often a process re-reads the signing keys (a key made elsewhere is picked up).
KEYRING_REFRESH_SECONDS = 60.0
#: Passwords of the bootstrap owner must be at least this long.
MIN_PASSWORD_LENGTH = 12
#: Cached credential checks per process.
_CACHE_ENTRIES = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def load_server_key(configured: str, data_dir: Path) -> bytes:
    """The server key: ``configured`` (base64 of 32 bytes) or ``<data_dir>/server.key``.

    The file is created on first use with mode 0600 (``O_EXCL``, so concurrent
    starts agree on one key). Raises :class:`ValueError` for a key that is not
    32 bytes of base64.
    """
    if configured:
        return _decode_key(configured, "HAMN_SECRET_KEY")
    path = data_dir / "server.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _decode_key(path.read_text().strip(), str(path))
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(auth_secrets.new_key()).decode("ascii") + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return _decode_key(path.read_text().strip(), str(path))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{where}: the server key must be 32 bytes in base64")
    return key


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed token and what the token response says about it."""

    token: str
    expires_in: int
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class _Verified:
    """A credential check that passed, and until when it counts (a token password's expiry)."""

    identity: Identity
    until: datetime | None = None


class _VersionedCache:
    """A bounded LRU map that forgets everything when the authorisation version moves."""

    def __init__(self, entries: int = _CACHE_ENTRIES) -> None:
        self._entries = entries
        self._version = -1
        self._data: OrderedDict[object, object] = OrderedDict()

    def get(self, version: int, key: object) -> object | None:
        if version != self._version:
            self._data.clear()
            self._version = version
            return None
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, version: int, key: object, value: object) -> None:
        if version != self._version:
            self._data.clear()
            self._version = version
        self._data[key] = value
        if len(self._data) > self._entries:
            self._data.popitem(last=False)


class AuthService:
    """Identities from credentials, actions from identities, and token issue/verify."""

    def __init__(
        self,
        identities: IdentityStore,
        *,
        server_key: bytes,
        refresh_lifetime: timedelta = timedelta(hours=24),
        access_lifetime: timedelta = tokens.ACCESS_TOKEN_LIFETIME,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.identities = identities
        self.server_key = server_key
        self.refresh_lifetime = refresh_lifetime
        self.access_lifetime = access_lifetime
        self._clock = clock
        self._cache = _VersionedCache()
        self._verified: OrderedDict[tuple[str, tokens.GrantType, str | None], tokens.TokenClaims]
        self._verified = OrderedDict()
        self._keyring: tokens.KeyRing | None = None
        self._keyring_loaded: datetime | None = None
        self._keyring_lock = asyncio.Lock()

    # -- set-up --------------------------------------------------------------------------
    async def bootstrap_owner(self, username: str, password: str | None) -> str | None:
        """Create the first owner (Owner at ``/``) when no principal exists yet.

        ``password`` comes from the environment for automation; without it one is
        generated and returned, for the start-up banner to show once. Returns None
        when nothing was created (principals exist, or another process won the race).
        """
        if await self.identities.list_principals():
            return None
        if password is not None and len(password) < MIN_PASSWORD_LENGTH:
            raise ValueError(
                f"the bootstrap password must be at least {MIN_PASSWORD_LENGTH} characters"
            )
        chosen = password or auth_secrets.new_secret()
        digest = await asyncio.to_thread(auth_secrets.hash_secret, chosen)
        try:
            principal = await self.identities.create_principal(
                "user", username, display_name="bootstrap owner", secret_hash=digest
            )
        except AlreadyExists:
            return None
        await self.identities.create_role_assignment(principal.id, "Owner", "/")
        log.info("created the bootstrap owner %r (Owner at /)", username)
        return None if password else chosen

    async def ensure_signing_key(self) -> None:
        """Make a signing key when none signs now or the current one is about to stop."""
        now = self._clock()
        active = await self.identities.active_signing_keys(now)
        if any(k.signs_until - now > ROTATE_BEFORE for k in active):
            return
        key = tokens.new_signing_key()
        sealed = auth_secrets.seal(key.to_pem().decode("ascii"), self.server_key, key.kid.encode())
        signs_until = now + SIGNING_PERIOD
        await self.identities.add_signing_key(
            key.kid,
            tokens.ALGORITHM,
            sealed,
            key.verification_key().to_pem().decode("ascii"),
            signs_until=signs_until,
            verifies_until=signs_until + self._longest_lifetime(),
        )
        log.info("made a new token signing key %s", key.kid)

    async def check_server_key(self) -> None:
        """Refuse to serve with a server key other than the one this database's secrets
        were sealed with (a second server started without the first one's
        ``HAMN_SECRET_KEY``): it could not sign tokens nor read the sealed admin
        passwords, and would fail request by request instead of once, here."""
        try:
            await self.keyring(refresh=True)
        except auth_secrets.SealError:
            raise ValueError(
                "this database's secrets were sealed with another server key: every server "
                "on one database needs the same key; set HAMN_SECRET_KEY (or secret_key) "
                "to the base64 key of the first server (its <data dir>/server.key)"
            ) from None

    def _longest_lifetime(self) -> timedelta:
        return max(self.refresh_lifetime, self.access_lifetime) + tokens.LEEWAY

    async def keyring(self, *, refresh: bool = False) -> tokens.KeyRing:
        """The signing keys, re-read every minute, or at once with ``refresh`` (an unknown
        ``kid``: another process made a key), at most once a second."""
        now = self._clock()
        age = (now - self._keyring_loaded).total_seconds() if self._keyring_loaded else None
        limit = 1.0 if refresh else KEYRING_REFRESH_SECONDS
        if self._keyring is not None and age is not None and age < limit:
            return self._keyring
        async with self._keyring_lock:
            if not await self.identities.active_signing_keys(now):
                await self.ensure_signing_key()
            records = await self.identities.verifiable_signing_keys(now)
            current = max((r for r in records if r.signs_until > now), key=lambda r: r.created_at)
            if current.signs_until - now <= ROTATE_BEFORE:
                await self.ensure_signing_key()
                records = await self.identities.verifiable_signing_keys(now)
                current = max(records, key=lambda r: r.created_at)
            pem = auth_secrets.unseal(current.private_key, self.server_key, current.kid.encode())
            previous = tuple(
                tokens.VerificationKey.from_pem(r.public_key, r.verifies_until)
                for r in records
                if r.kid != current.kid
            )
            self._keyring = tokens.KeyRing(tokens.SigningKey.from_pem(pem), previous)
            self._keyring_loaded = now
            return self._keyring

    # -- identities ----------------------------------------------------------------------
    async def version(self) -> int:
        """The authorisation version (one cheap read)."""
        return await self.identities.authz_version()

    async def authenticate_basic(
        self, username: str, password: str, version: int
    ) -> Identity | None:
        """The identity these Basic credentials prove, or None.

        Tried in order: a refresh token (username :data:`NULL_GUID`), a user or
        service principal, the admin user of a registry of that name, a repository
        token of that name. Unknown names still cost one argon2 check, so response
        times do not tell which names exist.
        """
        if not username or not password or len(username) > 255 or len(password) > 16384:
            return None
        if "\x00" in username:  # no name holds NUL (nor can PostgreSQL text)
            return None
        if username == NULL_GUID:
            return await self._refresh_identity(password, version)
        key = ("basic", hashlib.sha256(f"{username}\0{password}".encode()).digest())
        cached = self._cache.get(version, key)
        if isinstance(cached, _Verified) and (cached.until is None or self._clock() < cached.until):
            return cached.identity
        checked = await self._check_password(username, password)
        if checked is None:
            return None
        identity = await self._complete(checked.identity)
        if identity is not None:
            self._cache.put(version, key, _Verified(identity, checked.until))
        return identity

    async def _check_password(self, username: str, password: str) -> _Verified | None:
        candidates: list[tuple[str, _Verified]] = []
        principal = await self.identities.get_principal_by_name(username)
        if principal is not None and principal.secret_hash and not principal.disabled:
            who = _Verified(self._principal_identity(principal))
            candidates.append((principal.secret_hash, who))
        admin = await self.identities.get_admin_credentials(username)
        if admin is not None and admin.enabled:
            subject = f"admin:{admin.registry.lower()}"
            who = _Verified(
                Identity(IdentityKind.ADMIN, subject, admin.registry, registry=admin.registry)
            )
            candidates += [(d, who) for d in (admin.password_hash, admin.password2_hash) if d]
        now = self._clock()
        for token in await self.identities.tokens_named(username):
            if token.status != "enabled":
                continue
            who_token = Identity(IdentityKind.TOKEN, f"token:{token.id}", token.name)
            for pw in token.passwords:
                if pw.expiry is None or pw.expiry > now:
                    candidates.append((pw.secret_hash, _Verified(who_token, pw.expiry)))
        if not candidates:
            await asyncio.to_thread(auth_secrets.verify_unknown, password)
            return None
        for digest, verified in candidates:
            if await asyncio.to_thread(auth_secrets.verify_secret, digest, password):
                return verified
        return None

    @staticmethod
    def _principal_identity(principal: Principal) -> Identity:
        return Identity(
            IdentityKind.PRINCIPAL, principal.id, principal.name, principal_kind=principal.kind
        )

    async def _complete(self, identity: Identity) -> Identity | None:
        """Fill in what the identity holds now (assignments, token scope map), or None if gone."""
        match identity.kind:
            case IdentityKind.PRINCIPAL:
                records = await self.identities.assignments_for(identity.subject)
                assignments = tuple(RoleAssignment.parse(r.role, r.scope) for r in records)
                return Identity(
                    identity.kind,
                    identity.subject,
                    identity.name,
                    principal_kind=identity.principal_kind,
                    assignments=assignments,
                )
            case IdentityKind.TOKEN:
                token = await self.identities.get_token_by_id(
                    identity.subject.removeprefix("token:")
                )
                if token is None or token.status != "enabled":
                    return None
                return await self._token_identity(token)
            case _:
                return identity

    async def _token_identity(self, token: Token) -> Identity | None:
        registry = await self.identities.registry_name(token.registry_id)
        if registry is None:
            return None
        return Identity(
            IdentityKind.TOKEN,
            f"token:{token.id}",
            token.name,
            registry=registry,
            scope_map=token.actions,
        )

    async def identity_for_subject(
        self, subject: str, version: int, *, secret_unchanged_since: datetime | None = None
    ) -> Identity | None:
        """The identity a token's ``sub`` names, as it stands now; None if it is gone.

        ``secret_unchanged_since`` (a refresh token's issue time) refuses a principal
        whose secret or state changed after it, so changing a password revokes the
        refresh tokens handed out before.
        """
        key = ("sub", subject)
        cached = self._cache.get(version, key)
        if isinstance(cached, Identity):
            identity: Identity | None = cached
        else:
            identity = await self._load_subject(subject)
            if identity is not None:
                self._cache.put(version, key, identity)
        if identity is None or secret_unchanged_since is None:
            return identity
        if identity.kind is IdentityKind.PRINCIPAL:
            principal = await self.identities.get_principal(identity.subject)
            # Token times are whole seconds; a change in the second of issue still counts.
            limit = secret_unchanged_since + timedelta(seconds=1)
            if principal is None or principal.updated_at >= limit:
                return None
        return identity

    async def _load_subject(self, subject: str) -> Identity | None:
        if subject == ANONYMOUS.subject:
            return ANONYMOUS
        if subject.startswith("admin:"):
            admin = await self.identities.get_admin_credentials(subject.removeprefix("admin:"))
            if admin is None or not admin.enabled:
                return None
            return Identity(IdentityKind.ADMIN, subject, admin.registry, registry=admin.registry)
        if subject.startswith("token:"):
            return await self._complete(Identity(IdentityKind.TOKEN, subject, ""))
        principal = await self.identities.get_principal(subject)
        if principal is None or principal.disabled:
            return None
        return await self._complete(self._principal_identity(principal))

    async def _refresh_identity(self, token: str, version: int) -> Identity | None:
        try:
            claims = await self.verify(token, tokens.GrantType.REFRESH, audience=None)
        except tokens.TokenError as exc:
            log.info("refresh token refused: %s", exc.reason)
            return None
        return await self.identity_for_subject(
            claims.subject, version, secret_unchanged_since=claims.issued_at
        )

    # -- tokens --------------------------------------------------------------------------
    async def verify(
        self, token: str, grant_type: tokens.GrantType, *, audience: str | None
    ) -> tokens.TokenClaims:
        """Verify a token; ``audience=None`` accepts any audience (refresh tokens prove
        an identity wherever they are shown; what it may do is decided per request).
        Raises :class:`hamn.auth.tokens.TokenError`.

        A verified token's claims are kept (bounded, until the token expires), so a
        client sending the same bearer token on every request pays for the
        signature check once: the claims of a signed token cannot change.
        """
        now = self._clock()
        key = (token, grant_type, audience)
        known = self._verified.get(key)
        if known is not None and known.expires_at > now - tokens.LEEWAY:
            self._verified.move_to_end(key)
            return known
        ring = await self.keyring()
        kid = _unverified_kid(token)
        if kid is not None and ring.verification_key(kid, now) is None:
            ring = await self.keyring(refresh=True)
        expected = audience if audience is not None else _unverified_audience(token)
        claims = tokens.verify(
            token, ring, audience=expected, issuer=ISSUER, grant_type=grant_type, now=now
        )
        self._verified[key] = claims
        if len(self._verified) > _CACHE_ENTRIES:
            self._verified.popitem(last=False)
        return claims

    async def issue(
        self,
        identity: Identity,
        grant_type: tokens.GrantType,
        *,
        audience: str,
        registry: str,
        version: int,
        access: Iterable[Scope] = (),
    ) -> IssuedToken:
        """Sign an access or refresh token for ``identity``."""
        now = self._clock()
        ring = await self.keyring()
        lifetime = (
            self.access_lifetime if grant_type is tokens.GrantType.ACCESS else self.refresh_lifetime
        )
        signed = tokens.issue(
            key=ring.current,
            issuer=ISSUER,
            audience=audience,
            subject=identity.subject,
            registry=registry,
            grant_type=grant_type,
            authz_version=version,
            now=now,
            lifetime=lifetime,
            access=access,
        )
        return IssuedToken(signed, int(lifetime.total_seconds()), now)

    # -- grants --------------------------------------------------------------------------
    async def registry_settings(self, name: str, version: int) -> RegistryInfo | None:
        """The registry's settings as of ``version`` (cached with it)."""
        key = ("registry", name.lower())
        cached = self._cache.get(version, key)
        if isinstance(cached, RegistryInfo):
            return cached
        info = await self.identities.get_registry_info(name)
        if info is not None:
            self._cache.put(version, key, info)
        return info

    @staticmethod
    def knows_registry(identity: Identity, registry: RegistryInfo) -> bool:
        """Whether ``identity`` holds anything at all in ``registry`` (a role at ``/``,
        at the registry or at one of its repositories; its admin user or one of its
        tokens). To anyone else the registry must look as if it did not exist."""
        name = registry.name.lower()
        if identity.kind is IdentityKind.PRINCIPAL:
            return any(
                a.scope.registry is None or a.scope.registry.lower() == name
                for a in identity.assignments
            )
        return (identity.registry or "").lower() == name

    @staticmethod
    def actions(
        identity: Identity, registry: RegistryInfo, repository: str | None
    ) -> frozenset[Action]:
        """What ``identity`` holds on ``repository`` (None: the registry) in ``registry``."""
        anonymous_pull = registry.anonymous_pull_enabled and registry.sku != "Basic"
        # Anonymous pull is pull of repositories only: never the catalog.
        held = anonymous_actions(anonymous_pull and repository is not None)
        match identity.kind:
            case IdentityKind.PRINCIPAL:
                return held | granted_actions(identity.assignments, registry.name, repository)
            case IdentityKind.ADMIN if registry.admin_user_enabled:
                return held | admin_actions(identity.registry or "", registry.name)
            case IdentityKind.TOKEN if (identity.registry or "").lower() == registry.name.lower():
                return held | scope_map_actions(identity.scope_map, repository)
            case _:
                return held


def _unverified_kid(token: str) -> str | None:
    try:
        header = tokens.unverified_header(token)
    except tokens.TokenError:
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def _unverified_audience(token: str) -> str:
    claims = tokens.unverified_claims(token)
    aud = claims.get("aud")
    return aud if isinstance(aud, str) and aud else "\0"
