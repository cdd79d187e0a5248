"""``hamn fsck``: check that stored content is what the metadata says, and tidy what
nothing can reach.

The check, safe beside a running server (it reads; only ``repair`` writes):

1. every blob file hashes to its name (streamed, constant memory) and has the
   size its ``blobs`` row records; files with no row are unreferenced;
2. every ``blobs`` row has its file;
3. every blob link, manifest reference and tag names something that exists;
4. every manifest's stored bytes hash to its digest, parse, and name exactly the
   blobs and child manifests recorded as its references;
5. every upload session has both its row and its bytes, no fewer bytes than it
   acknowledged, and has moved within ``abandoned_after``.

Problems come in three severities. *Garbage* (unreachable: a blob file nothing
records or names, upload bytes without a session, a session without bytes, a broken or
abandoned session) is what ``repair`` removes. *Damage* (a corrupt or missing
blob, a dangling reference, a damaged manifest) means content is lost: it is
reported with what the operator can do, never "repaired" by deleting rows that
manifests need; ``repair`` only moves a corrupt blob file into the storage's
quarantine, so the registry stops serving bytes every client rejects. *Stray*
files (named like nothing hamn writes) are reported and left alone.

Racing a live push: a blob is published by rename *before* its row commits, and
an upload's row is made before its file, so anything that changed within
``grace`` counts as in flight, not as a problem; the driver's removals re-check
the file they remove, so a blob published again meanwhile is never lost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from hamn.errors import HamnError
from hamn.metadata.audit import AuditedManifest, DanglingReference, MetadataAudit
from hamn.metadata.store import MetadataStore
from hamn.oci.digest import ALGORITHMS, digest_bytes, new_hasher
from hamn.oci.manifest import parse_manifest
from hamn.storage.base import BlobDriver, StorageNotFound, StoredFile

#: Default of ``grace``: anything newer may belong to a push in flight.
DEFAULT_GRACE = 3600.0
#: Default of ``abandoned_after``: an upload idle this long is abandoned (Distribution
#: purges uploads after the same week).
DEFAULT_ABANDONED_AFTER = 7 * 24 * 3600.0

#: Files hashed per metadata lookup, and rows or manifests read per page.
_BATCH = 256
_MANIFEST_PAGE = 64

Severity = Literal["damage", "garbage", "stray"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, what ``repair`` does about it, and (after a repair) what it did.

    ``subject`` is the digest, upload id, tag or stray path concerned;
    ``repositories`` those (``<registry>/<repository>``) whose content it affects;
    ``remedy`` what the operator can do about damage ``repair`` cannot undo.
    """

    kind: str
    severity: Severity
    subject: str
    problem: str
    repair: str
    remedy: str | None = None
    repositories: tuple[str, ...] = ()
    repaired: bool = False
    outcome: str | None = None


@dataclass(slots=True)
class Checked:
    """What the check covered."""

    blob_files: int = 0
    blob_bytes: int = 0
    blob_rows: int = 0
    repository_blobs: int = 0
    manifests: int = 0
    manifest_blobs: int = 0
    manifest_children: int = 0
    tags: int = 0
    upload_files: int = 0
    uploads: int = 0


@dataclass(frozen=True, slots=True)
class FsckReport:
    """The outcome of a check: what it covered and every problem it found.

    ``in_grace`` counts files and sessions that would be problems were they older
    than the grace period (most likely pushes in flight): not problems.
    """

    repair: bool
    checked: Checked
    in_grace: int
    problems: tuple[Problem, ...]

    @property
    def remaining(self) -> tuple[Problem, ...]:
        """The problems still there (all of them, unless this was a repair)."""
        return tuple(p for p in self.problems if not p.repaired)

    @property
    def clean(self) -> bool:
        """Nothing is (any longer) wrong."""
        return not self.remaining

    def by_kind(self) -> dict[str, int]:
        """How many problems of each kind were found."""
        return dict(sorted(Counter(p.kind for p in self.problems).items()))


@dataclass(slots=True)
class _Run:
    repair: bool
    now: float
    cutoff: float  # changed before this: out of the grace period
    abandoned_before: float
    checked: Checked = field(default_factory=Checked)
    in_grace: int = 0
    problems: list[Problem] = field(default_factory=list)
    quarantined: set[str] = field(default_factory=set)


