"""The OCI Distribution / Docker Registry HTTP API V2 routes (``/v2/...``).

Each handler parses the request, calls one service and renders the result.
Routing of ``/v2/<name>/...`` is done here with one anchored pattern, because
repository names contain slashes and may even contain ``blobs`` or
``manifests`` as components.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from hamn.auth.policy import RouteKind
from hamn.errors import (
    BLOB_UPLOAD_INVALID,
    BODY_INCOMPLETE,
    DIGEST_INVALID,
    MANIFEST_TOO_LARGE,
    NOT_FOUND,
    RANGE_NOT_SATISFIABLE,
    UNSUPPORTED,
    HamnError,
)
from hamn.http.auth import RequestAuth
from hamn.http.errors import mark_body_complete
from hamn.http.observability import describe_request
from hamn.oci.manifest import MAX_MANIFEST_BYTES, OCI_INDEX
from hamn.services.registry import Blob, RegistryService, Target
from hamn.services.uploads import BlobUploadService

_ROUTE = re.compile(
    r"^/v2/(?P<name>.+?)/(?:"
    r"(?P<tags>tags/list)"
    r"|manifests/(?P<reference>[^/]+)"
    r"|blobs/uploads/(?P<upload>[^/]*)"
    r"|blobs/(?P<digest>[^/]+)"
    r"|referrers/(?P<subject>[^/]+)"
    r")\Z"
)
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)\Z")
_RANGE_SET = re.compile(r"^bytes=\s*\d*-\d*(?:\s*,\s*\d*-\d*)*\Z")
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?\Z")

Handler = Callable[[Request, Target, str, str], Awaitable[Response]]


def _headers(**values: str) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in values.items()}


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise HamnError(BLOB_UPLOAD_INVALID, "Content-Length must be a whole number")
    return int(value)


def _content_range(request: Request) -> tuple[int, int] | None:
    value = request.headers.get("content-range")
    if value is None:
        return None
    m = _CONTENT_RANGE.match(value.strip())
    if m is None:
        raise HamnError(
            BLOB_UPLOAD_INVALID,
            "Content-Range must be '<first>-<last>'",
            detail={"range": value[:100]},
        )
    return int(m.group(1)), int(m.group(2))


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise HamnError(BODY_INCOMPLETE) from None
    mark_body_complete(request)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = _content_length(request)
    if declared is not None and declared > limit:
        raise HamnError(
            MANIFEST_TOO_LARGE,
            f"manifest is {declared} bytes; the limit is {limit} bytes (4 MiB)",
            detail={"size": declared, "limit": limit},
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in _body(request):
        size += len(chunk)
        if size > limit:
            raise HamnError(
                MANIFEST_TOO_LARGE,
                f"manifest is larger than the limit of {limit} bytes (4 MiB)",
                detail={"limit": limit},
            )
        parts.append(chunk)
    return b"".join(parts)


def _check_blob_range(value: str | None, size: int) -> None:
    """Refuse a single byte range that cannot be satisfied (416, as the spec asks).

    Satisfiable ranges, and forms this does not parse (several ranges), are
    left to the file response, which serves them.
    """
    if value is None:
        return
    m = _SINGLE_RANGE.match(value.strip())
    if m is None:
        return
    first, last = m.group(1), m.group(2)
    if first == "":
        satisfiable = last != "" and int(last) > 0 and size > 0
    else:
        satisfiable = int(first) < size and (last == "" or int(first) <= int(last))
    if not satisfiable:
        raise HamnError(
            RANGE_NOT_SATISFIABLE,
            f"range {value[:100]!r} is outside the blob's {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )


def _single_range(value: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte of a single range already found satisfiable by
    :func:`_check_blob_range`; None without a Range header or for forms it does not
    parse (several ranges), which get the whole blob, as RFC 9110 allows."""
    m = _SINGLE_RANGE.match(value.strip()) if value is not None else None
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # the last N bytes
        return max(size - int(last), 0), size - 1
    return int(first), size - 1 if last == "" else min(int(last), size - 1)


