"""Digest parsing, validation and hashing (hamn.oci.digest)."""

from __future__ import annotations

import hashlib

import pytest

from hamn.errors import DIGEST_INVALID, UNSUPPORTED, HamnError
from hamn.oci.digest import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    Digest,
    digest_bytes,
    is_digest,
    new_hasher,
    parse_digest,
)

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2
#: sha256 of the empty string, the best-known digest there is.
EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parse_sha256() -> None:
    d = parse_digest(f"sha256:{HEX64}")
    assert d == Digest("sha256", HEX64)
    assert str(d) == f"sha256:{HEX64}"


def test_parse_sha512() -> None:
    d = parse_digest(f"sha512:{HEX128}")
    assert (d.algorithm, d.hex) == ("sha512", HEX128)
    assert str(d) == f"sha512:{HEX128}"


def test_digest_is_a_frozen_value() -> None:
    d = parse_digest(EMPTY_SHA256)
    with pytest.raises(AttributeError):
        d.hex = HEX64  # type: ignore[misc]
    assert d == parse_digest(EMPTY_SHA256)
    assert len({d, parse_digest(EMPTY_SHA256)}) == 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + HEX64,
        HEX64,
        "sha256:" + HEX64[:-1],  # one character short
        "sha256:" + HEX64 + "0",  # one character long
        "sha256:" + HEX64.upper(),  # the encoding is lowercase hex
        "sha256:" + "g" * 64,
        "sha256:" + "=" * 64,  # in the grammar's alphabet, not hex
        "sha512:" + HEX64,  # sha256 length under sha512
        "sha256:" + HEX128,  # sha512 length under sha256
        "SHA256:" + HEX64,  # algorithms are lowercase
        "sha256::" + HEX64,
        " sha256:" + HEX64,
        "sha256:" + HEX64 + " ",
        "sha256:../../etc/passwd",
        "sha256:" + HEX64 + "/../x",
        "sha256/" + HEX64,
    ],
)
def test_invalid_digests_are_digest_invalid(value: str) -> None:
    with pytest.raises(HamnError) as exc:
        parse_digest(value)
    assert exc.value.code is DIGEST_INVALID
    assert exc.value.status == 400
    assert exc.value.detail == {"digest": value}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_trailing_newline_is_invalid(newline: str) -> None:
    # ``$`` in a Python regex also matches before a final "\n": the digest must be the whole string.
    with pytest.raises(HamnError) as exc:
        parse_digest(f"sha256:{HEX64}{newline}")
    assert exc.value.code is DIGEST_INVALID


@pytest.mark.parametrize(
    "value",
    ["md5:" + "a" * 32, "sha384:" + "a" * 96, "sha256+b64u:" + "a" * 43, "blake3:" + HEX64],
)
def test_unregistered_algorithms_are_unsupported(value: str) -> None:
    with pytest.raises(HamnError) as exc:
        parse_digest(value)
    assert exc.value.code is UNSUPPORTED
    assert "sha256" in exc.value.message


def test_error_detail_is_truncated() -> None:
    value = "sha256:" + "z" * 10_000
    with pytest.raises(HamnError) as exc:
        parse_digest(value)
    assert exc.value.detail == {"digest": value[:200]}
    assert len(exc.value.message) < 300


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EMPTY_SHA256, True),
        ("sha256:whatever", True),
        ("latest", False),
        ("v1.0", False),
        ("", False),
    ],
)
def test_is_digest_tells_digests_from_tags(value: str, expected: bool) -> None:
    assert is_digest(value) is expected


def test_digest_bytes_known_value() -> None:
    assert digest_bytes(b"") == EMPTY_SHA256
    assert DEFAULT_ALGORITHM == "sha256"


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_digest_bytes_matches_hashlib_and_parses(algorithm: str) -> None:
    data = b"hamn blob bytes\n" * 100
    value = digest_bytes(data, algorithm)
    assert value == f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    assert str(parse_digest(value)) == value
    assert len(parse_digest(value).hex) == ALGORITHMS[algorithm]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_new_hasher_streams_and_copies(algorithm: str) -> None:
    hasher = new_hasher(algorithm)
    hasher.update(b"abc")
    snapshot = hasher.copy()
    hasher.update(memoryview(b"def"))
    assert f"{algorithm}:{snapshot.hexdigest()}" == digest_bytes(b"abc", algorithm)
    assert f"{algorithm}:{hasher.hexdigest()}" == digest_bytes(b"abcdef", algorithm)


def test_new_hasher_defaults_to_sha256() -> None:
    assert f"sha256:{new_hasher().hexdigest()}" == EMPTY_SHA256


def test_new_hasher_refuses_unregistered_algorithms() -> None:
    with pytest.raises(HamnError) as exc:
        new_hasher("md5")
    assert exc.value.code is UNSUPPORTED
