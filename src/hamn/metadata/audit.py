"""Read-only queries for ``hamn fsck``: every row that names content, page by page.

:class:`MetadataAudit` shares a :class:`~hamn.metadata.store.MetadataStore`'s
database (reads through ``run_read``, as the identity store's do) and never
writes. Listings are keyset-paged, so a check walks any number of rows in
constant memory; the dangling-reference queries return only the rows that are
wrong (normally none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, literal, or_, select, union

from hamn.metadata import schema as t
from hamn.metadata.store import MetadataStore

#: Digests (or ids) one ``IN (...)`` lookup takes.
LOOKUP_BATCH = 500


@dataclass(frozen=True, slots=True)
class BlobRow:
    """A ``blobs`` row: a digest the database says is stored, and its size."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class AuditedManifest:
    """A stored manifest with the references recorded for it."""

    id: int
    repository: str  # "<registry>/<repository>"
    digest: str
    media_type: str
    size: int
    content: bytes
    blobs: frozenset[str]
    children: frozenset[str]


@dataclass(frozen=True, slots=True)
class UploadRow:
    """An ``uploads`` row: a session, where it uploads to, and its acknowledged offset."""

    id: str
    repository: str  # "<registry>/<repository>"
    size: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DanglingReference:
    """A row that names something that is not there.

    ``table`` is the row's table (``repository_blobs``, ``manifest_blobs``,
    ``manifest_children`` or ``tags``); ``source`` what holds the reference (a
    manifest digest or tag name; empty for a repository's blob link); ``target``
    what it names (a digest, or for a tag the manifest it points at).
    """

    table: str
    repository: str
    source: str
    target: str


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything hamn stores is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _repository_label(repo_id: Any) -> tuple[Any, ...]:
    """Outer joins and a label expression naming a repository ``<registry>/<name>``."""
    r = t.repositories.alias()
    g = t.registries.alias()
    label = func.coalesce(g.c.name, "?") + literal("/") + func.coalesce(r.c.name, "?")
    return r, g, label, r.c.id == repo_id, g.c.id == r.c.registry_id


