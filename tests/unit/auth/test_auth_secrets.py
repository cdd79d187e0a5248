"""Secrets: generation, argon2id hashes, constant-time comparison, sealing (hamn.auth.secrets)."""

from __future__ import annotations

import base64

import pytest
from argon2 import PasswordHasher, Type

from hamn.auth.secrets import (
    MAX_SECRET_LENGTH,
    SERVER_HASH_PARAMETERS,
    HashParameters,
    SealError,
    constant_time_equals,
    hash_secret,
    needs_rehash,
    new_key,
    new_secret,
    seal,
    unseal,
    verify_secret,
    verify_unknown,
)

# Cheap parameters for tests; the server's defaults stay as they are.
FAST = HashParameters(time_cost=1, memory_cost=8, parallelism=1)


def test_generated_secrets() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert len(secret) == 52
        assert not secret.startswith("-")
        assert set(secret) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_server_parameters_are_owasps() -> None:
    assert HashParameters(time_cost=2, memory_cost=19456, parallelism=1) == SERVER_HASH_PARAMETERS
    stored = hash_secret("a password")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_secret(stored, "a password")
    assert not needs_rehash(stored)


def test_hash_and_verify() -> None:
    stored = hash_secret("correct horse", FAST)
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_secret(stored, "correct horse")
    assert hash_secret("correct horse", FAST) != stored  # salted


@pytest.mark.parametrize(
    "attempt",
    ["", "correct hors", "correct horse ", "Correct horse", "x" * (MAX_SECRET_LENGTH + 1)],
)
def test_wrong_secrets(attempt: str) -> None:
    assert not verify_secret(hash_secret("correct horse", FAST), attempt)


def test_unicode_secrets() -> None:
    stored = hash_secret("lösenord-ÅÄÖ-🔑", FAST)
    assert verify_secret(stored, "lösenord-ÅÄÖ-🔑")
    assert not verify_secret(stored, "losenord-AAO-🔑")
    assert not verify_secret(stored, "\ud800")  # a lone surrogate cannot be encoded


@pytest.mark.parametrize("secret", ["", "x" * (MAX_SECRET_LENGTH + 1)])
def test_unstorable_secrets(secret: str) -> None:
    with pytest.raises(ValueError):
        hash_secret(secret, FAST)


def _argon2i_hash(secret: str) -> str:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash(secret)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$notbase64!!",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43,
        "$2b$12$abcdefghijklmnopqrstuuM9bTnM6bZr0Lr0n5o0Ck6ZTDo5wD6",
        "$argon2id$" + "x" * 1000,
        "{PLAIN}hunter2",
    ],
)
def test_malformed_stored_hash_never_raises(stored: str) -> None:
    assert verify_secret(stored, "hunter2") is False
    assert needs_rehash(stored, FAST) is True


def test_only_argon2id_verifies() -> None:
    assert not verify_secret(_argon2i_hash("hunter2"), "hunter2")


def test_truncated_or_altered_hash() -> None:
    stored = hash_secret("hunter2", FAST)
    assert not verify_secret(stored[:-5], "hunter2")
    assert not verify_secret(stored + " ", "hunter2")
    last = "A" if stored[-1] != "A" else "B"
    assert not verify_secret(stored[:-1] + last, "hunter2")


def test_needs_rehash() -> None:
    stored = hash_secret("hunter2", FAST)
    assert not needs_rehash(stored, FAST)
    assert needs_rehash(stored, HashParameters(time_cost=2, memory_cost=8, parallelism=1))
    assert needs_rehash(stored)  # the server's parameters are stronger


def test_verify_unknown_spends_a_verification_and_refuses() -> None:
    assert verify_unknown("anything", FAST) is False
    assert verify_unknown("", FAST) is False


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
    assert not constant_time_equals("", "a")
    assert constant_time_equals("åäö", "åäö")  # not only ASCII
    assert constant_time_equals("", "")


# -- sealing -----------------------------------------------------------------------

AD = b"admin-password:/registries/myregistry1:password"


def test_seal_round_trip() -> None:
    key = new_key()
    assert len(key) == 32
    for plaintext in ("s3cret", "", "lösenord 🔑", "x" * 10_000):
        sealed = seal(plaintext, key, AD)
        assert sealed.startswith("v1.")
        assert plaintext not in sealed or plaintext == ""
        assert unseal(sealed, key, AD) == plaintext


def test_seal_uses_a_fresh_nonce() -> None:
    key = new_key()
    assert seal("same", key, AD) != seal("same", key, AD)


def test_unseal_needs_the_same_key_and_associated_data() -> None:
    key = new_key()
    sealed = seal("s3cret", key, AD)
    with pytest.raises(SealError):
        unseal(sealed, new_key(), AD)
    with pytest.raises(SealError):
        unseal(sealed, key, AD + b"2")
    with pytest.raises(SealError):
        unseal(sealed, key)
    assert unseal(seal("s3cret", key), key) == "s3cret"


def test_tampering_is_detected() -> None:
    key = new_key()
    sealed = seal("s3cret", key, AD)
    raw = bytearray(base64.urlsafe_b64decode(sealed[3:] + "=" * (-len(sealed[3:]) % 4)))
    for position in (0, 11, 12, len(raw) - 1):  # nonce, ciphertext, tag
        altered = bytearray(raw)
        altered[position] ^= 0x01
        text = "v1." + base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        with pytest.raises(SealError):
            unseal(text, key, AD)


@pytest.mark.parametrize(
    "token",
    ["", "v1", "v1.", "v2.AAAA", "v1.!!!!", "v1.AAAA", "nodot", "v1." + "A" * 30],
)
def test_malformed_sealed_values(token: str) -> None:
    with pytest.raises(SealError):
        unseal(token, new_key(), AD)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 16, b"x" * 33])
def test_keys_are_256_bits(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal("s", key)
    with pytest.raises(ValueError, match="32 bytes"):
        unseal("v1.AAAA", key)
