"""A blob driver on object storage (Azure Blob Storage, S3), for many servers sharing it.

Key layout, the only place it is defined (``<prefix>`` is ``storage_prefix``)::

    <prefix>blobs/<algorithm>/<first two hex chars>/<hex>    published blob bytes
    <prefix>uploads/<upload id>/<start offset, 20 digits>     one object per flushed segment
                                                             of an upload in progress; an
                                                             upload with no bytes yet is
                                                             one empty segment at offset 0
    <prefix>quarantine/<algorithm>-<hex>-<unix time>         corrupt blobs ``hamn fsck
                                                             --repair`` moved aside

Uploads. A writer stages the bytes of the current request in a local spool file
(constant memory whatever the blob's size); :meth:`flush` sends the spool as the
upload's next segment, so any server can continue the upload. Commit sends the
spool straight to the blob's key when the upload has no earlier segment (the
usual monolithic push), else composes the segments into the blob's key on the
service's side (:meth:`ObjectStore.compose`, with a local concatenation where
the service cannot), then deletes them. A blob key only ever holds the whole,
verified content: both services make an object visible only when its last byte
has arrived. A blob pushed again is not sent again (the key is its content's
digest): the object is only touched, so its last-modified time says it was just
published, which is what fsck's "changed since" rule (and so a removal racing
the push) goes by.

Exclusivity. Object stores have no file locks: a writer holds the lease
``upload:<id>`` and a blob's :meth:`digest_lock` the lease ``blob:<digest>``
(:mod:`hamn.storage.leases`, kept in the metadata database). Removals that
check a last-modified time and then delete (fsck, garbage collection) hold the
blob's lease across both steps, so a publish, which holds it from its upload
until its row commits, can never land between them; an upload is removed as idle
only by whoever can take its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar

from hamn.storage.base import StorageBusy, StorageError, StorageNotFound, StoredFile, UploadWriter
from hamn.storage.leases import HeldLease, Leases, holding, try_lease

logger = logging.getLogger(__name__)

_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")
_DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})\Z")
_BLOB_KEY_RE = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]{2})/([0-9a-f]+)\Z")
_SEGMENT_RE = re.compile(r"^uploads/([^/]+)/([0-9]{20})\Z")
_SECRET_RE = re.compile(
    r"(?i)(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|accountkey|"
    r"sharedaccesssignature)=[^&;\s\"']+"
)
#: Bytes up to which a write to the spool is cheaper inline than on a thread.
_INLINE_WRITE = 64 * 1024
_IOV_MAX = 1024
_COPY_CHUNK = 4 * 1024 * 1024
T = TypeVar("T")

#: The digests whose lease the current task holds (digest_lock is re-entrant, so a
#: removal called under garbage collection's lock does not wait for itself).
_HELD_DIGESTS: ContextVar[frozenset[str]] = ContextVar("hamn_held_digests", default=frozenset())


class RangeNotSatisfiable(StorageError):
    """A ranged read started at or past the object's end."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its full key, size and last-modified time (POSIX seconds)."""

    key: str
    size: int
    modified: float


