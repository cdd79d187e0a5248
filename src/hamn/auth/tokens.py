"""Registry bearer tokens: signed JWTs in the shape of the Docker token spec and ACR.

Two kinds, told apart by the ``grant_type`` claim (as ACR does):

- **access tokens** (``access_token``) are what clients send on ``/v2/`` as
  ``Authorization: Bearer``. They are short-lived (5 minutes by default, at
  least 60 seconds as the Docker token spec requires) and carry ``access``:
  the scopes granted, ``[{"type", "name", "actions"}]``.
- **refresh tokens** (``refresh_token``) are what ``hamn login`` stores and
  what the token endpoint takes with ``grant_type=refresh_token``. They last
  3 hours by default (ACR's login tokens) and carry no ``access``.

Claims: ``iss`` (this server), ``aud`` (the service, i.e. the login server),
``sub`` (the principal id), ``iat``, ``nbf``, ``exp`` (integer seconds),
``jti`` (random), ``grant_type``, ``access`` (access tokens only), and hamn's
``registry`` (the registry the token was issued for, so one service name
fronting several registries cannot replay a token across them) and
``authz_version`` (the principal's authorisation version when issued; the data
plane still intersects with the principal's *current* roles on every request,
see :mod:`hamn.auth.policy`, and can use the version to notice staleness).

Signing: Ed25519 (JWS ``EdDSA``) only. Verification accepts exactly that
algorithm, through PyJWT's algorithm allow-list and a check of the header
before any key is chosen, so ``alg: none``, HMAC with the public key as the
secret, and any other algorithm are refused. Keys are named by their RFC 7638
JWK thumbprint (``kid``). A :class:`KeyRing` holds the current signing key and
older keys that still verify until their ``verifies_until``, so keys rotate
without logging anyone out: rotate with an overlap of at least the longest
token lifetime. Reading and writing keys (PEM) is here; where they are kept is
not.

Time is always passed in (``now``), never read from the clock, so issuing and
verifying are pure; PyJWT checks only the signature and hamn checks the claims
itself with a small leeway (30 s) for clock skew between servers.

Every rejection is one :class:`TokenError` (``UNAUTHORIZED``) with the same
message for the client; the precise :class:`TokenRejection` is in ``reason``,
for logs only, so a client cannot probe which check failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from hamn.auth.scopes import Scope, ScopeError
from hamn.errors import UNAUTHORIZED, HamnError

#: The only JWS algorithm hamn signs with and accepts.
ALGORITHM = "EdDSA"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=5)
#: The Docker token spec's minimum ``expires_in``.
MIN_ACCESS_TOKEN_LIFETIME = timedelta(seconds=60)
REFRESH_TOKEN_LIFETIME = timedelta(hours=3)
#: Allowed clock skew between the server that issued and the one that verifies.
LEEWAY = timedelta(seconds=30)
#: Longer strings are refused before parsing.
MAX_TOKEN_LENGTH = 16384

_CLIENT_MESSAGE = "the bearer token is invalid or has expired"


class GrantType(StrEnum):
    """The ``grant_type`` claim: what a token may be used for."""

    ACCESS = "access_token"
    REFRESH = "refresh_token"


class TokenRejection(StrEnum):
    """Why a token was refused (for logs; clients see one message)."""

    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    UNKNOWN_KEY = "unknown_key"
    SIGNATURE = "signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    AUDIENCE = "audience"
    ISSUER = "issuer"
    GRANT_TYPE = "grant_type"
    CLAIMS = "claims"


class TokenError(HamnError):
    """A token was refused (``UNAUTHORIZED``); ``reason`` says why, for logs only."""

    def __init__(self, reason: TokenRejection) -> None:
        super().__init__(UNAUTHORIZED, _CLIENT_MESSAGE)
        self.reason = reason


# -- keys --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # RFC 7638: the required members, lexicographic order, no whitespace.
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{_b64url(raw)}"}}'
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """A public key that verifies tokens, until ``verifies_until`` if set."""

    kid: str
    public_key: Ed25519PublicKey
    verifies_until: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        """Whether tokens signed with this key still verify at ``now``."""
        return self.verifies_until is None or now <= self.verifies_until

    def to_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, pem: bytes | str, verifies_until: datetime | None = None) -> VerificationKey:
        """Load an Ed25519 public key from PEM; raises :class:`ValueError` for anything else."""
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("token verification keys are Ed25519 keys")
        return cls(key_id(key), key, _aware(verifies_until) if verifies_until else None)


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    """An Ed25519 private key that signs tokens, named by its ``kid``."""

    kid: str
    private_key: Ed25519PrivateKey

    def verification_key(self, verifies_until: datetime | None = None) -> VerificationKey:
        """Its public half."""
        return VerificationKey(self.kid, self.private_key.public_key(), verifies_until)

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (protect it where it is stored)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SigningKey:
        """Load an Ed25519 private key from PEM; raises :class:`ValueError` for anything else."""
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("token signing keys are Ed25519 keys")
        return cls(key_id(key.public_key()), key)


def new_signing_key() -> SigningKey:
    """A fresh Ed25519 signing key."""
    key = Ed25519PrivateKey.generate()
    return SigningKey(key_id(key.public_key()), key)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The current signing key and older keys that still verify.

    The current key always verifies. ``previous`` keys verify until their
    ``verifies_until``; after that a token signed with one is refused as if
    its key were unknown.
    """

    current: SigningKey
    previous: tuple[VerificationKey, ...] = ()

    def verification_key(self, kid: str, now: datetime) -> VerificationKey | None:
        """The key named ``kid`` if it verifies at ``now``."""
        if kid == self.current.kid:
            return self.current.verification_key()
        for key in self.previous:
            if key.kid == kid and key.valid_at(now):
                return key
        return None

    def rotate(
        self,
        new_key: SigningKey,
        now: datetime,
        overlap: timedelta = REFRESH_TOKEN_LIFETIME + LEEWAY,
    ) -> KeyRing:
        """Sign with ``new_key`` from now on; the old key verifies for ``overlap`` more.

        ``overlap`` should be at least the longest lifetime of the tokens the
        old key signed, so none of them stops working early. Keys whose time
        is up are dropped.
        """
        retired = self.current.verification_key(_aware(now) + overlap)
        kept = tuple(k for k in self.previous if k.valid_at(now) and k.kid != new_key.kid)
        return KeyRing(new_key, (retired, *kept))

    def pruned(self, now: datetime) -> KeyRing:
        """The same ring without the previous keys that no longer verify at ``now``."""
        return replace(self, previous=tuple(k for k in self.previous if k.valid_at(now)))


