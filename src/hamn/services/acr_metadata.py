"""ACR's metadata API (SPEC §3.7): repository, tag and manifest attributes; read,
change (the locks, ``PATCH``) and delete.

The use cases behind ``/acr/v1/...``. Listings page through thousands of entries
with ``n``/``last`` and ``orderby=timeasc|timedesc``; a page costs one or two
SQL queries whatever its length. A manifest's architecture and OS come from its
image config blob, read once per config digest (content is immutable) and
cached in the process.

Changeable attributes (``deleteEnabled``, ``writeEnabled``, ``readEnabled``,
``listEnabled``) are stored per repository, tag and manifest and shown as stored;
listings leave out what is not list-enabled. Deletes here obey the same locks as
``/v2/`` (the guards of :mod:`hamn.services.registry`). Changing an attribute does
not move ``lastUpdateTime``, which stays the time of the last push.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import orjson

from hamn.errors import (
    BODY_INVALID,
    MANIFEST_UNKNOWN,
    NAME_UNKNOWN,
    PAGINATION_INVALID,
    PARAMETER_INVALID,
    TAG_UNKNOWN,
    UNSUPPORTED,
    HamnError,
)
from hamn.metadata.models import (
    AttributeChanges,
    ChangeableAttributes,
    DeletedRepository,
    ListOrder,
    ManifestInfo,
    Registry,
    RepositoryInfo,
    TagInfo,
)
from hamn.metadata.store import MetadataStore
from hamn.oci.digest import is_digest, parse_digest
from hamn.oci.manifest import INDEX_TYPES, ParsedManifest, parse_manifest
from hamn.oci.names import validate_tag
from hamn.services.registry import Target, delete_guard, soft_deletes
from hamn.storage.base import BlobDriver, StorageError

#: Entries per page when the request has no ``n`` (the page size the Azure CLI asks for).
DEFAULT_PAGE = 100
#: The most entries one page returns, whatever ``n`` asks (ACR's cap).
MAX_PAGE = 1000

#: Config media types whose JSON carries ``architecture`` and ``os``.
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
#: Configs larger than this are not read for their platform (image configs are KiBs).
MAX_CONFIG_BYTES = 1024 * 1024

_ORDERS: dict[str, ListOrder] = {
    "": "name",
    "none": "name",
    "timeasc": "timeasc",
    "timedesc": "timedesc",
}

#: The largest PATCH body taken (four booleans need some 90 bytes).
MAX_ATTRIBUTES_BODY = 4096
#: ACR's keys of the changeable attributes -> the attribute they set.
ATTRIBUTE_KEYS = {
    "deleteEnabled": "delete_enabled",
    "writeEnabled": "write_enabled",
    "readEnabled": "read_enabled",
    "listEnabled": "list_enabled",
}
#: ACR's quarantine keys, which the same PATCH accepts.
QUARANTINE_KEYS = frozenset({"quarantineState", "quarantineDetails"})
_KEYS_TEXT = "deleteEnabled, writeEnabled, readEnabled or listEnabled (true or false)"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and whether more entries follow it."""

    items: list[T]
    more: bool


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository's attributes."""

    login_server: str
    info: RepositoryInfo
    attributes: ChangeableAttributes


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag's attributes."""

    info: TagInfo
    signed: bool
    attributes: ChangeableAttributes


@dataclass(frozen=True, slots=True)
class Platform:
    """Architecture and operating system (None when the content does not say)."""

    architecture: str | None
    os: str | None


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest an index lists, with the platform the index gives it."""

    digest: str
    platform: Platform


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest's attributes.

    ``image_size`` is the sum of the sizes the manifest declares for what it
    references: config and layers for an image, child manifests for an index.
    ``references`` is None for anything but an index.
    """

    digest: str
    media_type: str
    config_media_type: str | None
    image_size: int
    created_at: datetime
    updated_at: datetime
    platform: Platform
    tags: tuple[str, ...]
    references: tuple[Reference, ...] | None
    attributes: ChangeableAttributes


@dataclass(frozen=True, slots=True)
class _Summary:
    """What the listing needs from a manifest's bytes (immutable, so cached by digest)."""

    config_digest: str | None
    config_media_type: str | None
    config_size: int
    image_size: int
    references: tuple[Reference, ...] | None


