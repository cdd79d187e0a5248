"""The registry's read and write use cases: routing, manifests, tags, blobs, referrers.

Takes its collaborators (the metadata store, the blob driver) explicitly and
returns plain values; raises :class:`hamn.errors.HamnError` for every outcome a
client must see as a protocol error.

Locks (ACR's changeable attributes, SPEC §2) are decided here, for ``/v2/`` and
``/acr/v1/`` alike:

- ``writeEnabled=false`` on a repository refuses every manifest push and every
  delete in it; on a tag, any push under it and its deletion (untag, or deleting
  its manifest); on a manifest, its deletion. A tag is its own resource: moving
  a tag off a write-locked manifest is governed by the tag's lock, not the
  manifest's (ACR: the lock blocks overwriting and deleting *that* resource).
- ``deleteEnabled=false`` refuses deleting the resource; on a repository, deleting
  anything in it. Deleting a repository or a manifest refuses while anything it
  would take along is locked, and names each lock.
- ``readEnabled=false`` refuses pulling a manifest (by tag or digest) of that
  repository, tag or manifest. Blob pulls stay as they are.
- ``listEnabled=false`` hides the tag, manifest or repository from listings (the
  store's listing queries filter it).

Write checks are guards the store runs inside the write's own transaction, on the
attributes it reads there, so a PATCH racing a push ends in one order or the other.
Pull checks read the flags in the same statement that finds the manifest.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from hamn.errors import (
    BLOB_UNKNOWN,
    DIGEST_INVALID,
    LOCKED,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_UNKNOWN,
    NAME_INVALID,
    NAME_UNKNOWN,
    PAGINATION_INVALID,
    HamnError,
)
from hamn.metadata.models import AffectedContent, ChangeableAttributes, ManifestRecord, Registry
from hamn.metadata.store import Guard, MetadataStore, MissingReferences, QuotaExceeded
from hamn.oci.digest import digest_bytes, is_digest, parse_digest
from hamn.oci.manifest import OCI_INDEX, Descriptor, parse_manifest
from hamn.oci.names import is_valid_registry_name, validate_repository_name, validate_tag
from hamn.services.quota import Quotas, quota_error, quota_for
from hamn.services.soft_delete_policy import soft_delete_policy
from hamn.storage.base import BlobDriver

#: The most entries one page of tags or catalog returns, whatever ``n`` asks.
MAX_PAGE = 10_000

#: Attribute -> (ACR's key, the ``hamn repository update`` option that sets it).
_FLAGS = {
    "delete_enabled": ("deleteEnabled", "--delete-enabled"),
    "write_enabled": ("writeEnabled", "--write-enabled"),
    "read_enabled": ("readEnabled", "--read-enabled"),
    "list_enabled": ("listEnabled", "--list-enabled"),
}
#: The locks that refuse a delete, and those that refuse a push.
_DELETE_FLAGS = ("delete_enabled", "write_enabled")
_WRITE_FLAGS = ("write_enabled",)
#: How many locks one error names before it counts the rest.
_LOCKS_NAMED = 5


@dataclass(frozen=True, slots=True)
class Target:
    """Where a data-plane request goes: a registry and a repository in it."""

    registry: Registry
    repository: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest ready to send: its record and bytes."""

    record: ManifestRecord
    content: bytes


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob ready to send: a local path for zero-copy sends, or None to stream."""

    digest: str
    size: int
    path: str | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing (tags, repositories) and whether more entries follow it."""

    items: list[str]
    more: bool


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """The outcome of a manifest push."""

    digest: str
    subject_digest: str | None


class _TTLCache:
    """A small per-process cache of registry lookups; entries live ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Registry | None]] = {}

    def get(self, key: str) -> tuple[bool, Registry | None]:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: str, value: Registry | None) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)


class _ContentCache:
    """Manifest bytes by digest: immutable, so safe to keep in every process."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def get(self, digest: str) -> bytes | None:
        content = self._entries.get(digest)
        if content is not None:
            self._entries.move_to_end(digest)
        return content

    def put(self, digest: str, content: bytes) -> None:
        if len(content) > self.max_bytes // 8 or digest in self._entries:
            return
        self._entries[digest] = content
        self._bytes += len(content)
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)


