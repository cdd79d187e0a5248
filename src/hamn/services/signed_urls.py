"""Blob redirects (SPEC §3.6): signed, expiring URLs that serve one blob without credentials.

With ``blob_redirects`` on, a blob GET that passed the registry's own checks is
answered ``307`` to a URL the caller may fetch without credentials until it
expires: the storage's own (an Azure SAS, an S3 presigned URL) when the driver
has one, else hamn's own signed URL, served by hamn from its disk.

hamn's own URL carries what it grants (:class:`BlobGrant`: one blob of one
repository until an expiry) and an HMAC-SHA256 over it, keyed by a key derived
from the server key, so every process of a deployment (they share the server
key) signs and accepts the same URLs. The signature is checked before anything
is looked up, so a caller without a valid one learns nothing about what is
stored; a valid one still only serves a blob the repository links *now* (one
deleted or collected since answers BLOB_UNKNOWN).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from hamn.errors import BLOB_UNKNOWN, DENIED, HamnError
from hamn.oci.digest import parse_digest
from hamn.oci.names import is_valid_registry_name, validate_repository_name
from hamn.services.registry import Blob, RegistryService, Target
from hamn.storage.base import BlobDriver

#: Names the derived key's purpose, so the server key's other uses (sealing) never
#: produce a MAC that is also a valid URL signature.
_KEY_LABEL = b"hamn signed blob URL key v1"
#: The signed message's version; a new format gets a new one.
_MESSAGE_VERSION = "hamn-blob-url-v1"
#: The method a grant is for; HEAD is GET without the body.
_METHOD = "GET"


def url_signing_key(server_key: bytes) -> bytes:
    """The key hamn signs its blob URLs with, derived from the deployment's server key."""
    return hmac.new(server_key, _KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class BlobGrant:
    """What a signed URL grants: reading blob ``digest`` of ``repository`` in
    ``registry`` until ``expires`` (POSIX seconds)."""

    registry: str
    repository: str
    digest: str
    expires: int

    def message(self) -> bytes:
        """The bytes the signature covers: method, registry, repository, digest and expiry.

        A JSON array: no two grants share a message, whatever their fields hold.
        """
        return orjson.dumps(
            [_MESSAGE_VERSION, _METHOD, self.registry, self.repository, self.digest, self.expires]
        )


@dataclass(frozen=True, slots=True)
class SignedGrant:
    """A grant and its signature (base64url, unpadded): what hamn's URL carries."""

    grant: BlobGrant
    signature: str


class UrlSigner:
    """Signs grants with one key (derived from the server key, so every process sharing
    ``secret_key`` accepts the others' links) and checks signatures in constant time."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, grant: BlobGrant) -> str:
        """The signature of ``grant``."""
        return self._mac(self._key, grant)

    def valid(self, grant: BlobGrant, signature: str) -> bool:
        """Whether ``signature`` is our signature of ``grant`` (expiry aside)."""
        offered = signature.encode("ascii", "replace")
        return hmac.compare_digest(self._mac(self._key, grant).encode(), offered)

    @staticmethod
    def _mac(key: bytes, grant: BlobGrant) -> str:
        mac = hmac.new(key, grant.message(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


class BlobLinks:
    """Where a blob GET redirects, and what hamn's own signed URLs serve."""

    def __init__(
        self,
        registry: RegistryService,
        blobs: BlobDriver,
        signer: UrlSigner,
        *,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.blobs = blobs
        self.signer = signer
        self.ttl = ttl
        self.clock = clock

    async def storage_url(self, blob: Blob) -> str | None:
        """The storage's own signed URL of the blob, valid for ``ttl`` seconds, or None
        when the storage has none (hamn then signs its own: :meth:`grant`)."""
        return await self.blobs.signed_url(blob.digest, self.ttl)

    def grant(self, target: Target, blob: Blob) -> SignedGrant:
        """A signed grant to read ``blob`` of ``target`` for ``ttl`` seconds.

        The expiry is rounded up to a whole second, never down: a link is
        good for at least the configured time.
        """
        expires = math.ceil(self.clock() + self.ttl)
        grant = BlobGrant(target.registry.name, target.repository, blob.digest, expires)
        return SignedGrant(grant, self.signer.sign(grant))

    async def open(self, signed: SignedGrant) -> Blob:
        """The blob a signed grant names, if the signature is ours, unexpired, and the
        repository still links the blob.

        Raises DENIED (403) for a signature that is not ours or has expired, before
        looking anything up, and BLOB_UNKNOWN (404) for a blob gone since it was signed.
        """
        grant = signed.grant
        if not self.signer.valid(grant, signed.signature):
            raise HamnError(
                DENIED,
                "this blob link is not valid (altered, or signed for another blob); "
                "request the blob from the registry again for a new link",
            )
        if self.clock() > grant.expires:
            raise HamnError(
                DENIED,
                "this blob link has expired; request the blob from the registry again "
                "for a new link",
                detail={"expired": grant.expires},
            )
        # We signed it, so these parse; checked anyway, as everything from a URL is.
        found = None
        if is_valid_registry_name(grant.registry):
            found = await self.registry.registry(grant.registry)
        if found is None:
            raise HamnError(BLOB_UNKNOWN, "the blob's registry no longer exists")
        target = Target(found, validate_repository_name(grant.repository))
        return await self.registry.stat_blob(target, str(parse_digest(grant.digest)))
