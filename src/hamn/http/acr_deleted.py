"""Soft delete's recycle bin in ACR's metadata API: ``/acr/v1/_deleted/...``.

``GET /acr/v1/_deleted/_catalog`` names the repositories holding deleted content
(names only, so it needs what ``/acr/v1/_catalog`` needs); ``GET
.../_deleted/<name>/_manifests`` and ``.../_tags`` list deleted manifests and tags
(``deleted_read``), ``POST .../_deleted/<name>/_manifests/<digest>`` with an
optional ``{"tag": "<name>"}`` restores (``deleted_restore``). The access each needs
is derived in ``hamn.auth.policy.required_access`` (route kind ``acr_deleted``).
Listings page with ``n``/``last`` and a ``Link`` header, in digest or name order.
The behaviour behind them is :mod:`hamn.services.recycle_bin`'s.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hamn.auth.policy import RouteKind
from hamn.errors import BODY_INVALID, NOT_FOUND, UNSUPPORTED, HamnError
from hamn.http.acr import acr_time, json_response, manifest_json, next_link, read_small_body
from hamn.http.auth import RequestAuth
from hamn.services.acr_metadata import AcrMetadataService, page_size
from hamn.services.recycle_bin import DeletedManifestView, DeletedTagView, RecycleBinService
from hamn.services.registry import Target

#: ``/acr/v1/_deleted/<name>/_manifests[/<digest>]`` and ``.../_tags``.
_ROUTE = re.compile(
    r"^/acr/v1/_deleted/(?P<name>.+?)/(?P<kind>_tags|_manifests)(?:/(?P<ref>[^/]+))?\Z"
)

Handler = Callable[[Request, Target, str, str], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Routed:
    handler: Handler
    name: str
    reference: str


def _deleted_manifest_json(view: DeletedManifestView) -> dict[str, Any]:
    m = view.manifest
    return {
        "digest": m.digest,
        "imageSize": m.image_size,
        "createdTime": acr_time(m.created_at),
        "lastUpdateTime": acr_time(m.updated_at),
        "deletedTime": acr_time(view.deleted_at),
        "expiresAfter": acr_time(view.expires_after),
        "mediaType": m.media_type,
        "tags": list(m.tags),
    }


def _deleted_tag_json(view: DeletedTagView) -> dict[str, Any]:
    return {
        "name": view.name,
        "digest": view.digest,
        "deletedTime": acr_time(view.deleted_at),
        "expiresAfter": acr_time(view.expires_after),
    }


def _restore_tag(body: bytes) -> str | None:
    """The optional ``{"tag": "<name>"}`` of a restore."""
    if not body.strip():
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HamnError(
            BODY_INVALID, 'the body is not JSON; send {"tag": "<name>"} or nothing'
        ) from None
    if not isinstance(doc, dict) or set(doc) - {"tag"}:
        raise HamnError(BODY_INVALID, 'the body must be {"tag": "<name>"} (or empty)')
    tag = doc.get("tag")
    if tag is None:
        return None
    if not isinstance(tag, str) or not tag:
        raise HamnError(BODY_INVALID, '"tag" must be a tag name')
    return tag


class AcrDeletedApi:
    """The ``/acr/v1/_deleted/`` routes over the recycle bin service."""

    def __init__(
        self, metadata: AcrMetadataService, recycle_bin: RecycleBinService, access: RequestAuth
    ) -> None:
        self.metadata = metadata
        self.recycle_bin = recycle_bin
        self.access = access
        self.endpoints: dict[tuple[str, bool, str], Handler] = {
            ("_manifests", False, "GET"): self.list_manifests,
            ("_tags", False, "GET"): self.list_tags,
            ("_manifests", True, "POST"): self.restore,
        }

    async def catalog(self, request: Request) -> Response:
        """``GET /acr/v1/_deleted/_catalog``: repositories holding deleted content."""
        target = await self.access.target(request, None)
        # Names only, as /acr/v1/_catalog: the catalog's access (route kind acr_metadata).
        await self.access.authorize(request, RouteKind.ACR_METADATA, None, target)
        assert target is not None
        n = page_size(request.query_params.get("n"))
        page = await self.recycle_bin.repositories(
            target.registry, n, request.query_params.get("last") or None
        )
        link: dict[str, str] = {}
        if page.more:
            link = next_link("/acr/v1/_deleted/_catalog", {"last": page.items[-1], "n": str(n)})
        return json_response({"repositories": page.items}, headers=link)

    def route(self, method: str, path: str) -> _Routed:
        """The handler ``method path`` reaches (pure: authorization needs it first)."""
        m = _ROUTE.match(path)
        if m is None:
            raise HamnError(NOT_FOUND, "no such endpoint in the ACR metadata API (_deleted)")
        handler = self.endpoints.get((m["kind"], m["ref"] is not None, method))
        if handler is None:
            raise HamnError(UNSUPPORTED, f"{method} is not supported on this endpoint")
        return _Routed(handler, m["name"], m["ref"] or "")

    async def dispatch(self, request: Request) -> Response:
        """Route ``/acr/v1/_deleted/<name>/_manifests[/<digest>]|_tags`` to its handler."""
        routed = self.route(request.method, request.url.path)
        found = await self.access.target(request, routed.name)
        await self.access.authorize(request, RouteKind.ACR_DELETED, routed.name, found)
        assert found is not None
        return await routed.handler(request, found, routed.name, routed.reference)

    async def list_manifests(self, request: Request, target: Target, name: str, _: str) -> Response:
        n = page_size(request.query_params.get("n"))
        page = await self.recycle_bin.manifests(target, n, request.query_params.get("last"))
        link: dict[str, str] = {}
        if page.more:
            query = {"last": page.items[-1].manifest.digest, "n": str(n)}
            link = next_link(f"/acr/v1/_deleted/{quote(name)}/_manifests", query)
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "manifests": [_deleted_manifest_json(v) for v in page.items],
            },
            headers=link,
        )

    async def list_tags(self, request: Request, target: Target, name: str, _: str) -> Response:
        n = page_size(request.query_params.get("n"))
        page = await self.recycle_bin.tags(target, n, request.query_params.get("last"))
        link: dict[str, str] = {}
        if page.more:
            query = {"last": page.items[-1].name, "n": str(n)}
            link = next_link(f"/acr/v1/_deleted/{quote(name)}/_tags", query)
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "tags": [_deleted_tag_json(v) for v in page.items],
            },
            headers=link,
        )

    async def restore(self, request: Request, target: Target, name: str, digest: str) -> Response:
        tag = _restore_tag(await read_small_body(request))
        manifest = await self.recycle_bin.restore(target, digest, tag)
        return json_response(
            {
                "registry": self.metadata.login_server(target.registry),
                "imageName": target.repository,
                "manifest": manifest_json(manifest),
            }
        )