@dataclass(frozen=True, slots=True)
class Lock:
    """A lock that refuses an operation: what is locked and which attributes are false."""

    kind: str  # "repository" | "tag" | "manifest"
    reference: str  # "app", "app:v1" or "app@sha256:..."
    flags: tuple[str, ...]  # attribute names, e.g. ("write_enabled",)


def find_locks(
    kind: str, reference: str, attributes: ChangeableAttributes, flags: tuple[str, ...]
) -> list[Lock]:
    """The lock on one resource among ``flags`` (empty when none of them is false)."""
    found = tuple(flag for flag in flags if not getattr(attributes, flag))
    return [Lock(kind, reference, found)] if found else []


def locked_error(registry: Registry, refused: str, locks: list[Lock]) -> HamnError:
    """LOCKED, naming every lock (up to a few) and the command that lifts the first."""

    def describe(lock: Lock) -> str:
        keys = " and ".join(f"{_FLAGS[f][0]}=false" for f in lock.flags)
        return f"{lock.kind} {lock.reference!r} is locked ({keys})"

    named = "; ".join(describe(lock) for lock in locks[:_LOCKS_NAMED])
    if len(locks) > _LOCKS_NAMED:
        named += f"; and {len(locks) - _LOCKS_NAMED} more"
    first = locks[0]
    which = "--repository" if first.kind == "repository" else "--image"
    options = " ".join(f"{_FLAGS[f][1]} true" for f in first.flags)
    command = f"hamn repository update -n {registry.name} {which} {first.reference} {options}"
    also = " (and likewise for each lock named)" if len(locks) > 1 else ""
    return HamnError(
        LOCKED,
        f"{refused}: {named}. Unlock it with `{command}`{also}",
        detail={
            "locked": [
                {
                    "kind": lock.kind,
                    "name": lock.reference,
                    "attributes": [_FLAGS[f][0] for f in lock.flags],
                }
                for lock in locks
            ]
        },
    )


def _tag_ref(repository: str, tag: str) -> str:
    return f"{repository}:{tag}"


def _digest_ref(repository: str, digest: str) -> str:
    return f"{repository}@{digest}"


def push_guard(registry: Registry, reference: str) -> Guard:
    """Refuse a manifest push into a write-locked repository or under a write-locked tag."""

    def guard(found: AffectedContent) -> None:
        repo = found.repository
        locks = find_locks("repository", repo, found.attributes, _WRITE_FLAGS)
        for tag, attributes in found.tags:
            locks += find_locks("tag", _tag_ref(repo, tag), attributes, _WRITE_FLAGS)
        if locks:
            where = (
                _digest_ref(repo, reference) if is_digest(reference) else _tag_ref(repo, reference)
            )
            raise locked_error(registry, f"cannot push a manifest to {where!r}", locks)

    return guard


def delete_guard(registry: Registry, refused: str) -> Guard:
    """Refuse a delete while the repository, or anything the delete takes along, is
    delete- or write-locked; the error names every lock."""

    def guard(found: AffectedContent) -> None:
        repo = found.repository
        locks = find_locks("repository", repo, found.attributes, _DELETE_FLAGS)
        for digest, attributes in found.manifests:
            locks += find_locks("manifest", _digest_ref(repo, digest), attributes, _DELETE_FLAGS)
        for tag, attributes in found.tags:
            locks += find_locks("tag", _tag_ref(repo, tag), attributes, _DELETE_FLAGS)
        if locks:
            raise locked_error(registry, refused, locks)

    return guard