# -- claims ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified content of a token."""

    issuer: str
    audience: str
    subject: str
    registry: str
    grant_type: GrantType
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    jti: str
    authz_version: int
    access: tuple[Scope, ...] = ()
    key_id: str = ""

    @property
    def lifetime(self) -> timedelta:
        """From issue to expiry (the token response's ``expires_in``)."""
        return self.expires_at - self.issued_at


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return now


def issue(
    *,
    key: SigningKey,
    issuer: str,
    audience: str,
    subject: str,
    registry: str,
    grant_type: GrantType,
    authz_version: int,
    now: datetime,
    lifetime: timedelta | None = None,
    access: Iterable[Scope] = (),
    jti: str | None = None,
) -> str:
    """Sign a token; ``lifetime`` defaults by ``grant_type`` (5 minutes or 3 hours).

    Raises :class:`ValueError` for an access token shorter-lived than 60
    seconds, a refresh token with ``access``, a naive ``now``, or an empty
    issuer, audience, subject or registry.
    """
    scopes = tuple(access)
    if lifetime is None:
        lifetime = (
            ACCESS_TOKEN_LIFETIME if grant_type is GrantType.ACCESS else REFRESH_TOKEN_LIFETIME
        )
    if grant_type is GrantType.ACCESS and lifetime < MIN_ACCESS_TOKEN_LIFETIME:
        raise ValueError("access tokens live at least 60 seconds (Docker token spec)")
    if lifetime <= timedelta(0):
        raise ValueError("a token's lifetime is positive")
    if grant_type is GrantType.REFRESH and scopes:
        raise ValueError("refresh tokens carry no access")
    if not (issuer and audience and subject and registry):
        raise ValueError("issuer, audience, subject and registry are required")
    iat = int(_aware(now).timestamp())
    payload: dict[str, object] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": iat + int(lifetime.total_seconds()),
        "nbf": iat,
        "iat": iat,
        "jti": jti or secrets.token_urlsafe(16),
        "grant_type": grant_type.value,
        "registry": registry,
        "authz_version": authz_version,
    }
    if grant_type is GrantType.ACCESS:
        payload["access"] = [s.to_claim() for s in scopes]
    return jwt.encode(
        payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
    )


