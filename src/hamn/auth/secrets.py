"""Secrets: making them, storing them as slow hashes, sealing the few shown again.

Passwords of every identity (users, service principals, the admin user,
repository-scoped tokens) are stored only as argon2id hashes (SPEC §4.1). The
one exception is the registry admin user: ``credential show`` must print its
two passwords again, as ACR does, so those are additionally *sealed* with
AES-256-GCM under a server key; the hash is still what authentication checks.

Hashing parameters (:data:`SERVER_HASH_PARAMETERS`). A registry verifies a
secret on every token request and, because Basic auth on ``/v2/`` is accepted
too, possibly on every data-plane request, many at a time. Memory is therefore
the cost that matters: we use OWASP's argon2id recommendation of 19 MiB
(19456 KiB), 2 passes and 1 lane, a 16-byte salt and a 32-byte hash. That is
roughly 20-40 ms of one core per verification and bounded memory under
concurrency, while still forcing an attacker with the hash table to pay 19 MiB
per guess. The parameters are encoded in every hash, so raising them later only
needs :func:`needs_rehash` at the next successful login. Tests pass cheaper
parameters explicitly; the defaults are never weakened.

Generated secrets come from :func:`secrets.token_urlsafe`: 39 random bytes give
52 URL-safe characters (312 bits), as long as the passwords ACR generates
today, and contain no character that needs quoting in a shell, a URL or a
docker ``config.json``.

Sealed values have the text form ``v1.<base64url(nonce || ciphertext || tag)>``
with a fresh 96-bit random nonce per seal. The caller passes *associated data*
naming what is sealed (for example ``b"admin-password:/registries/r:password2"``)
so a sealed value copied into another row or field does not unseal there. The
version prefix is authenticated too. Key storage is I/O and lives elsewhere;
this module only makes keys (:func:`new_key`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import secrets as _random
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Random bytes in a generated secret (52 URL-safe characters).
SECRET_BYTES = 39

#: Length in bytes of a sealing key (AES-256).
KEY_BYTES = 32

_SEAL_VERSION = "v1"
_NONCE_BYTES = 12
_ARGON2ID_PREFIX = "$argon2id$"
# A stored hash longer than this is not one of ours; refuse before parsing it.
_MAX_HASH_LENGTH = 512
# Secrets longer than this are refused outright (argon2 would hash any length,
# which lets a client make the server hash megabytes per request).
MAX_SECRET_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class HashParameters:
    """argon2id cost parameters; ``memory_cost`` is in KiB."""

    time_cost: int
    memory_cost: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16


#: What the server uses (OWASP's argon2id recommendation; see the module docstring).
SERVER_HASH_PARAMETERS = HashParameters(time_cost=2, memory_cost=19456, parallelism=1)


class SealError(ValueError):
    """A sealed value could not be opened: malformed, tampered with, or another key."""


@functools.cache
def _hasher(params: HashParameters) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=Type.ID,
    )


def new_secret() -> str:
    """A fresh random secret (password) of 52 URL-safe characters.

    It never starts with ``-``, which command lines (``-p -x...``) would read
    as an option.
    """
    while True:
        secret = _random.token_urlsafe(SECRET_BYTES)
        if not secret.startswith("-"):
            return secret


def hash_secret(secret: str, params: HashParameters = SERVER_HASH_PARAMETERS) -> str:
    """Hash ``secret`` with argon2id; the result encodes salt and parameters.

    Raises :class:`ValueError` for an empty secret or one longer than
    :data:`MAX_SECRET_LENGTH`: neither may ever become a credential.
    """
    if not secret:
        raise ValueError("an empty secret cannot be stored")
    if len(secret) > MAX_SECRET_LENGTH:
        raise ValueError(f"a secret is at most {MAX_SECRET_LENGTH} characters")
    return _hasher(params).hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches ``stored_hash``.

    Never raises: a wrong, empty or over-long secret, and a stored hash that is
    malformed or not argon2id, all give ``False``. The parameters are read
    from the stored hash itself.
    """
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return False
    if len(stored_hash) > _MAX_HASH_LENGTH or not stored_hash.startswith(_ARGON2ID_PREFIX):
        return False
    try:
        # Any parameters do for verifying; the hash carries its own.
        return _hasher(SERVER_HASH_PARAMETERS).verify(stored_hash, secret)
    except (VerificationError, InvalidHashError, ValueError):
        return False


def verify_unknown(secret: str, params: HashParameters = SERVER_HASH_PARAMETERS) -> bool:
    """Spend the time of one real verification and return ``False``.

    Call it when the identity does not exist (or has no password in that slot)
    so that an unknown user name takes as long to refuse as a wrong password,
    and response times do not tell which names exist.
    """
    verify_secret(_dummy_hash(params), secret or "x")
    return False


@functools.cache
def _dummy_hash(params: HashParameters) -> str:
    return hash_secret(new_secret(), params)


def needs_rehash(stored_hash: str, params: HashParameters = SERVER_HASH_PARAMETERS) -> bool:
    """Whether ``stored_hash`` was made with other parameters than ``params``.

    Call after a successful :func:`verify_secret` and store a fresh hash of the
    secret the client just proved it knows. A malformed hash also needs one.
    """
    if not stored_hash.startswith(_ARGON2ID_PREFIX):
        return True
    try:
        return _hasher(params).check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two strings in time that does not depend on where they differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def new_key() -> bytes:
    """A fresh 256-bit key for :func:`seal` / :func:`unseal`."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _aead(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a sealing key is {KEY_BYTES} bytes, not {len(key)}")
    return AESGCM(key)


def _associated(associated_data: bytes) -> bytes:
    # Authenticate the format version with the caller's context.
    return _SEAL_VERSION.encode("ascii") + b"\x00" + associated_data


def seal(plaintext: str, key: bytes, associated_data: bytes = b"") -> str:
    """Encrypt ``plaintext`` with AES-256-GCM; returns ``v1.<base64url>``.

    ``associated_data`` is not stored; the same bytes must be passed to
    :func:`unseal`. Use it to bind the sealed value to where it is kept.
    """
    nonce = _random.token_bytes(_NONCE_BYTES)
    sealed = _aead(key).encrypt(nonce, plaintext.encode("utf-8"), _associated(associated_data))
    body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
    return f"{_SEAL_VERSION}.{body}"


def unseal(token: str, key: bytes, associated_data: bytes = b"") -> str:
    """Decrypt a value made by :func:`seal` with the same key and associated data.

    Raises :class:`SealError` if the value is malformed, of an unknown version,
    was altered, or was sealed under another key or associated data.
    """
    aead = _aead(key)
    version, dot, body = token.partition(".")
    if not dot or version != _SEAL_VERSION:
        raise SealError("not a sealed value of a known version")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SealError("sealed value is not valid base64url") from exc
    if len(raw) < _NONCE_BYTES + 16:
        raise SealError("sealed value is too short")
    nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    try:
        plaintext = aead.decrypt(nonce, sealed, _associated(associated_data))
    except InvalidTag as exc:
        raise SealError("sealed value was altered or sealed under another key") from exc
    return plaintext.decode("utf-8")
