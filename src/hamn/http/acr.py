"""ACR's metadata API beside ``/v2/`` (SPEC §3.7): ``/acr/v1/...``, read, change the
changeable attributes (``PATCH``, the locks) and delete.

Routed like ``/v2/``: the registry comes from the login server, the first path
segment or the default registry. The access each route needs is derived in one
place, ``hamn.auth.policy.required_access`` (route kind ``acr_metadata``), not
here. Bodies use ACR's JSON keys and timestamp format; listings page
with ``n``/``last``/``orderby`` and a ``Link`` header. A ``PATCH`` answers with the
resource as ``GET`` shows it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from hamn.auth.policy import RouteKind
from hamn.errors import BODY_INCOMPLETE, NOT_FOUND, PARAMETER_INVALID, UNSUPPORTED, HamnError
from hamn.http.auth import RequestAuth
from hamn.http.errors import mark_body_complete
from hamn.metadata.models import ChangeableAttributes, ListOrder
from hamn.services.acr_metadata import (
    MAX_ATTRIBUTES_BODY,
    AcrMetadataService,
    Manifest,
    Platform,
    Repository,
    Tag,
    body_too_large,
    page_size,
    parse_attribute_changes,
    parse_order,
)
from hamn.services.registry import RegistryService, Target

#: ``/acr/v1/<name>``, ``.../_tags[/<tag>]``, ``.../_manifests[/<digest>]``. Repository
#: name components start with a letter or digit, so ``_tags`` is never part of a name.
_ROUTE = re.compile(r"^/acr/v1/(?P<name>.+?)(?:/(?P<kind>_tags|_manifests)(?:/(?P<ref>[^/]+))?)?\Z")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")

Handler = Callable[[Request, Target, str, str], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a request goes: its handler, the repository path as addressed (it may
    begin with a registry name) and the tag or digest (empty for other routes)."""

    handler: Handler
    name: str
    reference: str


def acr_time(value: datetime) -> str:
    """ACR's timestamp: ISO 8601 UTC with seven fractional digits and ``Z``."""
    if value.utcoffset():  # hamn stores UTC; naive values are UTC too
        value = value.astimezone(UTC)
    # isoformat is C code: a page of 1,000 tags formats 2,000 of these.
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "0Z"


def parse_acr_time(value: str, parameter: str) -> datetime:
    """Parse a timestamp in ACR's format (or any ISO 8601 with a zone) to UTC."""
    m = _TIME.match(value.strip())
    try:
        if m is None:
            raise ValueError(value)
        base, fraction, zone = m.groups()
        # Python keeps microseconds; ACR's seventh digit is always 0 in hamn's links.
        micro = (fraction or "")[:6].ljust(6, "0")
        parsed = datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        raise HamnError(
            PARAMETER_INVALID,
            f"{parameter} must be a timestamp such as 2026-01-31T12:00:00.0000000Z",
            detail={parameter: value[:100]},
        ) from None
    return parsed.astimezone(UTC)


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``body`` as a JSON response."""
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _attributes(attrs: ChangeableAttributes) -> dict[str, bool]:
    return {
        "deleteEnabled": attrs.delete_enabled,
        "writeEnabled": attrs.write_enabled,
        "readEnabled": attrs.read_enabled,
        "listEnabled": attrs.list_enabled,
    }


def _tag_json(tag: Tag) -> dict[str, Any]:
    return {
        "name": tag.info.name,
        "digest": tag.info.digest,
        "createdTime": acr_time(tag.info.created_at),
        "lastUpdateTime": acr_time(tag.info.updated_at),
        "signed": tag.signed,
        "changeableAttributes": _attributes(tag.attributes),
    }


def _platform_json(platform: Platform) -> dict[str, str | None]:
    return {"architecture": platform.architecture, "os": platform.os}


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """A manifest's attributes under ACR's keys."""
    out: dict[str, Any] = {
        "digest": manifest.digest,
        "imageSize": manifest.image_size,
        "createdTime": acr_time(manifest.created_at),
        "lastUpdateTime": acr_time(manifest.updated_at),
        **_platform_json(manifest.platform),
        "mediaType": manifest.media_type,
        "configMediaType": manifest.config_media_type,
        "tags": list(manifest.tags),
        "changeableAttributes": _attributes(manifest.attributes),
    }
    if manifest.references is not None:
        out["references"] = [
            {"digest": ref.digest, **_platform_json(ref.platform)} for ref in manifest.references
        ]
    return out


def _repository_json(repo: Repository, target: Target) -> dict[str, Any]:
    info = repo.info
    return {
        "registry": repo.login_server,
        "imageName": target.repository,
        "createdTime": acr_time(info.created_at),
        "lastUpdateTime": acr_time(info.updated_at),
        "manifestCount": info.manifest_count,
        "tagCount": info.tag_count,
        "changeableAttributes": _attributes(repo.attributes),
    }


async def read_small_body(request: Request) -> bytes:
    """A small request body (a PATCH's, a restore's), read no further than the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ATTRIBUTES_BODY:
        raise body_too_large(int(declared))
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_ATTRIBUTES_BODY:
                raise body_too_large(None)
            parts.append(chunk)
    except ClientDisconnect:
        raise HamnError(BODY_INCOMPLETE) from None
    mark_body_complete(request)
    return b"".join(parts)