class ObjectStore(Protocol):
    """The few synchronous primitives a blob driver needs from an object store.

    Implementations raise :class:`StorageNotFound` for a missing object,
    :class:`RangeNotSatisfiable` for a read past the end and :class:`StorageError`
    for anything else the service or the network does, with no secret (key,
    signature) in the message. The driver calls them on its threads.
    """

    name: str

    def ensure_container(self) -> None:
        """Create the container or bucket if it is missing."""
        ...

    def put_file(self, key: str, path: str, size: int) -> None:
        """Store the ``size`` bytes of the local file ``path`` (in parts: bounded memory)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object."""
        ...

    def get(self, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        """Stream ``length`` bytes (to the end when None) from ``offset``; the request is
        made before this returns, so a missing object raises here."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and time, or None."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; quiet if it is missing."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        ...

    def compose(self, dest: str, sources: Sequence[ObjectInfo]) -> bool:
        """Store the concatenation of ``sources`` (all non-empty) as ``dest`` on the
        service's side; False when the service cannot (the caller concatenates)."""
        ...

    def touch(self, info: ObjectInfo) -> bool:
        """Make the object's last-modified time now, its bytes unchanged; False when the
        service cannot for this object (the caller writes it again)."""
        ...

    def presign(self, key: str, expires_in: float) -> str:
        """A URL that reads the object without other credentials for ``expires_in`` s."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def redact(message: str) -> str:
    """``message`` without signatures or keys (SDK errors may quote a signed URL)."""
    return _SECRET_RE.sub(lambda m: f"{m.group(1)}=REDACTED", message)[:500]


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


class ObjectStorageDriver:
    """:class:`hamn.storage.base.BlobDriver` on an :class:`ObjectStore`, with leases for
    the locks and a local spool directory for the bytes of requests in flight."""

    def __init__(
        self, objects: ObjectStore, leases: Leases, spool_dir: str, *, prefix: str = ""
    ) -> None:
        self.objects = objects
        self.name = objects.name
        self.leases = leases
        self.spool_dir = os.path.abspath(spool_dir)
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        os.makedirs(self.spool_dir, exist_ok=True)
        # The SDKs block: every call runs on these threads, never on the event loop.
        self._io = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"hamn-{self.name}")
        self._container_ready = False

    def close(self) -> None:
        """Stop the I/O threads and close the service's connections."""
        self._io.shutdown(wait=True)
        self.objects.close()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call on the driver's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def ensure_container(self) -> None:
        """Create the container or bucket on first write (once per process)."""
        if not self._container_ready:
            await self.run(self.objects.ensure_container)
            self._container_ready = True

    def spool(self) -> IO[bytes]:
        """A new, nameless local file (gone with the process, whatever happens)."""
        return tempfile.TemporaryFile(dir=self.spool_dir, prefix="hamn-spool-")

    # -- keys ---------------------------------------------------------------------
    def blob_key(self, digest: str) -> str:
        """The key of a blob's bytes (validated: no key tricks)."""
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"not a storable digest: {digest[:100]!r}")
        algorithm, hexpart = digest.split(":", 1)
        return f"{self.prefix}blobs/{algorithm}/{hexpart[:2]}/{hexpart}"

    def upload_prefix(self, upload_id: str) -> str:
        """The common prefix of an upload's segments (validated)."""
        if not _UPLOAD_ID_RE.match(upload_id):
            raise StorageNotFound(upload_id)
        return f"{self.prefix}uploads/{upload_id}/"

    def segment_key(self, upload_id: str, start: int) -> str:
        """The key of the upload's segment that starts at byte ``start``."""
        return f"{self.upload_prefix(upload_id)}{start:020d}"

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (one listing, gathered on a thread)."""
        return await self.run(lambda: list(self.objects.list(prefix)))

    async def stream(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        """Pull a blocking chunk iterator on the driver's threads."""
        try:
            while (chunk := await self.run(next, chunks, None)) is not None:
                if chunk:
                    yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await self.run(close)

    # -- blobs --------------------------------------------------------------------
    async def stat(self, digest: str) -> int | None:
        """The blob's size, or None."""
        info = await self.run(self.objects.head, self.blob_key(digest))
        return None if info is None else info.size

    async def signed_url(self, digest: str, expires_in: float) -> str | None:
        """An Azure SAS or S3 presigned URL that reads the blob until it expires."""
        return await self.run(self.objects.presign, self.blob_key(digest), expires_in)

    def local_path(self, digest: str) -> str | None:
        """None: blobs are not local files."""
        self.blob_key(digest)
        return None

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream part or all of a blob with one ranged GET."""
        async for chunk in self._read_object(self.blob_key(digest), offset, length):
            yield chunk

    async def _read_object(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        if length == 0:
            info = await self.run(self.objects.head, key)
            if info is None or offset > info.size:
                raise StorageNotFound(key)
            return
        try:
            chunks = await self.run(self.objects.get, key, offset, length)
        except RangeNotSatisfiable:
            # Reading from the very end of an object is reading nothing.
            info = await self.run(self.objects.head, key)
            if info is not None and info.size == offset and length is None:
                return
            raise StorageNotFound(key) from None
        received = 0
        async for chunk in self.stream(chunks):
            received += len(chunk)
            yield chunk
        if length is not None and received != length:
            raise StorageNotFound(f"{key} is shorter than expected")

    async def delete(self, digest: str) -> None:
        """Remove a blob's bytes (quiet when they are gone)."""
        await self.run(self.objects.delete, self.blob_key(digest))

    @contextlib.asynccontextmanager
    async def digest_lock(self, digest: str) -> AsyncIterator[None]:
        """Hold the lease ``blob:<digest>`` (see BlobDriver.digest_lock); re-entrant
        within one task."""
        self.blob_key(digest)
        held = _HELD_DIGESTS.get()
        if digest in held:
            yield
            return
        async with holding(self.leases, f"blob:{digest}"):
            token = _HELD_DIGESTS.set(held | {digest})
            try:
                yield
            finally:
                _HELD_DIGESTS.reset(token)

    async def list_blobs(self) -> AsyncIterator[str]:
        """Every stored blob digest."""
        async for found in self.scan_blobs():
            if not found.stray:
                yield found.key

    # -- fsck and garbage collection ----------------------------------------------------
    async def scan_blobs(self) -> AsyncIterator[StoredFile]:
        """Every object under ``blobs/``, in key (so digest) order; misnamed ones are strays."""
        for info in await self.list_objects(f"{self.prefix}blobs/"):
            rel = info.key[len(self.prefix) :]
            m = _BLOB_KEY_RE.match(rel)
            digest = f"{m.group(1)}:{m.group(3)}" if m else ""
            if m and _DIGEST_RE.match(digest) and m.group(3).startswith(m.group(2)):
                yield StoredFile(digest, info.size, info.modified)
            else:
                yield StoredFile(rel, info.size, info.modified, True)

    async def scan_uploads(self) -> AsyncIterator[StoredFile]:
        """One entry per upload (its segments' total size and latest time); objects not
        named as segments of an upload id are strays."""
        current: str | None = None
        size, modified = 0, 0.0
        for info in await self.list_objects(f"{self.prefix}uploads/"):
            rel = info.key[len(self.prefix) :]
            m = _SEGMENT_RE.match(rel)
            upload_id = m.group(1) if m and _UPLOAD_ID_RE.match(m.group(1)) else None
            if upload_id != current:
                if current is not None:
                    yield StoredFile(current, size, modified)
                current, size, modified = upload_id, 0, 0.0
            if upload_id is None:
                yield StoredFile(rel, info.size, info.modified, True)
                continue
            size += info.size
            modified = max(modified, info.modified)
        if current is not None:
            yield StoredFile(current, size, modified)

    async def stat_upload(self, upload_id: str) -> StoredFile | None:
        """An upload's bytes (all its segments), or None."""
        try:
            found = await self.list_objects(self.upload_prefix(upload_id))
        except StorageNotFound:
            return None
        if not found:
            return None
        return StoredFile(upload_id, sum(i.size for i in found), max(i.modified for i in found))

    async def _unchanged_blob(self, digest: str, changed_before: float) -> str | None:
        """The blob's key if it exists and last changed before ``changed_before``."""
        key = self.blob_key(digest)
        info = await self.run(self.objects.head, key)
        return key if info is not None and info.modified < changed_before else None

    async def remove_blob_if_unchanged(self, digest: str, changed_before: float) -> bool:
        """Remove a blob's bytes unless they were written (or pushed again) since
        ``changed_before``; the blob's lease keeps a publish out between look and delete."""
        async with self.digest_lock(digest):
            key = await self._unchanged_blob(digest, changed_before)
            if key is None:
                return False
            await self.run(self.objects.delete, key)
            return True

    async def quarantine_blob(self, digest: str, changed_before: float) -> str | None:
        """Copy the blob's bytes to ``quarantine/`` and remove them from the blob area,
        under the rule of :meth:`remove_blob_if_unchanged`; the quarantine key, or None."""
        async with self.digest_lock(digest):
            key = await self._unchanged_blob(digest, changed_before)
            if key is None:
                return None
            info = await self.run(self.objects.head, key)
            algorithm, hexpart = digest.split(":", 1)
            dest = f"{self.prefix}quarantine/{algorithm}-{hexpart}-{int(time.time())}"
            await self.ensure_container()
            await self.compose(dest, [info] if info is not None and info.size else [])
            await self.run(self.objects.delete, key)
            return dest

    async def remove_upload_if_idle(self, upload_id: str, changed_before: float) -> bool:
        """Remove an upload's segments if nobody holds its lease and none changed since
        ``changed_before``."""
        try:
            prefix = self.upload_prefix(upload_id)
        except StorageNotFound:
            return False
        lease = await try_lease(self.leases, f"upload:{upload_id}")
        if lease is None:
            return False
        try:
            found = await self.list_objects(prefix)
            if not found or max(i.modified for i in found) >= changed_before:
                return False
            await self._delete_all(found)
            return True
        finally:
            await lease.release()

    async def _delete_all(self, found: Sequence[ObjectInfo]) -> None:
        # Later segments first: an interrupted removal leaves a shorter upload, never a gap.
        for info in sorted(found, key=lambda i: i.key, reverse=True):
            await self.run(self.objects.delete, info.key)

    # -- composing ----------------------------------------------------------------------
    async def compose(self, dest: str, sources: Sequence[ObjectInfo]) -> None:
        """Store the concatenation of ``sources`` as ``dest``: on the service's side when
        it can, else through a local spool file (bounded memory)."""
        sources = [s for s in sources if s.size]
        if not sources:
            await self.run(self.objects.put_bytes, dest, b"")
            return
        if await self.run(self.objects.compose, dest, sources):
            return
        with self.spool() as spool:
            for source in sources:
                chunks = await self.run(self.objects.get, source.key, 0, source.size)
                async for chunk in self.stream(chunks):
                    await self.run(spool.write, chunk)
            await self.run(spool.flush)
            await self.run(self.objects.put_file, dest, _fd_path(spool), spool.tell())

    # -- uploads --------------------------------------------------------------------
    async def open_upload(self, upload_id: str, size: int, *, create: bool) -> UploadWriter:
        """Open an upload exclusively at ``size`` bytes (see BlobDriver.open_upload)."""
        prefix = self.upload_prefix(upload_id)
        lease = await try_lease(self.leases, f"upload:{upload_id}")
        if lease is None:
            raise StorageBusy(upload_id)
        try:
            found = await self.list_objects(prefix)
            if not found and not create:
                raise StorageNotFound(upload_id)
            chain = _chain(found, prefix)
            if (chain[-1].end if chain else 0) < size:
                raise StorageNotFound(upload_id)
            kept = await self.cut(upload_id, chain, size, found)
        except BaseException:
            await lease.release()
            raise
        return _ObjectUploadWriter(self, upload_id, lease, kept)

    async def cut(
        self,
        upload_id: str,
        chain: Sequence[_Segment],
        size: int,
        found: Sequence[ObjectInfo] | None = None,
    ) -> list[_Segment]:
        """Make the upload's stored bytes exactly its first ``size`` (``chain`` holds at
        least that many): a segment ``size`` falls inside is stored again shortened (the
        same key, replaced at once), and every other object after it (of ``found``, all
        the upload's objects, when given) is deleted."""
        kept: list[_Segment] = []
        for segment in chain:
            if segment.end <= size:
                kept.append(segment)
            elif segment.start < size or segment.start == 0:
                # At 0 too: an upload cut to nothing still exists, as one empty segment.
                await self._shorten(
                    self.segment_key(upload_id, segment.start), size - segment.start
                )
                kept.append(_Segment(segment.start, size - segment.start))
        keep = {self.segment_key(upload_id, s.start) for s in kept}
        if found is None:
            found = [ObjectInfo(self.segment_key(upload_id, s.start), s.size, 0.0) for s in chain]
        await self._delete_all([i for i in found if i.key not in keep])
        return kept

    async def _shorten(self, key: str, length: int) -> None:
        with self.spool() as spool:
            if length:
                async for chunk in self._read_object(key, 0, length):
                    await self.run(spool.write, chunk)
                await self.run(spool.flush)
            await self.run(self.objects.put_file, key, _fd_path(spool), length)

    async def read_upload(self, upload_id: str, size: int) -> AsyncIterator[bytes]:
        """The first ``size`` bytes of an upload, segment after segment."""
        prefix = self.upload_prefix(upload_id)
        found = await self.list_objects(prefix)
        if not found:
            raise StorageNotFound(upload_id)
        chain = _chain(found, prefix)
        if (chain[-1].end if chain else 0) < size:
            raise StorageNotFound(upload_id)
        for segment in chain:
            if segment.start >= size:
                break
            length = min(segment.size, size - segment.start)
            if length:
                key = self.segment_key(upload_id, segment.start)
                async for chunk in self._read_object(key, 0, length):
                    yield chunk

    async def delete_upload(self, upload_id: str) -> None:
        """Remove an upload's segments (quiet when there are none)."""
        try:
            prefix = self.upload_prefix(upload_id)
        except StorageNotFound:
            return
        await self._delete_all(await self.list_objects(prefix))


