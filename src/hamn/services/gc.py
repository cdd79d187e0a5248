"""Online garbage collection and abandoned-upload clean-up (SPEC §5.4, issue 4).

One collection, safe while pushes, mounts and deletes go on:

1. **Blob links** no manifest of their repository references and older than
   ``grace`` are removed. A client uploads (or mounts) layers before it PUTs the
   manifest naming them; the grace period is that window, and linking again
   restarts it. Removing a link never changes usage: only manifest references
   count (``registry_blob_refs``).
2. **Blobs** no link and no manifest reference anywhere names lose their row and
   then their bytes. Each goes under the blob's storage lock
   (``BlobDriver.digest_lock``), which a publish holds from the rename that makes
   its bytes visible until its link commits, and a mount from finding the blob
   until its link commits. Under the lock the row is deleted only if nothing
   names the blob *now* (re-checked in the deleting transaction), and only the
   bytes of rows deleted so are removed: a push either linked the blob before
   (and the blob stays) or publishes it afresh after (a new file and row).
3. **Blob files without a row** (a crash between publish and link, or between a
   collection's row and file removals) older than ``grace`` are removed under
   the same lock, after re-checking there is still no row.
4. **Upload sessions** not written for ``upload_timeout`` lose their bytes (unless
   a request holds them) and their row (unless written meanwhile); upload files
   without a session, older than ``grace``, go too.

A manifest write needs its blobs linked (MissingReferences), so a push whose
link a collection removed fails cleanly with MANIFEST_BLOB_UNKNOWN (its client
uploads the blob again); a stored manifest never names a removed blob. On
PostgreSQL the manifest write share-locks the links it relies on and a
collection locks a link before re-checking it, so the same holds with
concurrent transactions (see :mod:`hamn.metadata.garbage`).

Untagged manifests are kept (ACR keeps them: they are images by digest) unless
their registry's retention policy is enabled (:mod:`hamn.services.retention`):
then a collection first deletes, through the store's ``delete_manifest`` (usage
stays exact), the untagged manifests nothing needs that lost their last tag after
the policy was enabled and more than its ``days`` ago; locked ones are kept.

Soft-deleted content (:mod:`hamn.services.recycle_bin`) is purged first: manifests
in the recycle bin for longer than their registry's ``retentionDays`` go through the
hard delete (usage then drops, and their blobs become garbage for the later phases
of the same collection), with expired deleted tags and soft-deleted repositories
left empty.

Work goes in bounded batches (one short transaction each), so a large registry
never holds the database's writer for long. Only one collection runs at a time
per deployment: each takes the lease ``gc`` in the database
(:mod:`hamn.storage.leases`), which ``hamn gc`` and every worker share on every
host. The server's periodic collections are jobs (:mod:`hamn.services.jobs`, the
kind ``gc``), queued once per ``gc_interval`` and run by one worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hamn.metadata.audit import MetadataAudit
from hamn.metadata.garbage import BlobLink, GarbageBlob, GarbageStore, UntaggedManifest
from hamn.metadata.jobs import Job
from hamn.metadata.leases import LeaseStore
from hamn.metadata.models import AffectedContent
from hamn.metadata.store import MetadataStore
from hamn.services.jobs import Deferred
from hamn.services.retention import retention_policy
from hamn.services.soft_delete_policy import KEY as SOFT_DELETE_KEY
from hamn.services.soft_delete_policy import soft_delete_policy
from hamn.storage.base import BlobDriver, StorageError, StoredFile
from hamn.storage.leases import DEFAULT_TTL, HeldLease, Leases, try_lease

log = logging.getLogger("hamn.gc")

#: Defaults of the settings ``gc_grace``, ``gc_interval`` and ``upload_timeout``.
DEFAULT_GRACE = 3600.0
DEFAULT_INTERVAL = 3600.0
DEFAULT_UPLOAD_TIMEOUT = 24 * 3600.0
#: Rows or files handled per batch (one transaction, one set of held blob locks).
BATCH = 100
#: Items a report lists by name, per kind (the counts and bytes are always complete).
REPORT_LIMIT = 1000
#: The lease a collection holds (one at a time per deployment) and the kind of its job.
LEASE = "gc"
JOB_KIND = "gc"


class CollectionRunning(Exception):
    """Another garbage collection holds the deployment's collection lease."""