def next_link(path: str, params: dict[str, str]) -> dict[str, str]:
    """The ``Link`` header for the page after this one."""
    return {"Link": f'<{path}?{urlencode(params)}>; rel="next"'}


def _orderby(order: ListOrder) -> str:
    # ACR's links carry ``orderby=`` even when it is empty.
    return "" if order == "name" else order


class AcrMetadataApi:
    """The ``/acr/v1/`` routes over the ACR metadata service."""

    def __init__(
        self, registry: RegistryService, metadata: AcrMetadataService, access: RequestAuth
    ) -> None:
        self.registry = registry
        self.metadata = metadata
        self.access = access
        #: (resource, method) -> handler.
        self.endpoints: dict[tuple[str, str], Handler] = {
            ("repository", "GET"): self.get_repository,
            ("repository", "PATCH"): self.patch_repository,
            ("repository", "DELETE"): self.delete_repository,
            ("tags", "GET"): self.list_tags,
            ("tag", "GET"): self.get_tag,
            ("tag", "PATCH"): self.patch_tag,
            ("tag", "DELETE"): self.delete_tag,
            ("manifests", "GET"): self.list_manifests,
            ("manifest", "GET"): self.get_manifest,
            ("manifest", "PATCH"): self.patch_manifest,
            ("manifest", "DELETE"): self.delete_manifest,
        }

    # -- entry points ----------------------------------------------------------------
    async def catalog(self, request: Request) -> Response:
        """``GET /acr/v1/_catalog``: repository names, paginated like ``/v2/_catalog``."""
        target = await self.access.target(request, None)
        await self.access.authorize(request, RouteKind.ACR_METADATA, None, target)
        assert target is not None
        registry = target.registry
        n = page_size(request.query_params.get("n"))
        page = await self.metadata.catalog(registry, n, request.query_params.get("last"))
        link: dict[str, str] = {}
        if page.more:
            link = next_link("/acr/v1/_catalog", {"last": page.items[-1], "n": str(n)})
        return json_response({"repositories": page.items}, headers=link)

    def route(self, method: str, path: str) -> Routed:
        """The handler ``method path`` reaches, with the repository path and reference.

        Pure (no I/O): what authorization needs to know before anything runs.
        """
        if path == "/acr/v1/_catalog":
            raise HamnError(UNSUPPORTED, f"{method} is not supported on this endpoint")
        if path.startswith("/acr/v1/_deleted/"):  # routed to hamn.http.acr_deleted first
            raise HamnError(NOT_FOUND, "no such endpoint in the ACR metadata API")
        m = _ROUTE.match(path)
        if m is None:
            raise HamnError(NOT_FOUND, "no such endpoint in the ACR metadata API")
        kind, ref = m["kind"], m["ref"]
        if kind is None:
            resource = "repository"
        elif kind == "_tags":
            resource = "tags" if ref is None else "tag"
        else:
            resource = "manifests" if ref is None else "manifest"
        handler = self.endpoints.get((resource, "GET" if method == "HEAD" else method))
        if handler is None:
            raise HamnError(UNSUPPORTED, f"{method} is not supported on this endpoint")
        return Routed(handler, m["name"], ref or "")

    async def dispatch(self, request: Request) -> Response:
        """Route ``/acr/v1/<name>[/_tags[/<tag>]|/_manifests[/<digest>]]`` to its handler."""
        routed = self.route(request.method, request.url.path)
        found = await self.access.target(request, routed.name)
        await self.access.authorize(request, RouteKind.ACR_METADATA, routed.name, found)
        assert found is not None
        target = found
        response = await routed.handler(request, target, routed.name, routed.reference)
        if request.method == "HEAD":
            return Response(b"", status_code=response.status_code, headers=dict(response.headers))
        return response

    # -- repositories ------------------------------------------------------------------
    async def get_repository(self, request: Request, target: Target, name: str, _: str) -> Response:
        repo = await self.metadata.repository(target)
        return json_response(_repository_json(repo, target))

    async def delete_repository(
        self, request: Request, target: Target, name: str, _: str
    ) -> Response:
        deleted = await self.metadata.delete_repository(target)
        return json_response(
            {"manifestsDeleted": deleted.manifests, "tagsDeleted": deleted.tags}, 202
        )

    async def patch_repository(
        self, request: Request, target: Target, name: str, _: str
    ) -> Response:
        changes = parse_attribute_changes(await read_small_body(request))
        repo = await self.metadata.update_repository(target, changes)
        return json_response(_repository_json(repo, target))

    # -- tags --------------------------------------------------------------------------
    async def list_tags(self, request: Request, target: Target, name: str, _: str) -> Response:
        params = request.query_params
        n = page_size(params.get("n"))
        order = parse_order(params.get("orderby"))
        last, last_time = self._position(request, order)
        digest = params.get("digest") or None
        page = await self.metadata.tags(target, n, order, last, last_time, digest)
        link: dict[str, str] = {}
        if page.more:
            tail = page.items[-1].info
            query = {"last": tail.name, "n": str(n), "orderby": _orderby(order)}
            if digest is not None:
                query["digest"] = digest
            if order != "name":
                query["lastUpdateTime"] = acr_time(tail.updated_at)
            link = next_link(f"/acr/v1/{quote(name)}/_tags", query)
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "tags": [_tag_json(tag) for tag in page.items],
            },
            headers=link,
        )

    async def get_tag(self, request: Request, target: Target, name: str, tag: str) -> Response:
        return self._one_tag(target, await self.metadata.tag(target, tag))

    async def patch_tag(self, request: Request, target: Target, name: str, tag: str) -> Response:
        changes = parse_attribute_changes(await read_small_body(request))
        return self._one_tag(target, await self.metadata.update_tag(target, tag, changes))

    def _one_tag(self, target: Target, tag: Tag) -> Response:
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "tag": _tag_json(tag),
            }
        )

    async def delete_tag(self, request: Request, target: Target, name: str, tag: str) -> Response:
        await self.metadata.delete_tag(target, tag)
        return Response(b"", status_code=202)

    # -- manifests -----------------------------------------------------------------------
    async def list_manifests(self, request: Request, target: Target, name: str, _: str) -> Response:
        params = request.query_params
        n = page_size(params.get("n"))
        order = parse_order(params.get("orderby"))
        last, last_time = self._position(request, order)
        page = await self.metadata.manifests(target, n, order, last, last_time)
        link: dict[str, str] = {}
        if page.more:
            tail = page.items[-1]
            query = {"last": tail.digest, "n": str(n), "orderby": _orderby(order)}
            if order != "name":
                query["lastUpdateTime"] = acr_time(tail.updated_at)
            link = next_link(f"/acr/v1/{quote(name)}/_manifests", query)
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "manifests": [manifest_json(m) for m in page.items],
            },
            headers=link,
        )

    async def get_manifest(
        self, request: Request, target: Target, name: str, digest: str
    ) -> Response:
        return self._one_manifest(target, await self.metadata.manifest(target, digest))

    async def patch_manifest(
        self, request: Request, target: Target, name: str, digest: str
    ) -> Response:
        changes = parse_attribute_changes(await read_small_body(request))
        found = await self.metadata.update_manifest(target, digest, changes)
        return self._one_manifest(target, found)

    def _one_manifest(self, target: Target, manifest: Manifest) -> Response:
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "manifest": manifest_json(manifest),
            }
        )

    async def delete_manifest(
        self, request: Request, target: Target, name: str, digest: str
    ) -> Response:
        await self.metadata.delete_manifest(target, digest)
        return Response(b"", status_code=202)

    # -- parsing -------------------------------------------------------------------------
    @staticmethod
    def _position(request: Request, order: ListOrder) -> tuple[str | None, datetime | None]:
        """Where a page starts: ``last`` and, in a time order, hamn's ``lastUpdateTime``.

        ACR's own links carry only ``last``; hamn's carry the entry's time as
        well, so a time-ordered walk stays exact when that entry changes.
        """
        params = request.query_params
        last = params.get("last") or None
        raw_time = params.get("lastUpdateTime")
        if order == "name" or last is None or not raw_time:
            return last, None
        return last, parse_acr_time(raw_time, "lastUpdateTime")