def _next_link(path: str, n: int | None, items: list[str] | None) -> dict[str, str]:
    """The ``Link`` header to the next page, when ``items`` is a page with more after it."""
    if not items:
        return {}
    return {"Link": f'<{path}?{urlencode({"n": n, "last": items[-1]})}>; rel="next"'}


def _range_header(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


class _WithoutRange(Response):
    """Serves a response as if the request had no Range header.

    RFC 9110 says a Range header that cannot be parsed is ignored (the whole
    content is sent), where the file response would answer 400.
    """

    def __init__(self, inner: Response) -> None:
        self.inner = inner
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
        await self.inner({**scope, "headers": headers}, receive, send)


async def send_blob(
    request: Request, registry: RegistryService, blob: Blob, **extra: str
) -> Response:
    """The response that sends ``blob``: its bytes for a GET (a byte range when asked),
    its headers for a HEAD, with ``extra`` headers. Shared by
    ``/v2/<name>/blobs/<digest>`` and hamn's signed blob URLs."""
    headers = _headers(
        Docker_Content_Digest=blob.digest, ETag=f'"{blob.digest}"', Accept_Ranges="bytes", **extra
    )
    if request.method == "HEAD":
        headers["Content-Length"] = str(blob.size)
        return Response(b"", media_type="application/octet-stream", headers=headers)
    byte_range = request.headers.get("range")
    _check_blob_range(byte_range, blob.size)
    if blob.path is not None:
        # Zero-copy: granian sends the file itself (ASGI pathsend) unless a Range is asked.
        response = FileResponse(blob.path, media_type="application/octet-stream", headers=headers)
        if byte_range is not None and not _RANGE_SET.match(byte_range.strip()):
            return _WithoutRange(response)
        return response
    # Object storage: the bytes stream from the driver, a single range as one ranged read.
    span = _single_range(byte_range, blob.size)
    if span is None:
        headers["Content-Length"] = str(blob.size)
        return StreamingResponse(
            await registry.read_blob(blob), media_type="application/octet-stream", headers=headers
        )
    first, last = span
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{blob.size}"
    body = await registry.read_blob(blob, first, last - first + 1)
    return StreamingResponse(
        body, status_code=206, media_type="application/octet-stream", headers=headers
    )


#: Where a blob GET redirects to (a signed, expiring URL), when redirects are on.
BlobRedirect = Callable[[Request, Target, Blob], Awaitable[str]]


class DataPlane:
    """The ``/v2/`` API over the registry and upload services.

    With ``redirect`` (``blob_redirects`` on), blob GETs that pass every check
    answer ``307`` to the URL it gives instead of sending the bytes.
    """

    def __init__(
        self,
        registry: RegistryService,
        uploads: BlobUploadService,
        access: RequestAuth,
        *,
        redirect: BlobRedirect | None = None,
    ) -> None:
        self.registry = registry
        self.uploads = uploads
        self.access = access
        self.redirect = redirect
        self._routes: dict[tuple[str, str], Handler] = {
            ("manifest", "GET"): self.get_manifest,
            ("manifest", "HEAD"): self.get_manifest,
            ("manifest", "PUT"): self.put_manifest,
            ("manifest", "DELETE"): self.delete_manifest,
            ("blob", "GET"): self.get_blob,
            ("blob", "HEAD"): self.get_blob,
            ("blob", "DELETE"): self.delete_blob,
            ("uploads", "POST"): self.start_upload,
            ("upload", "GET"): self.upload_status,
            ("upload", "PATCH"): self.patch_upload,
            ("upload", "PUT"): self.put_upload,
            ("upload", "DELETE"): self.cancel_upload,
            ("tags", "GET"): self.list_tags,
            ("referrers", "GET"): self.referrers,
        }

    # -- entry points ------------------------------------------------------------
    async def base(self, request: Request) -> Response:
        """``GET /v2/``: the API version check (and the start of the token flow)."""
        target = await self.access.target(request, None)
        await self.access.authorize(request, RouteKind.BASE, None, target)
        return Response(b"{}", media_type="application/json")

    async def catalog(self, request: Request) -> Response:
        """``GET /v2/_catalog``: repository names, paginated; ``/v2/<registry>/_catalog``
        for a registry named in the path (repository names cannot contain ``_catalog``)."""
        named = request.path_params.get("registry")
        target = await self.access.target(request, None, registry=named)
        await self.access.authorize(request, RouteKind.CATALOG, None, target)
        assert target is not None
        registry = target.registry
        n = self.registry.page_size(request.query_params.get("n"))
        last = request.query_params.get("last")
        page = await self.registry.catalog(registry, n, last)
        return Response(
            orjson.dumps({"repositories": page.items}),
            media_type="application/json",
            headers=_next_link(
                f"/v2/{quote(named)}/_catalog" if named else "/v2/_catalog",
                n,
                page.items if page.more else None,
            ),
        )

    async def dispatch(self, request: Request) -> Response:
        """Route ``/v2/<name>/...`` to its handler."""
        m = _ROUTE.match(request.url.path)
        if m is None:
            raise HamnError(NOT_FOUND, "no such endpoint in the registry API")
        if m["tags"]:
            kind, arg = "tags", ""
        elif m["reference"] is not None:
            kind, arg = "manifest", m["reference"]
        elif m["upload"] is not None:
            kind, arg = ("upload", m["upload"]) if m["upload"] else ("uploads", "")
        elif m["digest"] is not None:
            kind, arg = "blob", m["digest"]
        else:
            kind, arg = "referrers", m["subject"]
        describe_request(route="upload" if kind == "uploads" else kind)
        handler = self._routes.get((kind, request.method))
        if handler is None:
            raise HamnError(UNSUPPORTED, f"{request.method} is not supported on this endpoint")
        name = m["name"]
        target = await self.access.target(request, name)
        params = request.query_params
        mount_from = params.get("from") if kind == "uploads" and params.get("mount") else None
        may_mount = await self.access.authorize(
            request, RouteKind(kind), name, target, mount_from=mount_from or None
        )
        assert target is not None
        request.state.hamn_may_mount = may_mount
        describe_request(registry=target.registry.name, repository=target.repository)
        return await handler(request, target, name, arg)

    # -- manifests ---------------------------------------------------------------
    async def get_manifest(self, request: Request, target: Target, name: str, ref: str) -> Response:
        if request.method == "HEAD":
            record = await self.registry.head_manifest(target, ref)
            headers = _headers(
                Content_Length=str(record.size),
                Docker_Content_Digest=record.digest,
                ETag=f'"{record.digest}"',
            )
            return Response(b"", media_type=record.media_type, headers=headers)
        manifest = await self.registry.get_manifest(target, ref)
        headers = _headers(
            Docker_Content_Digest=manifest.record.digest, ETag=f'"{manifest.record.digest}"'
        )
        return Response(manifest.content, media_type=manifest.record.media_type, headers=headers)

    async def put_manifest(self, request: Request, target: Target, name: str, ref: str) -> Response:
        body = await _read_limited(request, MAX_MANIFEST_BYTES)
        stored = await self.registry.put_manifest(
            target, ref, request.headers.get("content-type"), body
        )
        headers = _headers(
            Location=f"/v2/{name}/manifests/{stored.digest}", Docker_Content_Digest=stored.digest
        )
        if stored.subject_digest:
            headers["OCI-Subject"] = stored.subject_digest
        return Response(b"", status_code=201, headers=headers)

    async def delete_manifest(
        self, request: Request, target: Target, name: str, ref: str
    ) -> Response:
        await self.registry.delete_manifest(target, ref)
        return Response(b"", status_code=202)

    # -- blobs -------------------------------------------------------------------
    async def get_blob(self, request: Request, target: Target, name: str, digest: str) -> Response:
        blob = await self.registry.stat_blob(target, digest)
        if request.method == "GET" and self.redirect is not None:
            # Only GET: a HEAD answers itself, and manifests are always served here.
            location = await self.redirect(request, target, blob)
            headers = _headers(
                Location=location,
                Docker_Content_Digest=blob.digest,
                # The URL is signed for this caller and expires: no cache may keep it.
                Cache_Control="no-store",
            )
            return Response(b"", status_code=307, headers=headers)
        return await send_blob(request, self.registry, blob)

    async def delete_blob(
        self, request: Request, target: Target, name: str, digest: str
    ) -> Response:
        await self.registry.delete_blob(target, digest)
        return Response(b"", status_code=202)

    # -- uploads -----------------------------------------------------------------
    def _upload_headers(self, name: str, upload_id: str, size: int) -> dict[str, str]:
        return _headers(
            Location=f"/v2/{name}/blobs/uploads/{upload_id}",
            Range=_range_header(size),
            Docker_Upload_UUID=upload_id,
        )

    def _blob_created(self, name: str, digest: str) -> Response:
        headers = _headers(Location=f"/v2/{name}/blobs/{digest}", Docker_Content_Digest=digest)
        return Response(b"", status_code=201, headers=headers)

    async def start_upload(self, request: Request, target: Target, name: str, _: str) -> Response:
        params = request.query_params
        mount = params.get("mount")
        # Without pull on from=, the mount is skipped: a plain upload, as the spec prefers.
        if mount and getattr(request.state, "hamn_may_mount", True):
            source = params.get("from")
            mounted = None
            if source:
                origin = await self.registry.mount_source(request.headers.get("host"), source)
                if origin is not None and origin.registry.id == target.registry.id:
                    mounted = await self.uploads.mount(target, mount, origin.repository)
            else:
                mounted = await self.uploads.mount(target, mount, None)
            if mounted is not None:
                return self._blob_created(name, mounted.digest)
        digest = params.get("digest")
        if digest:
            blob = await self.uploads.upload_whole(
                target, digest, _body(request), _content_length(request)
            )
            return self._blob_created(name, blob.digest)
        status = await self.uploads.start(target)
        return Response(
            b"", status_code=202, headers=self._upload_headers(name, status.id, status.size)
        )

    async def upload_status(
        self, request: Request, target: Target, name: str, uid: str
    ) -> Response:
        status = await self.uploads.status(target, uid)
        return Response(
            b"", status_code=204, headers=self._upload_headers(name, status.id, status.size)
        )

    async def patch_upload(self, request: Request, target: Target, name: str, uid: str) -> Response:
        status = await self.uploads.append(
            target,
            uid,
            _body(request),
            content_range=_content_range(request),
            content_length=_content_length(request),
        )
        return Response(
            b"", status_code=202, headers=self._upload_headers(name, status.id, status.size)
        )

    async def put_upload(self, request: Request, target: Target, name: str, uid: str) -> Response:
        digest = request.query_params.get("digest")
        if not digest:
            raise HamnError(
                DIGEST_INVALID, "completing an upload needs the blob's digest as ?digest=<digest>"
            )
        blob = await self.uploads.complete(
            target,
            uid,
            digest,
            _body(request),
            content_range=_content_range(request),
            content_length=_content_length(request),
        )
        return self._blob_created(name, blob.digest)

    async def cancel_upload(
        self, request: Request, target: Target, name: str, uid: str
    ) -> Response:
        await self.uploads.cancel(target, uid)
        return Response(b"", status_code=204)

    # -- discovery -----------------------------------------------------------------
    async def list_tags(self, request: Request, target: Target, name: str, _: str) -> Response:
        n = self.registry.page_size(request.query_params.get("n"))
        last = request.query_params.get("last")
        page = await self.registry.list_tags(target, n, last)
        return Response(
            orjson.dumps({"name": name, "tags": page.items}),
            media_type="application/json",
            headers=_next_link(
                f"/v2/{quote(name)}/tags/list", n, page.items if page.more else None
            ),
        )

    async def referrers(
        self, request: Request, target: Target, name: str, subject: str
    ) -> Response:
        artifact_type = request.query_params.get("artifactType")
        body = await self.registry.referrers(target, subject, artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        return Response(body, media_type=OCI_INDEX, headers=headers)