class MetadataAudit:
    """Read-only walks over the metadata that names content (blobs, manifests, tags, uploads)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    async def count(self, table: str) -> int:
        """Rows in ``table``."""
        return await self.store.count(table)

    # -- blobs ------------------------------------------------------------------
    async def blob_rows(self, after: str, limit: int) -> list[BlobRow]:
        """``blobs`` rows with digests after ``after``, in digest order, at most ``limit``."""
        q = (
            select(t.blobs.c.digest, t.blobs.c.size)
            .where(t.blobs.c.digest > after)
            .order_by(t.blobs.c.digest)
            .limit(limit)
        )
        return await self.store.run_read(
            lambda conn: [BlobRow(d, int(s)) for d, s in conn.execute(q)]
        )

    async def _lookup(
        self, keys: Sequence[str], query: Callable[[list[str]], Any]
    ) -> list[tuple[Any, ...]]:
        """The rows ``query(batch)`` finds for ``keys``, ``LOOKUP_BATCH`` keys per query."""

        def op(conn: Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            for i in range(0, len(keys), LOOKUP_BATCH):
                rows += (tuple(r) for r in conn.execute(query(list(keys[i : i + LOOKUP_BATCH]))))
            return rows

        return await self.store.run_read(op)

    async def blob_sizes(self, digests: Sequence[str]) -> dict[str, int]:
        """The recorded size of each of ``digests`` that has a ``blobs`` row."""
        b = t.blobs
        rows = await self._lookup(
            digests, lambda batch: select(b.c.digest, b.c.size).where(b.c.digest.in_(batch))
        )
        return {d: int(s) for d, s in rows}

    async def referenced(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` a blob link or a manifest names (row or no row)."""
        rb, mb = t.repository_blobs, t.manifest_blobs
        rows = await self._lookup(
            digests,
            lambda batch: union(
                select(rb.c.digest).where(rb.c.digest.in_(batch)),
                select(mb.c.digest).where(mb.c.digest.in_(batch)),
            ),
        )
        return {r[0] for r in rows}

    async def blob_users(self, digest: str, limit: int = 10) -> list[str]:
        """Repositories (``<registry>/<repository>``) that link the blob or hold a
        manifest naming it: who loses content when it is damaged."""
        r1, g1, label1, on_r1, on_g1 = _repository_label(t.repository_blobs.c.repository_id)
        linked = (
            select(label1.label("repository"))
            .select_from(t.repository_blobs.outerjoin(r1, on_r1).outerjoin(g1, on_g1))
            .where(t.repository_blobs.c.digest == digest)
        )
        r2, g2, label2, on_r2, on_g2 = _repository_label(t.manifests.c.repository_id)
        named = (
            select(label2.label("repository"))
            .select_from(
                t.manifest_blobs.join(
                    t.manifests, t.manifests.c.id == t.manifest_blobs.c.manifest_id
                )
                .outerjoin(r2, on_r2)
                .outerjoin(g2, on_g2)
            )
            .where(t.manifest_blobs.c.digest == digest)
        )
        both = union(linked, named).subquery()
        q = select(both.c.repository).order_by(both.c.repository).limit(limit)
        return await self.store.run_read(lambda conn: list(conn.execute(q).scalars()))

    # -- references ---------------------------------------------------------------
    async def dangling_references(self) -> list[DanglingReference]:
        """Every blob link, manifest reference and tag that names something absent:
        a link or manifest reference to a digest without a ``blobs`` row, a child
        manifest its index's repository lacks, a tag whose manifest is gone or in
        another repository."""
        return await self.store.run_read(self._dangling)

    @staticmethod
    def _dangling(conn: Connection) -> list[DanglingReference]:
        found: list[DanglingReference] = []
        rb = t.repository_blobs
        r, g, label, on_r, on_g = _repository_label(rb.c.repository_id)
        links = (
            select(label, rb.c.digest)
            .select_from(
                rb.outerjoin(t.blobs, t.blobs.c.digest == rb.c.digest)
                .outerjoin(r, on_r)
                .outerjoin(g, on_g)
            )
            .where(t.blobs.c.digest.is_(None))
            .order_by(label, rb.c.digest)
        )
        found += [
            DanglingReference("repository_blobs", repo, "", d) for repo, d in conn.execute(links)
        ]

        m, mb = t.manifests, t.manifest_blobs
        r, g, label, on_r, on_g = _repository_label(m.c.repository_id)
        blobs = (
            select(label, m.c.digest, mb.c.digest)
            .select_from(
                mb.join(m, m.c.id == mb.c.manifest_id)
                .outerjoin(t.blobs, t.blobs.c.digest == mb.c.digest)
                .outerjoin(r, on_r)
                .outerjoin(g, on_g)
            )
            .where(t.blobs.c.digest.is_(None))
            .order_by(label, m.c.digest, mb.c.digest)
        )
        found += [DanglingReference("manifest_blobs", *row) for row in conn.execute(blobs)]

        mc, child = t.manifest_children, t.manifests.alias()
        r, g, label, on_r, on_g = _repository_label(m.c.repository_id)
        children = (
            select(label, m.c.digest, mc.c.child_digest)
            .select_from(
                mc.join(m, m.c.id == mc.c.manifest_id)
                .outerjoin(
                    child,
                    and_(
                        child.c.repository_id == m.c.repository_id,
                        child.c.digest == mc.c.child_digest,
                    ),
                )
                .outerjoin(r, on_r)
                .outerjoin(g, on_g)
            )
            .where(child.c.id.is_(None))
            .order_by(label, m.c.digest, mc.c.child_digest)
        )
        found += [DanglingReference("manifest_children", *row) for row in conn.execute(children)]

        tg = t.tags
        r, g, label, on_r, on_g = _repository_label(tg.c.repository_id)
        wrong: ColumnElement[bool] = or_(m.c.id.is_(None), m.c.repository_id != tg.c.repository_id)
        tags = (
            select(label, tg.c.name, m.c.digest, tg.c.manifest_id)
            .select_from(
                tg.outerjoin(m, m.c.id == tg.c.manifest_id).outerjoin(r, on_r).outerjoin(g, on_g)
            )
            .where(wrong)
            .order_by(label, tg.c.name)
        )
        for repo, name, digest, manifest_id in conn.execute(tags):
            target = f"{digest} (in another repository)" if digest else f"manifest #{manifest_id}"
            found.append(DanglingReference("tags", repo, name, target))
        return found

    # -- manifests ----------------------------------------------------------------
    async def manifest_page(self, after_id: int, limit: int) -> list[AuditedManifest]:
        """Manifests with ids after ``after_id`` (id order, at most ``limit``), each with
        its bytes and recorded references."""
        return await self.store.run_read(lambda conn: self._manifests(conn, after_id, limit))

    @staticmethod
    def _manifests(conn: Connection, after_id: int, limit: int) -> list[AuditedManifest]:
        m = t.manifests
        r, g, label, on_r, on_g = _repository_label(m.c.repository_id)
        rows = conn.execute(
            select(m.c.id, label, m.c.digest, m.c.media_type, m.c.size, m.c.content)
            .select_from(m.outerjoin(r, on_r).outerjoin(g, on_g))
            .where(m.c.id > after_id)
            .order_by(m.c.id)
            .limit(limit)
        ).all()
        ids = [row[0] for row in rows]
        blobs: dict[int, set[str]] = {i: set() for i in ids}
        children: dict[int, set[str]] = {i: set() for i in ids}
        if ids:
            mb, mc = t.manifest_blobs, t.manifest_children
            for mid, d in conn.execute(
                select(mb.c.manifest_id, mb.c.digest).where(mb.c.manifest_id.in_(ids))
            ):
                blobs[mid].add(d)
            for mid, d in conn.execute(
                select(mc.c.manifest_id, mc.c.child_digest).where(mc.c.manifest_id.in_(ids))
            ):
                children[mid].add(d)
        return [
            AuditedManifest(
                row[0],
                row[1],
                row[2],
                row[3],
                int(row[4]),
                bytes(row[5]),
                frozenset(blobs[row[0]]),
                frozenset(children[row[0]]),
            )
            for row in rows
        ]

    # -- uploads ------------------------------------------------------------------
    async def upload_rows(self, after: str, limit: int) -> list[UploadRow]:
        """Upload sessions with ids after ``after`` (id order, at most ``limit``)."""
        u = t.uploads
        g = t.registries
        q = (
            select(
                u.c.id,
                func.coalesce(g.c.name, "?") + literal("/") + u.c.repository,
                u.c.size,
                u.c.updated_at,
            )
            .select_from(u.outerjoin(g, g.c.id == u.c.registry_id))
            .where(u.c.id > after)
            .order_by(u.c.id)
            .limit(limit)
        )
        return await self.store.run_read(
            lambda conn: [
                UploadRow(i, repo, int(size), _aware(at)) for i, repo, size, at in conn.execute(q)
            ]
        )

    async def uploads_present(self, upload_ids: Sequence[str]) -> set[str]:
        """Which of ``upload_ids`` have an ``uploads`` row."""
        u = t.uploads
        rows = await self._lookup(upload_ids, lambda batch: select(u.c.id).where(u.c.id.in_(batch)))
        return {r[0] for r in rows}