def _fd_path(spool: IO[bytes]) -> str:
    """A path that opens the nameless spool file again (the SDKs upload from paths)."""
    return f"/proc/self/fd/{spool.fileno()}"


def _chain(found: Sequence[ObjectInfo], prefix: str) -> list[_Segment]:
    """The segments that follow one another from offset 0 (anything after a gap is
    left over from a request that died, and never part of the upload)."""
    starts: dict[int, int] = {}
    for info in found:
        name = info.key[len(prefix) :]
        if len(name) == 20 and name.isdigit():
            starts[int(name)] = info.size
    chain: list[_Segment] = []
    offset = 0
    while offset in starts:
        chain.append(_Segment(offset, starts[offset]))
        if starts[offset] == 0:
            break
        offset += starts[offset]
    return chain


def _write_all(fd: int, buffers: Sequence[bytes]) -> None:
    """Write every buffer, in order, with as few system calls as the kernel allows."""
    views = [memoryview(b) for b in buffers if b]
    for first in range(0, len(views), _IOV_MAX):
        batch = views[first : first + _IOV_MAX]
        written = os.writev(fd, batch)
        for view in batch:
            if written >= len(view):
                written -= len(view)
                continue
            rest = view[written:]
            written = 0
            while rest:  # a short write (rare on a local file): finish it plainly
                rest = rest[os.write(fd, rest) :]


