"""hamn's own signed blob URLs (SPEC §3.6): where a blob GET redirects when the
storage has no signed URLs of its own (the filesystem).

``GET|HEAD /v2/_signed/blobs/<digest>?registry=R&repository=N&se=<expiry>&sig=<signature>``

``_signed`` cannot be a repository or registry name (those begin with a letter
or digit), so the path never shadows content; it stays under ``/v2/`` so a
proxy that forwards the registry API forwards these links too.

The signature is the only credential. An ``Authorization`` header is ignored,
whatever it holds: ``curl -L -u`` and the Go clients send the original one
again to a redirect on the same host, and a Bearer token scoped for the
repository, or even a stale one, must not turn a valid link into a 401.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from hamn.errors import DENIED, UNSUPPORTED, HamnError
from hamn.http.observability import describe_request
from hamn.http.v2 import send_blob
from hamn.services.registry import Blob, Target
from hamn.services.signed_urls import BlobGrant, BlobLinks, SignedGrant

#: The route's path (Starlette's pattern); the digest is the last segment.
SIGNED_BLOB_ROUTE = "/v2/_signed/blobs/{digest}"
_PREFIX = "/v2/_signed/blobs/"


class SignedBlobs:
    """Hands out redirects for blob GETs and serves hamn's own signed URLs."""

    def __init__(self, links: BlobLinks, *, scheme: str) -> None:
        self.links = links
        self.scheme = scheme

    async def location(self, request: Request, target: Target, blob: Blob) -> str:
        """The absolute URL a blob GET redirects to: the storage's signed URL, else ours
        on the host the client used (the address it reached us by)."""
        url = await self.links.storage_url(blob)
        if url is not None:
            return url
        signed = self.links.grant(target, blob)
        grant = signed.grant
        query = urlencode(
            {
                "registry": grant.registry,
                "repository": grant.repository,
                "se": grant.expires,
                "sig": signed.signature,
            }
        )
        host = request.headers.get("host") or request.url.netloc
        return f"{self.scheme}://{host}{_PREFIX}{quote(grant.digest, safe=':')}?{query}"

    async def serve(self, request: Request) -> Response:
        """``GET|HEAD`` a signed URL: the blob's bytes (ranges too), with no other credential."""
        if request.method not in ("GET", "HEAD"):
            raise HamnError(UNSUPPORTED, f"{request.method} is not supported on a blob link")
        params = request.query_params
        registry, repository = params.get("registry", ""), params.get("repository", "")
        expires = params.get("se", "")
        if not expires.isdigit() or len(expires) > 12:
            raise HamnError(
                DENIED,
                "this blob link is not valid (no expiry); request the blob from the "
                "registry again for a new link",
            )
        grant = BlobGrant(registry, repository, request.path_params["digest"], int(expires))
        blob = await self.links.open(SignedGrant(grant, params.get("sig", "")))
        describe_request(registry=registry, repository=repository)
        # Cacheable by the one client that holds the link, and no longer than it lasts.
        remaining = max(grant.expires - int(self.links.clock()), 0)
        return await send_blob(
            request, self.links.registry, blob, Cache_Control=f"private, max-age={remaining}"
        )
