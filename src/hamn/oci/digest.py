"""Content digests: parsing, validation and hashers (OCI image-spec descriptor rules)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from hamn.errors import DIGEST_INVALID, UNSUPPORTED, HamnError

# Grammar from the OCI image spec: algorithm ":" encoded.
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)\Z")

#: Registered algorithms hamn verifies, with the length of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"


class Hasher(Protocol):
    """The part of a hashlib object that hamn uses."""

    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest such as ``sha256:<64 hex>``."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Parse and validate a digest string; raise DIGEST_INVALID (or UNSUPPORTED) otherwise."""
    m = _DIGEST_RE.match(value)
    if m is None:
        raise HamnError(
            DIGEST_INVALID, f"invalid digest {value[:200]!r}", detail={"digest": value[:200]}
        )
    algorithm, encoded = m.group(1), m.group(2)
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise HamnError(
            UNSUPPORTED,
            f"digest algorithm {algorithm!r} is not supported; use sha256 or sha512",
            detail={"digest": value[:200]},
        )
    if len(encoded) != length or not _is_lower_hex(encoded):
        raise HamnError(
            DIGEST_INVALID,
            f"{algorithm} digests have {length} lowercase hex characters",
            detail={"digest": value[:200]},
        )
    return Digest(algorithm, encoded)


def is_digest(value: str) -> bool:
    """True when ``value`` looks like a digest (``alg:encoded``) rather than a tag."""
    return ":" in value


def new_hasher(algorithm: str = DEFAULT_ALGORITHM) -> Hasher:
    """A fresh hasher for one of :data:`ALGORITHMS`."""
    if algorithm not in ALGORITHMS:
        raise HamnError(UNSUPPORTED, f"digest algorithm {algorithm!r} is not supported")
    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """The digest string of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _is_lower_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)
