"""Queries for garbage collection: what nothing references any more, and its removal.

:class:`GarbageStore` shares a :class:`~hamn.metadata.store.MetadataStore`'s
database (``run_read``/``run_write``, as the audit and identity stores do), so
its writes join the store's single writer on SQLite. Finders are keyset-paged
and bounded; every removal re-checks, in its own transaction, that what it
removes is still garbage, so a finder's answer may be stale without harm.

What is garbage:

- a blob link (``repository_blobs``) no manifest of its repository references,
  older than the grace period (a client uploads layers, then the manifest);
- a ``blobs`` row no link and no manifest reference anywhere names;
- an upload session not written for longer than the upload timeout.

Untagged manifests are not garbage (ACR keeps them: they are images by
digest); :meth:`GarbageStore.untagged_manifests` finds those nothing needs, for
a retention policy or purge to delete.
Soft-deleted manifests (in the recycle bin) still reference their blobs, so
their links and blobs stay until the collector purges them for good
(:meth:`~hamn.metadata.store.MetadataStore.purge_deleted`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, exists, func, literal, or_, select

from hamn.metadata import schema as t
from hamn.metadata.store import MetadataStore, _aware


@dataclass(frozen=True, slots=True, order=True)
class BlobLink:
    """A repository's link to a blob; ``repository`` reads ``<registry>/<repository>``."""

    repository_id: int
    digest: str
    repository: str = ""


@dataclass(frozen=True, slots=True, order=True)
class GarbageBlob:
    """A ``blobs`` row nothing needs, with the size its bytes take."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class StaleUpload:
    """An upload session idle since ``updated_at``."""

    id: str
    repository: str
    size: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UntaggedManifest:
    """A manifest no tag points at, no index in its repository lists, and that is not a
    referrer of a manifest its repository still holds."""

    id: int
    repository: str
    digest: str
    media_type: str
    size: int
    created_at: datetime
    #: When it lost its last tag or was stored without one (None: before that was kept).
    untagged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RegistryPolicies:
    """A registry's id, name and stored ``policies`` object (empty when it has none)."""

    id: int
    name: str
    policies: dict[str, Any]


def _label() -> Any:
    return t.registries.c.name + literal("/") + t.repositories.c.name


def _link_referenced(rb: Any) -> Any:
    """A manifest of the link's own repository references the link's blob."""
    mb, m = t.manifest_blobs, t.manifests
    return exists(
        select(literal(1))
        .select_from(mb.join(m, m.c.id == mb.c.manifest_id))
        .where(m.c.repository_id == rb.c.repository_id, mb.c.digest == rb.c.digest)
    )


def _blob_needed(digest: Any, links_before: datetime | None) -> Any:
    """A link or a manifest reference names the blob; with ``links_before``, links
    older than it that nothing references count as gone already (a dry run's view)."""
    rb, mb = t.repository_blobs, t.manifest_blobs
    linked = select(literal(1)).where(rb.c.digest == digest)
    if links_before is not None:
        linked = linked.where(rb.c.created_at >= links_before)
    return or_(exists(linked), exists(select(literal(1)).where(mb.c.digest == digest)))