class _ObjectUploadWriter:
    """A lease-held upload: its stored segments plus the current request's spool."""

    def __init__(
        self,
        driver: ObjectStorageDriver,
        upload_id: str,
        lease: HeldLease,
        segments: list[_Segment],
    ) -> None:
        self._driver = driver
        self._id = upload_id
        self._lease: HeldLease | None = lease
        self._segments = segments
        self._stored = segments[-1].end if segments else 0
        self._spool: IO[bytes] | None = None
        self._spooled = 0

    @property
    def size(self) -> int:
        return self._stored + self._spooled

    def _held(self) -> HeldLease:
        if self._lease is None:
            raise StorageNotFound(self._id)
        if self._lease.lost:
            raise StorageBusy(f"the lease of upload {self._id} was lost")
        return self._lease

    def _spool_fd(self) -> int:
        if self._spool is None:
            self._spool = self._driver.spool()
        return self._spool.fileno()

    async def write(self, buffers: Sequence[bytes]) -> None:
        self._held()
        fd = self._spool_fd()
        size = sum(len(b) for b in buffers)
        if size <= _INLINE_WRITE:
            _write_all(fd, buffers)
        else:
            await self._driver.run(_write_all, fd, buffers)
        self._spooled += size

    def _reset_spool(self, size: int = 0) -> None:
        if self._spool is not None:
            os.ftruncate(self._spool.fileno(), size)
            os.lseek(self._spool.fileno(), size, os.SEEK_SET)
        self._spooled = size

    async def truncate(self, size: int) -> None:
        self._held()
        if size >= self._stored:
            self._reset_spool(size - self._stored)
            return
        self._segments = await self._driver.cut(self._id, self._segments, size)
        self._stored = size
        self._reset_spool()

    async def flush(self) -> None:
        self._held()
        if not self._spooled or self._spool is None:
            return
        await self._driver.ensure_container()
        key = self._driver.segment_key(self._id, self._stored)
        await self._driver.run(
            self._driver.objects.put_file, key, _fd_path(self._spool), self._spooled
        )
        self._segments = [s for s in self._segments if s.size] + [
            _Segment(self._stored, self._spooled)
        ]
        self._stored += self._spooled
        self._reset_spool()

    async def commit(self, digest: str) -> None:
        driver = self._driver
        published = False
        try:
            self._held()
            key = driver.blob_key(digest)
            await driver.ensure_container()
            stored = [s for s in self._segments if s.size]
            existing = await driver.run(driver.objects.head, key)
            if (
                existing is not None
                and existing.size == self.size
                and await driver.run(driver.objects.touch, existing)
            ):
                pass  # the same bytes are stored already (the key is their digest)
            elif not stored and self._spool is not None and self._spooled:
                # One request brought every byte: straight to the blob's key, no copy.
                await driver.run(driver.objects.put_file, key, _fd_path(self._spool), self.size)
            else:
                await self.flush()
                await driver.compose(key, self._segment_objects())
            published = True
            await self._forget()
        finally:
            if published:
                await self._release()
            else:
                await self._keep()

    def _segment_objects(self) -> list[ObjectInfo]:
        return [
            ObjectInfo(self._driver.segment_key(self._id, s.start), s.size, 0.0)
            for s in self._segments
            if s.size
        ]

    async def _keep(self) -> None:
        """Release the writer after a failed commit, keeping the bytes if storage lets us
        (a refused digest leaves the upload as it was, like the filesystem driver)."""
        try:
            await self.close()
        except Exception:
            logger.warning("could not keep the bytes of upload %s", self._id, exc_info=True)

    async def _forget(self) -> None:
        """Delete the upload's segments (after a commit or on cancel)."""
        try:
            await self._driver.delete_upload(self._id)
        except StorageError:
            # Published already: leftovers are upload garbage fsck and GC remove.
            logger.warning("could not delete the segments of upload %s", self._id)

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._spooled = 0
        if lease is not None:
            await lease.release()

    async def close(self) -> None:
        if self._lease is None:
            return
        try:
            if self._spooled:
                await self.flush()
            elif not self._segments:
                # Nothing stored yet: an empty segment says the upload exists.
                await self._driver.ensure_container()
                await self._driver.run(
                    self._driver.objects.put_bytes, self._driver.segment_key(self._id, 0), b""
                )
                self._segments = [_Segment(0, 0)]
        finally:
            await self._release()

    async def cancel(self) -> None:
        if self._lease is None:
            return
        try:
            await self._driver.delete_upload(self._id)
        finally:
            await self._release()