@dataclass(slots=True)
class Removed:
    """One kind of garbage: how many, how many bytes, and the first ``REPORT_LIMIT``."""

    count: int = 0
    bytes: int = 0
    items: list[str] = field(default_factory=list)

    def add(self, name: str, size: int = 0) -> None:
        """Count one more item of ``size`` bytes."""
        self.count += 1
        self.bytes += size
        if len(self.items) < REPORT_LIMIT:
            self.items.append(name)


@dataclass(slots=True)
class GcReport:
    """What one collection removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    grace: float
    upload_timeout: float
    started_at: datetime
    seconds: float = 0.0
    links: Removed = field(default_factory=Removed)
    blobs: Removed = field(default_factory=Removed)
    orphan_blob_files: Removed = field(default_factory=Removed)
    uploads: Removed = field(default_factory=Removed)
    orphan_upload_files: Removed = field(default_factory=Removed)
    #: Untagged manifests a retention policy deleted (bytes: their manifests' sizes).
    untagged_manifests: Removed = field(default_factory=Removed)
    #: Soft-deleted manifests purged from the recycle bin (bytes: their manifests' sizes;
    #: a dry run does not look for them).
    purged_manifests: Removed = field(default_factory=Removed)
    #: Garbage left because something used it meanwhile (a request held it, it changed).
    in_use: int = 0

    @property
    def bytes_freed(self) -> int:
        """Storage bytes removed (or that would be)."""
        return (
            self.blobs.bytes
            + self.orphan_blob_files.bytes
            + self.uploads.bytes
            + self.orphan_upload_files.bytes
        )


class GarbageCollector:
    """Removes unreferenced blob links, blobs and abandoned uploads (see the module)."""

    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobDriver,
        *,
        leases: Leases | None = None,
        lease_ttl: float = DEFAULT_TTL,
        grace: float = DEFAULT_GRACE,
        upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
        batch: int = BATCH,
        delete_untagged: bool = False,
    ) -> None:
        #: Also delete every untagged manifest nothing needs once it has been untagged
        #: for ``grace`` (Distribution's ``garbage-collect --delete-untagged``), whatever
        #: the registries' retention policies say. Off by default: ACR keeps untagged
        #: manifests, which are images pushed or kept by digest.
        self.delete_untagged = delete_untagged
        self.garbage = GarbageStore(store)
        self.audit = MetadataAudit(store)
        self.blobs = blobs
        #: Where the collection lease lives (the deployment's database by default),
        #: and how long it outlives a holder that died.
        self.leases: Leases = leases if leases is not None else LeaseStore(store)
        self.lease_ttl = lease_ttl
        self.grace = grace
        self.upload_timeout = upload_timeout
        self.batch = batch

    async def collect(self, *, dry_run: bool = False) -> GcReport:
        """Run one collection (or, with ``dry_run``, only find what it would remove).

        Raises CollectionRunning when another one holds the lease (a dry run, which
        removes nothing, takes no lease), or when this one loses it midway (the
        database was out of reach for longer than the lease lives).
        """
        if dry_run:
            return await self._collect(dry_run=True)
        lease = await try_lease(self.leases, LEASE, ttl=self.lease_ttl)
        if lease is None:
            raise CollectionRunning("another garbage collection is running (lease gc)")
        try:
            return await self._collect(dry_run=False, lease=lease)
        finally:
            await lease.release()

    async def run_job(self, job: Job) -> None:
        """The handler of ``gc`` jobs: one collection. Another collection running
        (``hamn gc``, or a dead worker's lease not yet expired) defers the job."""
        try:
            await self.collect()
        except CollectionRunning as exc:
            raise Deferred(str(exc), delay=self.lease_ttl) from None

    async def _collect(self, *, dry_run: bool, lease: HeldLease | None = None) -> GcReport:
        started = time.time()
        report = GcReport(
            dry_run, self.grace, self.upload_timeout, datetime.fromtimestamp(started, UTC)
        )
        cutoff = started - self.grace
        phases: list[Callable[[], Awaitable[None]]] = [
            lambda: self._purge_deleted(report, _utc(started)),
            lambda: self._retention(report, _utc(started), untagged_before=_utc(cutoff)),
            lambda: self._links(report, _utc(cutoff)),
            lambda: self._blob_rows(report, _utc(cutoff)),
            lambda: self._orphan_blob_files(report, cutoff),
            lambda: self._uploads(report, started - self.upload_timeout),
            lambda: self._orphan_upload_files(report, cutoff),
        ]
        for phase in phases:
            if lease is not None and lease.lost:
                # Another collection may have the lease now: leave the rest to it.
                raise CollectionRunning("the collection lost its lease midway")
            await phase()
        report.seconds = time.time() - started
        log.info(
            "garbage collection %s: %d soft-deleted manifests purged, "
            "%d untagged manifests (retention), %d links, %d blobs, "
            "%d blob files without a row, %d abandoned uploads, %d upload files without a "
            "session; %d bytes%s",
            "found (dry run)" if dry_run else "removed",
            report.purged_manifests.count,
            report.untagged_manifests.count,
            report.links.count,
            report.blobs.count,
            report.orphan_blob_files.count,
            report.uploads.count,
            report.orphan_upload_files.count,
            report.bytes_freed,
            f"; {report.in_use} in use, left" if report.in_use else "",
        )
        return report

    # -- the phases ---------------------------------------------------------------
    async def _purge_deleted(self, report: GcReport, now: datetime) -> None:
        """Purge what every registry's recycle bin has kept longer than its policy's
        ``retentionDays`` (see :mod:`hamn.services.recycle_bin`)."""
        if report.dry_run:
            return
        for registry in await self.garbage.registry_policies():
            if SOFT_DELETE_KEY not in registry.policies:
                continue  # never set: nothing was ever soft-deleted
            days = soft_delete_policy(registry.policies).retention_days
            before = now - timedelta(days=days)
            while purged := await self.garbage.store.purge_deleted(registry.id, before, self.batch):
                for manifest in purged:
                    name = f"{registry.name}/{manifest.repository}@{manifest.digest}"
                    report.purged_manifests.add(name, manifest.size)
                await asyncio.sleep(0)

    async def _retention(
        self, report: GcReport, now: datetime, *, untagged_before: datetime
    ) -> None:
        """Apply every enabled retention policy (see :mod:`hamn.services.retention`); with
        ``delete_untagged``, delete everything untagged before ``untagged_before`` (the
        grace period protects an index's children, untagged until the index lands)."""
        for registry in await self.garbage.registry_policies(every=self.delete_untagged):
            window = retention_policy(registry.policies).window(now)
            if self.delete_untagged:
                window = (_EPOCH, untagged_before)
            if window is None:
                continue
            after = 0
            while found := await self.garbage.untagged_manifests(
                registry.id, untagged_between=window, after_id=after, limit=self.batch
            ):
                after = found[-1].id
                for manifest in found:
                    name = f"{manifest.repository}@{manifest.digest}"
                    gone = report.dry_run or await self._delete_untagged(
                        registry.id, registry.name, manifest
                    )
                    if gone:
                        report.untagged_manifests.add(name, manifest.size)
                    elif gone is False:
                        report.in_use += 1  # tagged again or deleted meanwhile
                await asyncio.sleep(0)

    async def _delete_untagged(
        self, registry_id: int, registry: str, manifest: UntaggedManifest
    ) -> bool | None:
        """Delete the manifest unless, inside the deleting transaction, it has a tag
        again (False) or it or its repository is locked (None: delete- or
        write-disabled, as a client's delete would be refused)."""
        repository = manifest.repository.removeprefix(f"{registry}/")
        try:
            return await self.garbage.store.delete_manifest(
                registry_id, repository, manifest.digest, guard=_untagged_and_unlocked
            )
        except _Kept as kept:
            return None if kept.locked else False

    async def _links(self, report: GcReport, cutoff: datetime) -> None:
        after: BlobLink | None = None
        while found := await self.garbage.unreferenced_links(cutoff, after, self.batch):
            after = found[-1]
            gone = found if report.dry_run else await self.garbage.remove_links(found, cutoff)
            report.in_use += len(found) - len(gone)
            for link in gone:
                report.links.add(f"{link.repository}@{link.digest}")
            await asyncio.sleep(0)  # let requests in between batches

    async def _blob_rows(self, report: GcReport, cutoff: datetime) -> None:
        after = ""
        links_before = cutoff if report.dry_run else None
        while found := await self.garbage.unreferenced_blobs(
            after, self.batch, links_before=links_before
        ):
            after = found[-1].digest
            gone = found if report.dry_run else await self._remove_blobs(report, found)
            for blob in gone:
                report.blobs.add(blob.digest, blob.size)
            await asyncio.sleep(0)

    async def _remove_blobs(
        self, report: GcReport, found: Sequence[GarbageBlob]
    ) -> list[GarbageBlob]:
        """Delete rows and bytes of ``found`` under their locks (taken in digest order,
        so two holders of several never deadlock)."""
        digests = sorted({b.digest for b in found})
        async with contextlib.AsyncExitStack() as held:
            for digest in digests:
                await held.enter_async_context(self.blobs.digest_lock(digest))
            gone = await self.garbage.remove_blobs(digests)
            for blob in gone:
                try:
                    await self.blobs.delete(blob.digest)
                except (OSError, StorageError):
                    # The row is gone: the next collection removes the file as an orphan.
                    log.warning("could not remove the bytes of blob %s", blob.digest)
        report.in_use += len(digests) - len(gone)
        return gone

    async def _orphan_blob_files(self, report: GcReport, cutoff: float) -> None:
        async for batch in _batches(self.blobs.scan_blobs(), self.batch):
            files = [f for f in batch if not f.stray and f.changed_at < cutoff]
            if not files:
                continue
            rows = await self.audit.blob_sizes([f.key for f in files])
            for found in files:
                if found.key in rows:
                    continue
                if report.dry_run:
                    report.orphan_blob_files.add(found.key, found.size)
                    continue
                if await self._remove_orphan_file(found.key, cutoff):
                    report.orphan_blob_files.add(found.key, found.size)
                else:
                    report.in_use += 1

    async def _remove_orphan_file(self, digest: str, cutoff: float) -> bool:
        """Under the blob's lock, remove its file if it still has no row (a publish
        holds the lock until its row commits) and has not changed since ``cutoff``."""
        async with self.blobs.digest_lock(digest):
            if await self.garbage.blob_row_exists(digest):
                return False
            return await self.blobs.remove_blob_if_unchanged(digest, cutoff)

    async def _uploads(self, report: GcReport, cutoff: float) -> None:
        after = ""
        before = _utc(cutoff)
        while found := await self.garbage.stale_uploads(before, after, self.batch):
            after = found[-1].id
            for upload in found:
                stored = await self.blobs.stat_upload(upload.id)
                size = stored.size if stored is not None else 0
                if report.dry_run:
                    report.uploads.add(f"{upload.repository}/{upload.id}", size)
                    continue
                if stored is not None and not await self.blobs.remove_upload_if_idle(
                    upload.id, cutoff
                ):
                    report.in_use += 1  # a request holds it, or wrote to it just now
                    continue
                if await self.garbage.remove_upload(upload.id, before) or stored is not None:
                    report.uploads.add(f"{upload.repository}/{upload.id}", size)
                else:
                    report.in_use += 1

    async def _orphan_upload_files(self, report: GcReport, cutoff: float) -> None:
        async for batch in _batches(self.blobs.scan_uploads(), self.batch):
            files = [f for f in batch if not f.stray and f.changed_at < cutoff]
            if not files:
                continue
            # A session's row is made before its file and deleted before it, so a file
            # without a row belongs to no session that can go on.
            sessions = await self.audit.uploads_present([f.key for f in files])
            for found in files:
                if found.key in sessions:
                    continue
                if report.dry_run or await self.blobs.remove_upload_if_idle(found.key, cutoff):
                    report.orphan_upload_files.add(found.key, found.size)
                else:
                    report.in_use += 1

    # -- for retention and purge ----------------------------------------------------
    async def untagged_manifests(
        self, registry_id: int, *, older_than: float | None = None, limit: int = 100
    ) -> list[UntaggedManifest]:
        """The registry's untagged manifests nothing needs (see
        :meth:`GarbageStore.untagged_manifests`), created more than ``older_than``
        seconds ago when given. Collection never deletes them; retention does."""
        before = None if older_than is None else _utc(time.time() - older_than)
        return await self.garbage.untagged_manifests(
            registry_id, created_before=before, limit=limit
        )


class _Kept(Exception):
    """A manifest retention found is tagged again, or locked, by the time it would go."""

    def __init__(self, *, locked: bool) -> None:
        super().__init__("locked" if locked else "tagged again")
        self.locked = locked


def _untagged_and_unlocked(found: AffectedContent) -> None:
    if found.tags:
        raise _Kept(locked=False)
    attributes = [found.attributes, *(a for _, a in found.manifests)]
    if any(not (a.delete_enabled and a.write_enabled) for a in attributes):
        raise _Kept(locked=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def _batches(files: AsyncIterator[StoredFile], size: int) -> AsyncIterator[list[StoredFile]]:
    batch: list[StoredFile] = []
    async for found in files:
        batch.append(found)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