class GarbageStore:
    """Finds and removes garbage rows (the blob bytes are the collector's business)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.dialect = store.dialect

    # -- blob links -------------------------------------------------------------
    async def unreferenced_links(
        self, created_before: datetime, after: BlobLink | None, limit: int
    ) -> list[BlobLink]:
        """Links older than ``created_before`` that no manifest of their repository
        references, after ``after`` in (repository id, digest) order, at most ``limit``."""
        rb = t.repository_blobs
        q = (
            select(rb.c.repository_id, rb.c.digest, _label())
            .select_from(
                rb.join(t.repositories, t.repositories.c.id == rb.c.repository_id).join(
                    t.registries, t.registries.c.id == t.repositories.c.registry_id
                )
            )
            .where(rb.c.created_at < created_before, ~_link_referenced(rb))
            .order_by(rb.c.repository_id, rb.c.digest)
            .limit(limit)
        )
        if after is not None:
            q = q.where(
                or_(
                    rb.c.repository_id > after.repository_id,
                    and_(rb.c.repository_id == after.repository_id, rb.c.digest > after.digest),
                )
            )
        return await self.store.run_read(
            lambda conn: [BlobLink(int(r), d, label) for r, d, label in conn.execute(q)]
        )

    async def remove_links(
        self, links: Sequence[BlobLink], created_before: datetime
    ) -> list[BlobLink]:
        """Remove those of ``links`` that are still unreferenced and older than
        ``created_before``, in one transaction; the links removed.

        On PostgreSQL the links are first locked (``FOR UPDATE SKIP LOCKED``: one a
        manifest write holds is in use, and stays), and only then re-checked, by a
        statement whose snapshot sees every manifest committed before the lock.
        A manifest write share-locks the links it relies on, so none can commit a
        reference to a link this transaction removes.
        """
        by_repo: dict[int, list[str]] = defaultdict(list)
        labels: dict[tuple[int, str], str] = {}
        for link in links:
            by_repo[link.repository_id].append(link.digest)
            labels[(link.repository_id, link.digest)] = link.repository
        if not by_repo:
            return []
        rb = t.repository_blobs

        def pairs(grouped: dict[int, list[str]]) -> Any:
            return or_(
                *(
                    and_(rb.c.repository_id == repo_id, rb.c.digest.in_(sorted(digests)))
                    for repo_id, digests in sorted(grouped.items())
                )
            )

        def op(conn: Connection) -> list[BlobLink]:
            chosen = pairs(by_repo)
            if self.dialect != "sqlite":
                locked: dict[int, list[str]] = defaultdict(list)
                for repo_id, digest in conn.execute(
                    select(rb.c.repository_id, rb.c.digest)
                    .where(chosen)
                    .order_by(rb.c.repository_id, rb.c.digest)
                    .with_for_update(skip_locked=True)
                ):
                    locked[int(repo_id)].append(digest)
                if not locked:
                    return []
                chosen = pairs(locked)  # a new statement: a snapshot taken after the locks
            gone = conn.execute(
                delete(rb)
                .where(chosen, rb.c.created_at < created_before, ~_link_referenced(rb))
                .returning(rb.c.repository_id, rb.c.digest)
            ).all()
            return sorted(BlobLink(int(r), d, labels.get((int(r), d), "")) for r, d in gone)

        return await self.store.run_write(op)

    # -- blobs --------------------------------------------------------------------
    async def unreferenced_blobs(
        self, after: str, limit: int, *, links_before: datetime | None = None
    ) -> list[GarbageBlob]:
        """``blobs`` rows no link and no manifest names, digests after ``after``, at most
        ``limit``. With ``links_before``, what a collection would find once it removed
        the links older than that (for a dry run)."""
        b = t.blobs
        q = (
            select(b.c.digest, b.c.size)
            .where(b.c.digest > after, ~_blob_needed(b.c.digest, links_before))
            .order_by(b.c.digest)
            .limit(limit)
        )
        return await self.store.run_read(
            lambda conn: [GarbageBlob(d, int(s)) for d, s in conn.execute(q)]
        )

    async def remove_blobs(self, digests: Sequence[str]) -> list[GarbageBlob]:
        """Delete the rows of those of ``digests`` that nothing names now; the rows
        deleted. The caller holds each blob's storage lock, so no push links them
        meanwhile; it deletes the bytes of exactly these."""
        if not digests:
            return []
        b = t.blobs

        def op(conn: Connection) -> list[GarbageBlob]:
            gone = conn.execute(
                delete(b)
                .where(b.c.digest.in_(sorted(set(digests))), ~_blob_needed(b.c.digest, None))
                .returning(b.c.digest, b.c.size)
            ).all()
            return sorted(GarbageBlob(d, int(s)) for d, s in gone)

        return await self.store.run_write(op)

    async def blob_row_exists(self, digest: str) -> bool:
        """Whether the blob has a ``blobs`` row."""
        q = select(t.blobs.c.digest).where(t.blobs.c.digest == digest)
        return await self.store.run_read(lambda conn: conn.execute(q).first() is not None)

    # -- uploads --------------------------------------------------------------------
    async def stale_uploads(
        self, updated_before: datetime, after: str, limit: int
    ) -> list[StaleUpload]:
        """Upload sessions last written before ``updated_before``, ids after ``after``."""
        u = t.uploads
        q = (
            select(
                u.c.id,
                func.coalesce(t.registries.c.name, "?") + literal("/") + u.c.repository,
                u.c.size,
                u.c.updated_at,
            )
            .select_from(u.outerjoin(t.registries, t.registries.c.id == u.c.registry_id))
            .where(u.c.updated_at < updated_before, u.c.id > after)
            .order_by(u.c.id)
            .limit(limit)
        )
        return await self.store.run_read(
            lambda conn: [
                StaleUpload(i, repo, int(size), _aware(at)) for i, repo, size, at in conn.execute(q)
            ]
        )

    async def remove_upload(self, upload_id: str, updated_before: datetime) -> bool:
        """Forget the session if it has still not been written since ``updated_before``."""
        u = t.uploads

        def op(conn: Connection) -> bool:
            result = conn.execute(
                delete(u).where(u.c.id == upload_id, u.c.updated_at < updated_before)
            )
            return bool(result.rowcount)

        return await self.store.run_write(op)

    # -- manifests (for retention and purge; collection itself keeps them) ----------
    async def untagged_manifests(
        self,
        registry_id: int,
        *,
        created_before: datetime | None = None,
        untagged_between: tuple[datetime, datetime] | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[UntaggedManifest]:
        """Manifests of the registry that no tag points at, no index of their repository
        lists, and that are not referrers (signatures, SBOMs...) of a manifest their
        repository still holds; deletable ones only (``delete_enabled``). Ids after
        ``after_id``, at most ``limit``; with ``created_before``, only older ones; with
        ``untagged_between`` (since, before), only those untagged after ``since`` and
        before ``before`` (a retention policy's window).

        A referrer of a manifest that is gone is found (nothing needs it); a manifest
        that has referrers is found too: whoever deletes it deletes its referrers
        with it, as ``hamn purge`` does.
        """
        m, r = t.manifests, t.repositories
        parent = t.manifests.alias("parent")
        subject = t.manifests.alias("subject")
        mc = t.manifest_children
        tagged = exists(select(literal(1)).where(t.tags.c.manifest_id == m.c.id))
        listed = exists(
            select(literal(1))
            .select_from(mc.join(parent, parent.c.id == mc.c.manifest_id))
            .where(parent.c.repository_id == m.c.repository_id, mc.c.child_digest == m.c.digest)
        )
        subject_held = exists(
            select(literal(1)).where(
                subject.c.repository_id == m.c.repository_id,
                subject.c.digest == m.c.subject_digest,
            )
        )
        q = (
            select(
                m.c.id,
                _label(),
                m.c.digest,
                m.c.media_type,
                m.c.size,
                m.c.created_at,
                m.c.untagged_at,
            )
            .select_from(
                m.join(r, r.c.id == m.c.repository_id).join(
                    t.registries, t.registries.c.id == r.c.registry_id
                )
            )
            .where(
                r.c.registry_id == registry_id,
                m.c.id > after_id,
                m.c.delete_enabled,
                m.c.deleted_at.is_(None),  # in the recycle bin: the purge's, not retention's
                ~tagged,
                ~listed,
                ~subject_held,
            )
            .order_by(m.c.id)
            .limit(limit)
        )
        if created_before is not None:
            q = q.where(m.c.created_at < created_before)
        if untagged_between is not None:
            since, before = untagged_between
            q = q.where(m.c.untagged_at > since, m.c.untagged_at < before)
        return await self.store.run_read(
            lambda conn: [
                UntaggedManifest(
                    int(i),
                    label,
                    d,
                    mt,
                    int(size),
                    _aware(at),
                    None if untagged is None else _aware(untagged),
                )
                for i, label, d, mt, size, at, untagged in conn.execute(q)
            ]
        )

    # -- registries' policies -------------------------------------------------------------
    async def registry_policies(self, *, every: bool = False) -> list[RegistryPolicies]:
        """Every registry with a ``policies`` object, by id (for the retention policy);
        with ``every``, registries without one too (their policies empty)."""
        g = t.registries
        q = select(g.c.id, g.c.name, g.c.policies).order_by(g.c.id)
        if not every:
            q = q.where(g.c.policies.is_not(None))

        def op(conn: Connection) -> list[RegistryPolicies]:
            found = []
            for registry_id, name, text in conn.execute(q):
                try:
                    policies = orjson.loads(text) if text is not None else {}
                except orjson.JSONDecodeError:
                    if not every:
                        continue  # not written by hamn; the management API shows defaults
                    policies = {}
                if isinstance(policies, dict):
                    found.append(RegistryPolicies(int(registry_id), name, policies))
            return found

        return await self.store.run_read(op)