_UNKNOWN_PLATFORM = Platform(None, None)


class _LRU(Generic[T]):
    """A bounded map of values for immutable content, least recently used out first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, T] = OrderedDict()

    def get(self, key: str) -> T | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: T) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _summarise(info: ManifestInfo) -> _Summary:
    """Sizes, config and index entries of a stored manifest."""
    try:
        parsed: ParsedManifest | None = parse_manifest(info.content, info.media_type)
    except HamnError:
        # Every stored manifest passed this parser; one that no longer does
        # (a stricter parser) is listed without sizes rather than failing the page.
        parsed = None
    if parsed is None:
        return _Summary(None, None, 0, 0, None)
    size = sum(d.size for d in (*parsed.layers, *parsed.manifests))
    references = None
    if parsed.media_type in INDEX_TYPES:
        references = tuple(Reference(d.digest, _platform_of(d.platform)) for d in parsed.manifests)
    config = parsed.config
    if config is None:
        return _Summary(None, None, 0, size, references)
    return _Summary(config.digest, config.media_type, config.size, size + config.size, references)


def _platform_of(doc: object) -> Platform:
    """The platform an image config or an index entry's ``platform`` names."""
    if not isinstance(doc, dict):
        return _UNKNOWN_PLATFORM
    arch, os_ = doc.get("architecture"), doc.get("os")
    return Platform(
        arch if isinstance(arch, str) and arch else None,
        os_ if isinstance(os_, str) and os_ else None,
    )


def parse_order(value: str | None) -> ListOrder:
    """Parse ``orderby``: absent or ``none`` is by name; ``timeasc`` or ``timedesc``."""
    order = _ORDERS.get((value or "").strip().lower())
    if order is None:
        raise HamnError(
            PARAMETER_INVALID,
            "orderby must be timeasc, timedesc or none",
            detail={"orderby": (value or "")[:100]},
        )
    return order


def page_size(n: str | None) -> int:
    """Parse ``n``: absent means 100; more than 1000 means 1000; 0 means an empty page."""
    if n is None or n == "":
        return DEFAULT_PAGE
    try:
        value = int(n)
    except ValueError:
        raise HamnError(PAGINATION_INVALID, "n must be a whole number") from None
    if value < 0:
        raise HamnError(PAGINATION_INVALID, "n must not be negative")
    return min(value, MAX_PAGE)


def body_too_large(size: int | None) -> HamnError:
    """The refusal of a PATCH body over :data:`MAX_ATTRIBUTES_BODY` (``size`` if known)."""
    said = f"{size} bytes" if size is not None else "too large"
    return HamnError(
        BODY_INVALID,
        f"the body is {said}; a PATCH body is at most {MAX_ATTRIBUTES_BODY} bytes",
        detail={"limit": MAX_ATTRIBUTES_BODY},
    )


def parse_attribute_changes(body: bytes) -> AttributeChanges:
    """Parse a ``PATCH`` body strictly: a JSON object of ACR's attribute keys with
    booleans, at least one. Quarantine keys are UNSUPPORTED (not available yet)."""
    if len(body) > MAX_ATTRIBUTES_BODY:
        raise body_too_large(None)
    if not body.strip():
        raise HamnError(BODY_INVALID, f"the body is empty; send a JSON object of {_KEYS_TEXT}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HamnError(
            BODY_INVALID, f"the body is not JSON; send an object of {_KEYS_TEXT}"
        ) from None
    if not isinstance(doc, dict):
        raise HamnError(BODY_INVALID, f"the body must be a JSON object of {_KEYS_TEXT}")
    unknown = sorted(k for k in doc if k not in ATTRIBUTE_KEYS and k not in QUARANTINE_KEYS)
    if unknown:
        hint = ""
        if "changeableAttributes" in unknown:
            hint = " (send them at the top level, not inside changeableAttributes)"
        raise HamnError(
            BODY_INVALID,
            f"unknown key(s) {', '.join(unknown)[:200]}: a PATCH sets {_KEYS_TEXT}{hint}",
            detail={"unknown": [k[:100] for k in unknown[:20]]},
        )
    if any(k in QUARANTINE_KEYS for k in doc):
        raise HamnError(
            UNSUPPORTED,
            "quarantine is not available yet: quarantineState and quarantineDetails "
            f"cannot be set; a PATCH sets {_KEYS_TEXT}",
        )
    if not doc:
        raise HamnError(
            BODY_INVALID, f"the body changes nothing; give at least one of {_KEYS_TEXT}"
        )
    not_boolean = sorted(k for k, v in doc.items() if not isinstance(v, bool))
    if not_boolean:
        raise HamnError(
            BODY_INVALID,
            f"{', '.join(not_boolean)} must be true or false (JSON booleans)",
            detail={"invalid": [k[:100] for k in not_boolean[:20]]},
        )
    return AttributeChanges(**{ATTRIBUTE_KEYS[k]: v for k, v in doc.items()})