class FsckService:
    """Checks stored blobs against the metadata and every reference, and with ``repair``
    removes what is unreachable."""

    def __init__(
        self, store: MetadataStore, blobs: BlobDriver, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.audit = MetadataAudit(store)
        self.blobs = blobs
        self.clock = clock

    async def check(
        self,
        *,
        repair: bool = False,
        grace: float = DEFAULT_GRACE,
        abandoned_after: float = DEFAULT_ABANDONED_AFTER,
    ) -> FsckReport:
        """Check everything; with ``repair``, remove garbage and quarantine corrupt blobs."""
        now = self.clock()
        run = _Run(repair, now, now - grace, now - max(abandoned_after, grace))
        await self._blob_files(run)
        await self._blob_rows(run)
        await self._references(run)
        await self._manifests(run)
        await self._upload_files(run)
        await self._upload_rows(run)
        return FsckReport(repair, run.checked, run.in_grace, tuple(run.problems))

    @staticmethod
    async def _in_batches(
        run: _Run,
        files: AsyncIterator[StoredFile],
        area: str,
        check: Callable[[_Run, list[StoredFile]], Awaitable[None]],
    ) -> None:
        """Report the strays of a scan; hand the rest to ``check`` a batch at a time
        (one metadata lookup per batch)."""
        batch: list[StoredFile] = []
        async for found in files:
            if found.stray:
                run.problems.append(_stray(found, area))
                continue
            batch.append(found)
            if len(batch) >= _BATCH:
                await check(run, batch)
                batch = []
        if batch:
            await check(run, batch)

    # -- blobs: storage -> rows -------------------------------------------------
    async def _blob_files(self, run: _Run) -> None:
        await self._in_batches(run, self.blobs.scan_blobs(), "blob", self._blob_batch)

    async def _blob_batch(self, run: _Run, batch: list[StoredFile]) -> None:
        sizes = await self.audit.blob_sizes([f.key for f in batch])
        for found in batch:
            started = self.clock()
            hashed = await self._hash(found.key)
            if hashed is None:
                continue  # removed while we looked
            actual, length = hashed
            run.checked.blob_files += 1
            run.checked.blob_bytes += length
            recorded = sizes.get(found.key)
            if recorded is None:
                await self._unrecorded_blob(run, found, actual)
            elif actual != found.key:
                await self._corrupt_blob(run, found.key, actual, length, recorded, started)
            elif length != recorded:
                run.problems.append(
                    Problem(
                        "blob-size-mismatch",
                        "damage",
                        found.key,
                        f"the blob's bytes verify, but they are {length} bytes and the "
                        f"database records {recorded}",
                        "nothing",
                        "the bytes are intact and the recorded size is wrong; clients that "
                        "trust the recorded size fail: report it, and correct blobs.size",
                        tuple(await self.audit.blob_users(found.key)),
                    )
                )

    async def _hash(self, digest: str) -> tuple[str, int] | None:
        """The digest the blob's bytes actually have, and their length (streamed)."""
        algorithm = digest.split(":", 1)[0]
        hasher = new_hasher(algorithm)
        length = 0
        try:
            async for chunk in self.blobs.read(digest):
                hasher.update(chunk)
                length += len(chunk)
        except StorageNotFound:
            return None
        return f"{algorithm}:{hasher.hexdigest()}", length

    async def _unrecorded_blob(self, run: _Run, found: StoredFile, actual: str) -> None:
        """A blob file without a ``blobs`` row: garbage unless something still names it."""
        if found.changed_at >= run.cutoff:
            run.in_grace += 1
            return
        corrupt = "" if actual == found.key else f" (and its bytes hash to {actual})"
        if await self.audit.referenced([found.key]):
            # Needed content whose row was lost: never garbage.
            run.problems.append(
                Problem(
                    "unrecorded-blob-file",
                    "damage",
                    found.key,
                    f"a blob file of {found.size} bytes that repositories or manifests name, "
                    f"but that no blobs row records{corrupt}: pulls of it fail",
                    "nothing (the content is needed)",
                    f"upload the blob again, which records it: {_REUPLOAD}",
                    tuple(await self.audit.blob_users(found.key)),
                )
            )
            return
        problem = Problem(
            "unreferenced-blob-file",
            "garbage",
            found.key,
            f"a blob file of {found.size} bytes that nothing records or names{corrupt}: "
            "nothing can reach it",
            "removes the file",
        )
        if run.repair:
            # The database again, just before removing: a push could have linked it.
            key = [found.key]
            if await self.audit.blob_sizes(key) or await self.audit.referenced(key):
                return
            removed = await self.blobs.remove_blob_if_unchanged(found.key, run.cutoff)
            problem = _outcome(problem, removed, "left: it was published again meanwhile")
        run.problems.append(problem)

    async def _corrupt_blob(
        self, run: _Run, digest: str, actual: str, length: int, recorded: int, started: float
    ) -> None:
        sizes = (
            "" if length == recorded else f"; it is {length} bytes, the database says {recorded}"
        )
        problem = Problem(
            "corrupt-blob",
            "damage",
            digest,
            f"the blob's bytes hash to {actual}{sizes}",
            "moves the file into the storage's quarantine/",
            f"upload the blob again: {_REUPLOAD}",
            tuple(await self.audit.blob_users(digest)),
        )
        if run.repair:
            # A publish of good bytes after we started reading is newer than ``started``.
            moved = await self.blobs.quarantine_blob(digest, started)
            if moved is not None:
                run.quarantined.add(digest)
            problem = replace(
                problem,
                outcome=f"moved to {moved}" if moved else "left: it was published again meanwhile",
            )
        run.problems.append(problem)

    # -- blobs: rows -> storage -------------------------------------------------
    async def _blob_rows(self, run: _Run) -> None:
        after = ""
        while rows := await self.audit.blob_rows(after, _BATCH * 4):
            for row in rows:
                run.checked.blob_rows += 1
                if row.digest in run.quarantined:
                    continue  # reported as corrupt-blob
                try:
                    present = await self.blobs.stat(row.digest) is not None
                except ValueError:  # not a digest a driver can store
                    present = False
                if present or row.digest not in await self.audit.blob_sizes([row.digest]):
                    continue  # there, or the row went meanwhile (a clean-up removing both)
                run.problems.append(
                    Problem(
                        "missing-blob-file",
                        "damage",
                        row.digest,
                        f"the database records this blob ({row.size} bytes) but its file is gone",
                        "nothing",
                        f"upload the blob again: {_REUPLOAD}",
                        tuple(await self.audit.blob_users(row.digest)),
                    )
                )
            after = rows[-1].digest

    # -- references -------------------------------------------------------------
    async def _references(self, run: _Run) -> None:
        c = run.checked
        c.repository_blobs = await self.audit.count("repository_blobs")
        c.manifest_blobs = await self.audit.count("manifest_blobs")
        c.manifest_children = await self.audit.count("manifest_children")
        c.tags = await self.audit.count("tags")
        for ref in await self.audit.dangling_references():
            run.problems.append(_dangling(ref))

    async def _manifests(self, run: _Run) -> None:
        after = 0
        while page := await self.audit.manifest_page(after, _MANIFEST_PAGE):
            for manifest in page:
                run.checked.manifests += 1
                problem = _manifest_problem(manifest)
                if problem is not None:
                    run.problems.append(problem)
            after = page[-1].id

    # -- uploads ----------------------------------------------------------------
    async def _upload_files(self, run: _Run) -> None:
        await self._in_batches(run, self.blobs.scan_uploads(), "upload", self._upload_batch)

    async def _upload_batch(self, run: _Run, batch: list[StoredFile]) -> None:
        sessions = await self.audit.uploads_present([f.key for f in batch])
        for found in batch:
            run.checked.upload_files += 1
            if found.key in sessions:
                continue
            if found.changed_at >= run.cutoff:
                run.in_grace += 1
                continue
            problem = Problem(
                "orphaned-upload-file",
                "garbage",
                found.key,
                f"upload bytes ({found.size}) of a session the database does not know",
                "removes the file",
            )
            if run.repair:
                removed = await self.blobs.remove_upload_if_idle(found.key, run.cutoff)
                problem = _outcome(problem, removed, "left: in use or changed meanwhile")
            run.problems.append(problem)

    async def _upload_rows(self, run: _Run) -> None:
        after = ""
        while rows := await self.audit.upload_rows(after, _BATCH * 4):
            for row in rows:
                run.checked.uploads += 1
                stored = await self.blobs.stat_upload(row.id)
                updated = row.updated_at.timestamp()
                where = (row.repository,)
                if stored is None:
                    if updated >= run.cutoff:
                        run.in_grace += 1  # a session being opened: row first, then file
                        continue
                    problem = Problem(
                        "orphaned-upload-row",
                        "garbage",
                        row.id,
                        "an upload session whose bytes are gone: it cannot go on",
                        "removes the session's row (its client starts the upload again)",
                        repositories=where,
                    )
                    if run.repair:
                        gone = await self.blobs.stat_upload(row.id) is None
                        removed = gone and await self.store.delete_upload(row.id)
                        problem = _outcome(problem, removed, "left: its bytes came back")
                elif stored.size < row.size:
                    problem = Problem(
                        "broken-upload",
                        "garbage",
                        row.id,
                        f"the session acknowledged {row.size} bytes but storage holds "
                        f"{stored.size}: it cannot go on",
                        "removes the session's row and bytes (its client starts again)",
                        repositories=where,
                    )
                    if run.repair:
                        await self.store.delete_upload(row.id)
                        removed = await self.blobs.remove_upload_if_idle(row.id, float("inf"))
                        problem = _outcome(problem, removed, "row removed; bytes in use, left")
                elif max(updated, stored.changed_at) < run.abandoned_before:
                    idle_days = (run.now - max(updated, stored.changed_at)) / 86400
                    problem = Problem(
                        "abandoned-upload",
                        "garbage",
                        row.id,
                        f"an upload session ({row.size} bytes) idle for {idle_days:.1f} days",
                        "removes the session's bytes and row",
                        repositories=where,
                    )
                    if run.repair:
                        removed = await self.blobs.remove_upload_if_idle(
                            row.id, run.abandoned_before
                        )
                        if removed:
                            await self.store.delete_upload(row.id)
                        problem = _outcome(problem, removed, "left: in use again")
                else:
                    continue
                run.problems.append(problem)
            after = rows[-1].id


#: How to put a blob's bytes back. The registry answers HEAD for a blob from its row,
#: so clients that check first (docker, skopeo, podman) see it present and skip it.
_REUPLOAD = (
    "upload its bytes with a plain POST and PUT to /v2/<repository>/blobs/uploads/ "
    "(that rewrites the file; clients that check for the blob first skip the upload)"
)


def _outcome(problem: Problem, done: bool, otherwise: str) -> Problem:
    return replace(problem, repaired=done, outcome="removed" if done else otherwise)


def _stray(found: StoredFile, area: str) -> Problem:
    return Problem(
        "stray-file",
        "stray",
        found.key,
        f"a file in the {area} area that hamn did not write (not named as hamn names them)",
        "nothing",
        "inspect it and remove it by hand",
    )


def _dangling(ref: DanglingReference) -> Problem:
    repo = ref.repository
    if ref.table == "repository_blobs":
        return Problem(
            "dangling-blob-link",
            "damage",
            ref.target,
            f"{repo} links blob {ref.target}, which the database does not record",
            "nothing",
            f"upload the blob to {repo} again: {_REUPLOAD}",
            (repo,),
        )
    if ref.table == "manifest_blobs":
        return Problem(
            "missing-manifest-blob",
            "damage",
            ref.target,
            f"manifest {ref.source} in {repo} names blob {ref.target}, which the database "
            "does not record",
            "nothing",
            f"upload blob {ref.target} to {repo} again: {_REUPLOAD}",
            (repo,),
        )
    if ref.table == "manifest_children":
        return Problem(
            "missing-child-manifest",
            "damage",
            ref.target,
            f"index {ref.source} in {repo} names manifest {ref.target}, which {repo} does not hold",
            "nothing",
            f"push manifest {ref.target} to {repo} again, or delete the index",
            (repo,),
        )
    return Problem(
        "dangling-tag",
        "damage",
        f"{repo}:{ref.source}",
        f"tag {ref.source} in {repo} points at {ref.target}",
        "nothing",
        "push the tag again, or delete it",
        (repo,),
    )


def _manifest_problem(m: AuditedManifest) -> Problem | None:
    """What is wrong with a stored manifest: its bytes, or its recorded references."""
    where = (m.repository,)
    redo = f"delete manifest {m.digest} from {m.repository} (its tags go with it) and push it again"
    algorithm = m.digest.split(":", 1)[0]
    actual = digest_bytes(m.content, algorithm) if algorithm in ALGORITHMS else "?"
    if actual != m.digest or len(m.content) != m.size:
        return Problem(
            "corrupt-manifest",
            "damage",
            m.digest,
            f"the stored manifest's {len(m.content)} bytes hash to {actual} "
            f"(recorded size {m.size})",
            "nothing",
            redo,
            where,
        )
    try:
        parsed = parse_manifest(m.content, m.media_type)
    except HamnError as exc:
        return Problem(
            "unreadable-manifest",
            "damage",
            m.digest,
            f"the stored manifest no longer parses as {m.media_type}: {exc.message}",
            "nothing",
            redo,
            where,
        )
    named_blobs = {d.digest for d in parsed.blobs}
    named_children = {d.digest for d in parsed.manifests}
    if named_blobs == m.blobs and named_children == m.children:
        return None
    unrecorded = sorted((named_blobs - m.blobs) | (named_children - m.children))
    unnamed = sorted((m.blobs - named_blobs) | (m.children - named_children))
    parts = []
    if unrecorded:
        parts.append(f"names {', '.join(unrecorded)} without a recorded reference")
    if unnamed:
        parts.append(f"has references recorded to {', '.join(unnamed)} that it does not name")
    return Problem(
        "manifest-references-mismatch",
        "damage",
        m.digest,
        f"manifest {m.digest} in {m.repository} " + " and ".join(parts),
        "nothing",
        f"push it again (that records missing references), or {redo}",
        where,
    )
