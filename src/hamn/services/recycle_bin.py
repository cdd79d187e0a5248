"""Soft delete's recycle bin (ACR's ``/acr/v1/_deleted/...``): list and restore.

While a registry's soft-delete policy (:mod:`hamn.services.soft_delete_policy`) is
enabled, deleting a manifest (by digest through ``/v2/`` or ``/acr/v1``, or with
its repository) and untagging move the content to the recycle bin instead of
removing it (``MetadataStore.delete_manifest(soft=True)`` and friends): the manifest
keeps its row with ``deleted_at`` set, and so its references and its share of the
registry's usage; its tags move to ``deleted_tags``. Every read of live content
leaves it out. With the policy disabled, deletes remove content as before.

Deleted content is listed here with ``expiresAfter`` (deleted time + the policy's
``retentionDays``) and restorable until garbage collection purges it for good
through the hard delete (:mod:`hamn.services.gc`; usage then drops). The purge
follows the ``retentionDays`` last set whether or not the policy is still enabled:
disabling it stops new soft deletes, not the emptying of the recycle bin.

Pushing a digest that is in the recycle bin makes it live again (its deleted tags
stay in the recycle bin, restorable one by one with ``{"tag": ...}``); restoring it
afterwards is a conflict (409), since it is live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from hamn.errors import ALREADY_EXISTS, MANIFEST_UNKNOWN, NAME_UNKNOWN, TAG_UNKNOWN, HamnError
from hamn.metadata.models import Registry
from hamn.metadata.store import MetadataStore
from hamn.oci.digest import parse_digest
from hamn.oci.names import validate_tag
from hamn.services.acr_metadata import AcrMetadataService, Manifest, Page
from hamn.services.registry import Target
from hamn.services.soft_delete_policy import soft_delete_policy


@dataclass(frozen=True, slots=True)
class DeletedManifestView:
    """A manifest in the recycle bin as listed: its attributes, the tags it had, and
    when it was deleted and may be purged."""

    manifest: Manifest
    deleted_at: datetime
    expires_after: datetime


@dataclass(frozen=True, slots=True)
class DeletedTagView:
    """A tag in the recycle bin, the digest it pointed at, and its times."""

    name: str
    digest: str
    deleted_at: datetime
    expires_after: datetime


T = TypeVar("T")


def _page(items: list[T], n: int) -> Page[T]:
    if n == 0:
        return Page([], more=False)
    return Page(items[:n], more=len(items) > n)


class RecycleBinService:
    """List and restore soft-deleted manifests and tags."""

    def __init__(self, store: MetadataStore, metadata: AcrMetadataService) -> None:
        self.store = store
        self.metadata = metadata

    async def _retention(self, registry: Registry) -> timedelta:
        policy = soft_delete_policy(await self.store.registry_policies(registry.id))
        return timedelta(days=policy.retention_days)

    async def repositories(self, registry: Registry, n: int, last: str | None) -> Page[str]:
        """A page of names of repositories holding deleted manifests or tags."""
        if n == 0:
            return Page([], more=False)
        return _page(await self.store.deleted_repositories(registry.id, n + 1, last), n)

    async def manifests(
        self, target: Target, n: int, last: str | None
    ) -> Page[DeletedManifestView]:
        """A page of the repository's deleted manifests, in digest order after ``last``."""
        found = await self.store.deleted_manifest_page(
            target.registry.id, target.repository, limit=n + 1, last=last or None
        )
        if found is None:
            raise _name_unknown(target)
        page = _page(found, n)
        keep = await self._retention(target.registry)
        described = await self.metadata.describe([d.info for d in page.items])
        return Page(
            [
                DeletedManifestView(m, d.deleted_at, d.deleted_at + keep)
                for m, d in zip(described, page.items, strict=True)
            ],
            page.more,
        )

    async def tags(self, target: Target, n: int, last: str | None) -> Page[DeletedTagView]:
        """A page of the repository's deleted tags, in name order after ``last``."""
        found = await self.store.deleted_tag_page(
            target.registry.id, target.repository, limit=n + 1, last=last or None
        )
        if found is None:
            raise _name_unknown(target)
        page = _page(found, n)
        keep = await self._retention(target.registry)
        return Page(
            [
                DeletedTagView(d.name, d.digest, d.deleted_at, d.deleted_at + keep)
                for d in page.items
            ],
            page.more,
        )

    async def restore(self, target: Target, digest: str, tag: str | None) -> Manifest:
        """Restore the manifest with its deleted tags no other manifest took meanwhile
        (or only ``tag``; of a live manifest, its deleted ``tag``); the manifest as
        ``/acr/v1/<name>/_manifests/<digest>`` shows it."""
        digest = str(parse_digest(digest))
        if tag is not None:
            tag = validate_tag(tag)
        repo = target.repository
        outcome = await self.store.restore_manifest(target.registry.id, repo, digest, tag=tag)
        ref = f"{repo}@{digest}"
        if outcome == "unknown":
            raise HamnError(
                MANIFEST_UNKNOWN,
                f"manifest {ref} is not in the recycle bin (not deleted, or purged for good)",
                detail={"digest": digest},
            )
        if outcome == "live":
            raise HamnError(
                ALREADY_EXISTS,
                f"manifest {ref} is live: it was pushed again (or restored) after it was "
                "deleted, so there is nothing of it to restore; its deleted tags can be "
                'restored one by one with {"tag": "<name>"}',
                detail={"digest": digest},
            )
        if outcome == "tag_unknown":
            raise HamnError(
                TAG_UNKNOWN,
                f"tag {tag!r} of manifest {ref} is not in the recycle bin",
                detail={"digest": digest, "tag": tag},
            )
        if outcome == "tag_taken":
            raise HamnError(
                ALREADY_EXISTS,
                f"tag {tag!r} points at another manifest now; restore {ref} without it, "
                "or untag the other manifest first",
                detail={"digest": digest, "tag": tag},
            )
        return await self.metadata.manifest(target, digest)


def _name_unknown(target: Target) -> HamnError:
    return HamnError(
        NAME_UNKNOWN,
        f"repository {target.repository!r} is not known to registry {target.registry.name!r}",
        detail={"name": target.repository},
    )