def _page(items: list[T], n: int) -> Page[T]:
    """Cut a look-ahead query's result (up to ``n + 1`` entries) to a page of ``n``."""
    if n == 0:  # an empty page has no entry to continue after
        return Page([], more=False)
    return Page(items[:n], more=len(items) > n)


class AcrMetadataService:
    """Read and delete repositories, tags and manifests the way ACR's ``/acr/v1`` does."""

    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobDriver,
        *,
        domain: str,
        summary_cache_entries: int = 16_384,
        platform_cache_entries: int = 65_536,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.domain = domain.lower().strip(".")
        self._summaries: _LRU[_Summary] = _LRU(summary_cache_entries)
        self._platforms: _LRU[Platform] = _LRU(platform_cache_entries)
        # A page of 1,000 new images reads 1,000 configs: a few at a time, not 1,000 files open.
        self._config_reads = asyncio.Semaphore(16)

    def login_server(self, registry: Registry) -> str:
        """The registry's login server, ``<name>.<domain>`` (ACR's ``registry`` key)."""
        return f"{registry.name.lower()}.{self.domain}"

    # -- catalog -------------------------------------------------------------------
    async def catalog(self, registry: Registry, n: int, last: str | None) -> Page[str]:
        """A page of repository names in lexical order."""
        if n == 0:
            return Page([], more=False)
        return _page(await self.store.list_repositories(registry.id, n + 1, last), n)

    # -- repositories --------------------------------------------------------------
    async def repository(self, target: Target) -> Repository:
        """The repository's attributes and counts."""
        info = await self.store.repository_info(target.registry.id, target.repository)
        if info is None:
            raise self._name_unknown(target)
        return Repository(self.login_server(target.registry), info, info.attributes)

    async def update_repository(self, target: Target, changes: AttributeChanges) -> Repository:
        """Change the repository's attributes; the repository as it now is."""
        reg, repo = target.registry.id, target.repository
        if await self.store.set_attributes(reg, repo, changes) is None:
            raise self._name_unknown(target)
        return await self.repository(target)

    async def delete_repository(self, target: Target) -> DeletedRepository:
        """Delete every manifest and tag of the repository, and the repository itself,
        unless it or anything in it is locked."""
        guard = delete_guard(target.registry, f"cannot delete repository {target.repository!r}")
        deleted = await self.store.delete_repository(
            target.registry.id,
            target.repository,
            guard=guard,
            soft=await soft_deletes(self.store, target.registry),
        )
        if deleted is None:
            raise self._name_unknown(target)
        return deleted

    # -- tags ----------------------------------------------------------------------
    async def tags(
        self,
        target: Target,
        n: int,
        order: ListOrder,
        last: str | None = None,
        last_time: datetime | None = None,
        digest: str | None = None,
    ) -> Page[Tag]:
        """A page of tags after ``last`` in ``order``, only those on ``digest`` if given.

        A time-ordered page continues after (``last_time``, ``last``). Without
        ``last_time`` the tag ``last`` is looked up for its time, as ACR's
        clients send only ``last``; hamn's Link carries the time too, so a tag
        re-pushed or deleted between two pages neither hides nor repeats others.
        """
        reg, repo = target.registry.id, target.repository
        if digest is not None:
            digest = str(parse_digest(digest))
        if last == "":
            last = None
        if order != "name" and last is not None and last_time is None:
            found = await self.store.get_tag(reg, repo, last)
            if found is None:
                raise await self._unknown_last(target, "tag", last, order)
            last_time = found.updated_at
        found_tags = await self.store.tag_page(
            reg,
            repo,
            limit=n + 1,
            order=order,
            last=last,
            last_time=last_time,
            digest=digest,
        )
        if found_tags is None:
            raise self._name_unknown(target)
        page = _page(found_tags, n)
        return Page([self._tag(info) for info in page.items], page.more)

    async def tag(self, target: Target, name: str) -> Tag:
        """One tag's attributes."""
        name = validate_tag(name)
        info = await self.store.get_tag(target.registry.id, target.repository, name)
        if info is None:
            raise await self._tag_unknown(target, name)
        return self._tag(info)

    async def update_tag(self, target: Target, name: str, changes: AttributeChanges) -> Tag:
        """Change the tag's attributes; the tag as it now is."""
        name = validate_tag(name)
        reg, repo = target.registry.id, target.repository
        if await self.store.set_attributes(reg, repo, changes, tag=name) is None:
            raise await self._tag_unknown(target, name)
        return await self.tag(target, name)

    async def delete_tag(self, target: Target, name: str) -> None:
        """Untag: the manifest and its layers stay. Refused while the tag or the
        repository is delete- or write-locked."""
        name = validate_tag(name)
        repo = target.repository
        guard = delete_guard(target.registry, f"cannot delete tag {repo + ':' + name!r}")
        soft = await soft_deletes(self.store, target.registry)
        if not await self.store.delete_tag(target.registry.id, repo, name, guard=guard, soft=soft):
            raise await self._tag_unknown(target, name)

    @staticmethod
    def _tag(info: TagInfo) -> Tag:
        # Content trust (signed) arrives with the supply-chain work (SPEC §8.3).
        return Tag(info, signed=False, attributes=info.attributes)

    # -- manifests -----------------------------------------------------------------
    async def manifests(
        self,
        target: Target,
        n: int,
        order: ListOrder,
        last: str | None = None,
        last_time: datetime | None = None,
    ) -> Page[Manifest]:
        """A page of manifests (with tags, sizes and platforms) after the digest ``last``."""
        reg, repo = target.registry.id, target.repository
        if last == "":
            last = None
        if order != "name" and last is not None and last_time is None:
            record = None
            if is_digest(last):
                record = await self.store.get_manifest(reg, repo, digest=last)
            if record is None:
                raise await self._unknown_last(target, "manifest", last, order)
            last_time = record.created_at
        found = await self.store.manifest_page(
            reg, repo, limit=n + 1, order=order, last=last, last_time=last_time
        )
        if found is None:
            raise self._name_unknown(target)
        page = _page(found, n)
        return Page(await self._describe(page.items), page.more)

    async def manifest(self, target: Target, digest: str) -> Manifest:
        """One manifest's attributes."""
        digest = str(parse_digest(digest))
        info = await self.store.get_manifest_info(target.registry.id, target.repository, digest)
        if info is None:
            raise await self._manifest_unknown(target, digest)
        return (await self._describe([info]))[0]

    async def update_manifest(
        self, target: Target, digest: str, changes: AttributeChanges
    ) -> Manifest:
        """Change the manifest's attributes; the manifest as it now is."""
        digest = str(parse_digest(digest))
        reg, repo = target.registry.id, target.repository
        if await self.store.set_attributes(reg, repo, changes, digest=digest) is None:
            raise await self._manifest_unknown(target, digest)
        return await self.manifest(target, digest)

    async def delete_manifest(self, target: Target, digest: str) -> None:
        """Delete the manifest and every tag on it (as ``DELETE /v2/<name>/manifests/<digest>``),
        unless it, one of its tags or the repository is delete- or write-locked."""
        digest = str(parse_digest(digest))
        repo = target.repository
        guard = delete_guard(target.registry, f"cannot delete manifest {repo + '@' + digest!r}")
        soft = await soft_deletes(self.store, target.registry)
        reg = target.registry.id
        if not await self.store.delete_manifest(reg, repo, digest, guard=guard, soft=soft):
            raise await self._manifest_unknown(target, digest)

    async def describe(self, infos: list[ManifestInfo]) -> list[Manifest]:
        """Manifests as the listings show them (sizes, platforms), e.g. deleted ones."""
        return await self._describe(infos)

    async def _describe(self, infos: list[ManifestInfo]) -> list[Manifest]:
        summaries = [self._summary(info) for info in infos]
        await self._load_platforms(
            (s.config_digest, s.config_media_type, s.config_size) for s in summaries
        )
        out = []
        for info, summary in zip(infos, summaries, strict=True):
            platform = _UNKNOWN_PLATFORM
            if summary.config_digest is not None:
                platform = self._platforms.get(summary.config_digest) or _UNKNOWN_PLATFORM
            out.append(
                Manifest(
                    digest=info.digest,
                    media_type=info.media_type,
                    config_media_type=summary.config_media_type,
                    image_size=summary.image_size,
                    created_at=info.created_at,
                    # A manifest's content never changes; attribute changes do not
                    # count as updates (see the module docstring).
                    updated_at=info.created_at,
                    platform=platform,
                    tags=info.tags,
                    references=summary.references,
                    attributes=info.attributes,
                )
            )
        return out

    def _summary(self, info: ManifestInfo) -> _Summary:
        # Keyed by type too: bytes without a mediaType are read as the type they were pushed as.
        key = f"{info.media_type} {info.digest}"
        summary = self._summaries.get(key)
        if summary is None:
            summary = _summarise(info)
            self._summaries.put(key, summary)
        return summary

    async def _load_platforms(self, configs: Iterable[tuple[str | None, str | None, int]]) -> None:
        """Read the image configs not in the cache yet, concurrently."""
        wanted: dict[str, None] = {}
        for digest, media_type, size in configs:
            if (
                digest is not None
                and media_type in IMAGE_CONFIG_TYPES
                and size <= MAX_CONFIG_BYTES
                and self._platforms.get(digest) is None
            ):
                wanted[digest] = None
        if wanted:
            await asyncio.gather(*(self._load_platform(d) for d in wanted))

    async def _load_platform(self, digest: str) -> None:
        parts: list[bytes] = []
        size = 0
        try:
            async with self._config_reads:
                chunks = self.blobs.read(digest)
                try:
                    async for chunk in chunks:
                        size += len(chunk)
                        if size > MAX_CONFIG_BYTES:  # larger than its descriptor said
                            break
                        parts.append(chunk)
                finally:
                    # Close the driver's reader now (its file), not when it is collected.
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()
        except StorageError:
            # Metadata stays listable while blob storage is not answering; the
            # platform is left unknown (and not cached, so a later page finds it).
            return
        doc = None
        if size <= MAX_CONFIG_BYTES:
            with contextlib.suppress(orjson.JSONDecodeError):
                doc = orjson.loads(b"".join(parts))
        self._platforms.put(digest, _platform_of(doc))

    # -- errors ----------------------------------------------------------------------
    async def _unknown_last(
        self, target: Target, kind: str, last: str, order: ListOrder
    ) -> HamnError:
        if not await self.store.repository_exists(target.registry.id, target.repository):
            return self._name_unknown(target)
        return HamnError(
            PARAMETER_INVALID,
            f"last={last[:200]!r} names no {kind} in the repository; with orderby={order} "
            f"a page continues after an existing {kind} (follow the Link header, which "
            "also carries its time)",
            detail={"last": last[:200]},
        )

    async def _tag_unknown(self, target: Target, name: str) -> HamnError:
        if not await self.store.repository_exists(target.registry.id, target.repository):
            return self._name_unknown(target)
        return HamnError(
            TAG_UNKNOWN,
            f"tag {name!r} is not in repository {target.repository!r}",
            detail={"tag": name},
        )

    async def _manifest_unknown(self, target: Target, digest: str) -> HamnError:
        if not await self.store.repository_exists(target.registry.id, target.repository):
            return self._name_unknown(target)
        return HamnError(
            MANIFEST_UNKNOWN,
            f"manifest {digest} is not in repository {target.repository!r}",
            detail={"digest": digest},
        )

    @staticmethod
    def _name_unknown(target: Target) -> HamnError:
        return HamnError(
            NAME_UNKNOWN,
            f"repository {target.repository!r} is not known to registry {target.registry.name!r}",
            detail={"name": target.repository},
        )