def _int_claim(payload: Mapping[str, object], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(TokenRejection.CLAIMS)
    return value


def _str_claim(payload: Mapping[str, object], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise TokenError(TokenRejection.CLAIMS)
    return value


def _time(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise TokenError(TokenRejection.CLAIMS) from exc


def unverified_header(token: str) -> dict[str, object]:
    """A token's JOSE header, NOT verified (to pick the key); raises :class:`TokenError`."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenError(TokenRejection.MALFORMED)
    try:
        return dict(jwt.get_unverified_header(token))
    except jwt.PyJWTError as exc:
        raise TokenError(TokenRejection.MALFORMED) from exc


def unverified_claims(token: str) -> dict[str, object]:
    """A token's claims, NOT verified: only for choosing how to verify it. ``{}`` if unreadable."""
    try:
        unverified_header(token)
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    except (TokenError, ValueError, TypeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def verify(
    token: str,
    keyring: KeyRing,
    *,
    audience: str,
    issuer: str,
    grant_type: GrantType,
    now: datetime,
    registry: str | None = None,
    leeway: timedelta = LEEWAY,
) -> TokenClaims:
    """Check a token's signature and claims; return them, or raise :class:`TokenError`.

    Refused: anything not a compact JWS; an algorithm other than ``EdDSA``
    (``none``, HMAC...); an unknown ``kid`` or one past its ``verifies_until``;
    a bad signature; ``exp`` passed or ``nbf``/``iat`` in the future (beyond
    ``leeway``); ``aud`` other than ``audience``; ``iss`` other than ``issuer``;
    a ``registry`` claim other than ``registry`` when given (compared
    case-insensitively); another ``grant_type`` than the one this use expects;
    missing or mistyped claims, and ``access`` on a refresh token.
    """
    now = _aware(now)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenError(TokenRejection.MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError(TokenRejection.MALFORMED) from exc
    if header.get("alg") != ALGORITHM:
        raise TokenError(TokenRejection.ALGORITHM)
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenError(TokenRejection.UNKNOWN_KEY)
    key = keyring.verification_key(kid, now)
    if key is None:
        raise TokenError(TokenRejection.UNKNOWN_KEY)
    try:
        decoded = jwt.PyJWS().decode_complete(token, key.public_key, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError as exc:
        raise TokenError(TokenRejection.SIGNATURE) from exc
    except jwt.InvalidAlgorithmError as exc:
        raise TokenError(TokenRejection.ALGORITHM) from exc
    except jwt.PyJWTError as exc:
        raise TokenError(TokenRejection.MALFORMED) from exc
    try:
        payload = json.loads(decoded["payload"])
    except (ValueError, TypeError) as exc:
        raise TokenError(TokenRejection.MALFORMED) from exc
    if not isinstance(payload, dict):
        raise TokenError(TokenRejection.MALFORMED)
    return _check_claims(payload, kid, audience, issuer, grant_type, now, registry, leeway)


def _check_claims(
    payload: Mapping[str, object],
    kid: str,
    audience: str,
    issuer: str,
    grant_type: GrantType,
    now: datetime,
    registry: str | None,
    leeway: timedelta,
) -> TokenClaims:
    if payload.get("iss") != issuer:
        raise TokenError(TokenRejection.ISSUER)
    # One audience, a string, exactly ours (a list is never issued here).
    if payload.get("aud") != audience:
        raise TokenError(TokenRejection.AUDIENCE)
    token_registry = _str_claim(payload, "registry")
    if registry is not None and token_registry.lower() != registry.lower():
        raise TokenError(TokenRejection.AUDIENCE)
    if payload.get("grant_type") != grant_type.value:
        raise TokenError(TokenRejection.GRANT_TYPE)
    exp, nbf, iat = (_int_claim(payload, c) for c in ("exp", "nbf", "iat"))
    expires_at, not_before, issued_at = _time(exp), _time(nbf), _time(iat)
    if expires_at <= now - leeway:
        raise TokenError(TokenRejection.EXPIRED)
    if not_before > now + leeway or issued_at > now + leeway:
        raise TokenError(TokenRejection.NOT_YET_VALID)
    authz_version = _int_claim(payload, "authz_version")
    access: tuple[Scope, ...] = ()
    raw_access = payload.get("access")
    if grant_type is GrantType.ACCESS:
        if not isinstance(raw_access, list):
            raise TokenError(TokenRejection.CLAIMS)
        try:
            access = tuple(Scope.from_claim(entry) for entry in raw_access)
        except ScopeError as exc:
            raise TokenError(TokenRejection.CLAIMS) from exc
    elif raw_access is not None:
        raise TokenError(TokenRejection.CLAIMS)
    return TokenClaims(
        issuer=issuer,
        audience=audience,
        subject=_str_claim(payload, "sub"),
        registry=token_registry,
        grant_type=grant_type,
        issued_at=issued_at,
        not_before=not_before,
        expires_at=expires_at,
        jti=_str_claim(payload, "jti"),
        authz_version=authz_version,
        access=access,
        key_id=kid,
    )