async def soft_deletes(store: MetadataStore, registry: Registry) -> bool:
    """Whether the registry's soft-delete policy is on: deletes go to the recycle bin
    (:mod:`hamn.services.recycle_bin`). Read per delete, so a change applies at once."""
    return soft_delete_policy(await store.registry_policies(registry.id)).enabled


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first``, then the rest of the stream it came from."""
    if first:
        yield first
    async for chunk in rest:
        yield chunk


def _page(entries: list[str], n: int | None) -> Page:
    """Cut a look-ahead query's result (up to ``n + 1`` entries) to a page of ``n``."""
    if n is None or len(entries) <= n:
        return Page(entries, more=False)
    return Page(entries[:n], more=True)


class RegistryService:
    """Pull, push (manifests), delete, list and discover content in a registry."""

    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobDriver,
        *,
        domain: str,
        default_registry: str | None,
        registry_cache_ttl: float = 1.0,
        manifest_cache_bytes: int = 64 * 1024 * 1024,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.quotas: Quotas = quotas or {}
        self.blobs = blobs
        self.domain = domain.lower().strip(".")
        self.default_registry = default_registry
        self._registries = _TTLCache(registry_cache_ttl)
        self._contents = _ContentCache(manifest_cache_bytes)

    # -- routing (SPEC §3.5) --------------------------------------------------
    async def registry(self, name: str) -> Registry | None:
        """The registry named ``name`` (cached for a moment), or None."""
        key = name.lower()
        hit, value = self._registries.get(key)
        if not hit:
            value = await self.store.get_registry(key)
            self._registries.put(key, value)
        return value

    def _login_server_registry(self, host: str | None) -> str | None:
        if not host:
            return None
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        hostname = hostname.lower().rstrip(".")
        suffix = "." + self.domain
        if hostname.endswith(suffix):
            name = hostname[: -len(suffix)]
            if is_valid_registry_name(name):
                return name
        return None

    async def resolve_registry(self, host: str | None) -> Registry:
        """The registry a request without a repository (``/v2/``, catalog) is for."""
        by_host = self._login_server_registry(host)
        if by_host is not None:
            registry = await self.registry(by_host)
            if registry is not None:
                return registry
        if self.default_registry is not None:
            registry = await self.registry(self.default_registry)
            if registry is not None:
                return registry
        raise HamnError(NAME_UNKNOWN, "no registry answers at this address")

    async def resolve(self, host: str | None, name: str) -> Target:
        """Route ``/v2/<name>/...``: by login server, by first path segment, or the default."""
        by_host = self._login_server_registry(host)
        if by_host is not None:
            registry = await self.registry(by_host)
            if registry is not None:
                return Target(registry, validate_repository_name(name))
        first, sep, rest = name.partition("/")
        if sep and is_valid_registry_name(first):
            registry = await self.registry(first)
            if registry is not None:
                return Target(registry, validate_repository_name(rest))
        if self.default_registry is not None:
            registry = await self.registry(self.default_registry)
            if registry is not None:
                return Target(registry, validate_repository_name(name))
        validate_repository_name(name)
        raise HamnError(
            NAME_UNKNOWN,
            f"no registry named {first!r}; address repositories as <host>/<registry>/<repository>",
            detail={"name": name},
        )

    async def mount_source(self, host: str | None, name: str) -> Target | None:
        """Where a mount's ``from=`` points, or None when it names no repository.

        A ``from`` that is not a valid repository name cannot be mounted from;
        the spec's answer to a mount that cannot happen is a plain upload
        session (202), not an error.
        """
        try:
            return await self.resolve(host, name)
        except HamnError as exc:
            if exc.code in (NAME_INVALID, NAME_UNKNOWN):
                return None
            raise

    # -- manifests --------------------------------------------------------------
    async def get_manifest(self, target: Target, reference: str) -> Manifest:
        """The manifest a tag or digest names in the repository."""
        record = await self._find_manifest(target, reference)
        content = self._contents.get(record.digest)
        if content is None:
            content = await self.store.manifest_content(record.id)
            if content is None:  # deleted between the two reads
                raise self._manifest_unknown(reference)
            self._contents.put(record.digest, content)
        return Manifest(record, content)

    async def head_manifest(self, target: Target, reference: str) -> ManifestRecord:
        """The record (digest, type, size) of the manifest a tag or digest names."""
        return await self._find_manifest(target, reference)

    async def _find_manifest(self, target: Target, reference: str) -> ManifestRecord:
        reg, repo = target.registry.id, target.repository
        if is_digest(reference):
            digest = str(parse_digest(reference))
            record = await self.store.get_manifest(reg, repo, digest=digest)
        else:
            record = await self.store.get_manifest(reg, repo, tag=validate_tag(reference))
        if record is None:
            raise self._manifest_unknown(reference)
        if not (
            record.repository_read_enabled
            and record.manifest_read_enabled
            and record.tag_read_enabled
        ):
            raise self._read_locked(target, reference, record)
        return record

    @staticmethod
    def _read_locked(target: Target, reference: str, record: ManifestRecord) -> HamnError:
        repo = target.repository
        read = ("read_enabled",)
        locks = find_locks(
            "repository",
            repo,
            ChangeableAttributes(read_enabled=record.repository_read_enabled),
            read,
        )
        if not is_digest(reference):
            locks += find_locks(
                "tag",
                _tag_ref(repo, reference),
                ChangeableAttributes(read_enabled=record.tag_read_enabled),
                read,
            )
        locks += find_locks(
            "manifest",
            _digest_ref(repo, record.digest),
            ChangeableAttributes(read_enabled=record.manifest_read_enabled),
            read,
        )
        where = _digest_ref(repo, reference) if is_digest(reference) else _tag_ref(repo, reference)
        return locked_error(target.registry, f"cannot pull {where!r}", locks)

    @staticmethod
    def _manifest_unknown(reference: str) -> HamnError:
        return HamnError(
            MANIFEST_UNKNOWN,
            f"manifest {reference[:200]!r} is not in this repository",
            detail={"reference": reference[:200]},
        )

    async def put_manifest(
        self, target: Target, reference: str, content_type: str | None, body: bytes
    ) -> StoredManifest:
        """Validate and store a manifest under a tag or its digest."""
        tag: str | None = None
        if is_digest(reference):
            expected = parse_digest(reference)
            digest = digest_bytes(body, expected.algorithm)
            if digest != str(expected):
                raise HamnError(
                    DIGEST_INVALID,
                    f"the manifest's digest is {digest}, not {expected}",
                    detail={"expected": str(expected), "actual": digest},
                )
        else:
            tag = validate_tag(reference)
            digest = digest_bytes(body)
        parsed = parse_manifest(body, content_type)
        try:
            await self.store.put_manifest(
                target.registry.id,
                target.repository,
                digest=digest,
                media_type=parsed.media_type,
                artifact_type=parsed.artifact_type,
                subject_digest=parsed.subject.digest if parsed.subject else None,
                content=body,
                annotations=parsed.annotations,
                blobs=[d.digest for d in parsed.blobs],
                children=[d.digest for d in parsed.manifests],
                tag=tag,
                guard=push_guard(target.registry, reference),
                quota=quota_for(self.quotas, target.registry),
            )
        except QuotaExceeded as exc:
            raise quota_error(target.registry, exc) from None
        except MissingReferences as exc:
            what = [f"blob {d}" for d in exc.blobs] + [f"manifest {d}" for d in exc.manifests]
            raise HamnError(
                MANIFEST_BLOB_UNKNOWN,
                "the manifest references content this repository does not have: "
                + ", ".join(what[:10])
                + (" ..." if len(what) > 10 else "")
                + "; push it (or mount it) first",
                detail={"blobs": exc.blobs, "manifests": exc.manifests},
            ) from None
        self._contents.put(digest, body)
        return StoredManifest(digest, parsed.subject.digest if parsed.subject else None)

    async def delete_manifest(self, target: Target, reference: str) -> None:
        """Delete a manifest by digest (with its tags), or just a tag by name."""
        reg, repo = target.registry.id, target.repository
        if is_digest(reference):
            digest = str(parse_digest(reference))
            guard = delete_guard(
                target.registry, f"cannot delete manifest {_digest_ref(repo, digest)!r}"
            )
            soft = await soft_deletes(self.store, target.registry)
            deleted = await self.store.delete_manifest(reg, repo, digest, guard=guard, soft=soft)
        else:
            tag = validate_tag(reference)
            guard = delete_guard(target.registry, f"cannot delete tag {_tag_ref(repo, tag)!r}")
            soft = await soft_deletes(self.store, target.registry)
            deleted = await self.store.delete_tag(reg, repo, tag, guard=guard, soft=soft)
        if not deleted:
            raise self._manifest_unknown(reference)

    # -- listings ----------------------------------------------------------------
    @staticmethod
    def page_size(n: str | None) -> int | None:
        """Parse the ``n`` query parameter."""
        if n is None or n == "":
            return None
        try:
            value = int(n)
        except ValueError:
            raise HamnError(PAGINATION_INVALID, "n must be a whole number") from None
        if value < 0:
            raise HamnError(PAGINATION_INVALID, "n must not be negative")
        return min(value, MAX_PAGE)

    async def list_tags(self, target: Target, n: int | None, last: str | None) -> Page:
        """A page of tags in lexical order."""
        if n == 0:
            if not await self.store.repository_exists(target.registry.id, target.repository):
                raise self._name_unknown(target)
            return Page([], more=False)
        # One entry more than asked tells whether another page follows.
        tags = await self.store.list_tags(
            target.registry.id, target.repository, None if n is None else n + 1, last
        )
        if tags is None:
            raise self._name_unknown(target)
        return _page(tags, n)

    async def catalog(self, registry: Registry, n: int | None, last: str | None) -> Page:
        """A page of repository names in lexical order."""
        if n == 0:
            return Page([], more=False)
        names = await self.store.list_repositories(registry.id, None if n is None else n + 1, last)
        return _page(names, n)

    @staticmethod
    def _name_unknown(target: Target) -> HamnError:
        return HamnError(
            NAME_UNKNOWN,
            f"repository {target.repository!r} is not known to registry {target.registry.name!r}",
            detail={"name": target.repository},
        )

    async def referrers(self, target: Target, subject: str, artifact_type: str | None) -> bytes:
        """The referrers of ``subject`` as an OCI image index (empty when there are none)."""
        digest = str(parse_digest(subject))
        found = await self.store.referrers(target.registry.id, target.repository, digest) or []
        manifests = [
            Descriptor(
                ref.media_type, ref.digest, ref.size, ref.artifact_type, ref.annotations
            ).to_json()
            for ref in found
            if artifact_type is None or ref.artifact_type == artifact_type
        ]
        return orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})

    # -- blobs -------------------------------------------------------------------
    async def stat_blob(self, target: Target, digest: str) -> Blob:
        """The blob if the repository may serve it (BLOB_UNKNOWN otherwise)."""
        digest = str(parse_digest(digest))
        size = await self.store.linked_blob_size(target.registry.id, target.repository, digest)
        if size is None:
            raise HamnError(
                BLOB_UNKNOWN,
                f"blob {digest} is not in repository {target.repository!r}",
                detail={"digest": digest},
            )
        return Blob(digest, size, self.blobs.local_path(digest))

    async def read_blob(
        self, blob: Blob, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (when it has no local path), the first part already
        read: storage that fails at once fails here, before a response has begun (a
        503 the client retries), not as a 200 that breaks off."""
        stream = self.blobs.read(blob.digest, offset, length)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = b""
        return _prepend(first, stream)

    async def delete_blob(self, target: Target, digest: str) -> None:
        """Unlink a blob from the repository (bytes go when nothing references them)."""
        digest = str(parse_digest(digest))
        guard = delete_guard(
            target.registry, f"cannot delete blob {digest} from {target.repository!r}"
        )
        if not await self.store.unlink_blob(
            target.registry.id, target.repository, digest, guard=guard
        ):
            raise HamnError(
                BLOB_UNKNOWN,
                f"blob {digest} is not in repository {target.repository!r}",
                detail={"digest": digest},
            )
