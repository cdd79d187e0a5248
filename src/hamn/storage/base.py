"""The blob driver contract every storage backend implements.

A driver stores opaque bytes under content-addressed keys and upload-session
keys; it knows nothing of repositories, manifests or metadata. Writers follow
Distribution's shape: append, then ``commit`` (atomic publish) or ``cancel``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """A storage backend failed; the operation may be retried."""


class StorageNotFound(StorageError):
    """The blob or upload does not exist (or is shorter than its recorded size)."""


class StorageBusy(StorageError):
    """Another writer holds the upload; the caller should retry later."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file a storage scan found (for fsck): a blob's or an upload's bytes.

    ``key`` is the blob digest or upload id the file is stored as; for a stray
    file (named like nothing hamn writes) it is the file's place under the
    storage root. ``changed_at`` (POSIX seconds) is the last change to the
    file's bytes *or its name*: publishing a blob is a rename, so a blob just
    published is recent even when its upload's bytes were written long ago.
    """

    key: str
    size: int
    changed_at: float
    stray: bool = False


class UploadWriter(Protocol):
    """Exclusive, appending access to one upload session's bytes."""

    @property
    def size(self) -> int:
        """Bytes written so far (the upload's offset)."""
        ...

    async def write(self, buffers: Sequence[bytes]) -> None:
        """Append ``buffers`` in order."""
        ...

    async def truncate(self, size: int) -> None:
        """Drop everything after ``size`` bytes (a chunk that failed part-way)."""
        ...

    async def flush(self) -> None:
        """Make every byte written so far durable and readable by any process (another
        server may continue the upload), before its offset is acknowledged."""
        ...

    async def commit(self, digest: str) -> None:
        """Publish the upload as the blob ``digest`` atomically and release the writer."""
        ...

    async def close(self) -> None:
        """Release the writer, keeping the upload for a later request."""
        ...

    async def cancel(self) -> None:
        """Delete the upload's bytes and release the writer."""
        ...


class BlobDriver(Protocol):
    """Content-addressed blob storage plus resumable upload sessions."""

    name: str

    async def stat(self, digest: str) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""
        ...

    async def open_upload(self, upload_id: str, size: int, *, create: bool) -> UploadWriter:
        """Open the upload exclusively, positioned at ``size`` bytes.

        Bytes past ``size`` (left by a request that died) are dropped. Raises
        StorageNotFound when the upload is missing or shorter than ``size``,
        StorageBusy when another writer holds it.
        """
        ...

    def read_upload(self, upload_id: str, size: int) -> AsyncIterator[bytes]:
        """The first ``size`` bytes of an upload (to rebuild its hash state)."""
        ...

    async def delete_upload(self, upload_id: str) -> None:
        """Remove an upload's bytes if present (abandoned-upload clean-up)."""
        ...

    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when None) of the blob from ``offset``."""
        ...

    async def signed_url(self, digest: str, expires_in: float) -> str | None:
        """A URL that serves the blob's bytes without other credentials until
        ``expires_in`` seconds from now (an Azure SAS, an S3 presigned URL), or None
        when the backend has none (the filesystem: hamn signs its own)."""
        ...

    def local_path(self, digest: str) -> str | None:
        """A local file path for zero-copy sends, when the backend is a local disk."""
        ...

    async def delete(self, digest: str) -> None:
        """Remove the blob's bytes if present (garbage collection calls it holding
        :meth:`digest_lock`, after the blob's row is gone)."""
        ...

    def digest_lock(self, digest: str) -> AbstractAsyncContextManager[None]:
        """Hold the blob's lock, shared by every process on this storage, for as long
        as the ``async with`` lasts.

        It closes the race between a push and garbage collection: a publish holds
        it from making the bytes visible until their row and link are committed,
        a mount from finding the blob until its link is committed, and garbage
        collection from re-checking that nothing needs the blob until its bytes
        are gone. Held for milliseconds; raises StorageBusy if it cannot be had
        within a minute. Local disks use a lock file; object-storage drivers
        (no file locks) use a lease kept in the metadata database
        (:mod:`hamn.storage.leases`), handed to them by the composition root.
        """
        ...

    def list_blobs(self) -> AsyncIterator[str]:
        """Every stored blob digest (for fsck and garbage collection)."""
        ...

    # -- fsck: read-only scans, and removals that never race a live push ---------
    def scan_blobs(self) -> AsyncIterator[StoredFile]:
        """Every file in the blob area, in digest order; strays marked ``stray``."""
        ...

    def scan_uploads(self) -> AsyncIterator[StoredFile]:
        """Every file in the upload area; files not named as upload ids marked ``stray``."""
        ...

    async def stat_upload(self, upload_id: str) -> StoredFile | None:
        """An upload's bytes (size, last change), or None when it has none."""
        ...

    async def remove_blob_if_unchanged(self, digest: str, changed_before: float) -> bool:
        """Remove the blob's bytes only if they last changed before ``changed_before``.

        A blob published again meanwhile (a new file under the same name) is
        left alone, whenever the publish happens. True if bytes were removed.
        """
        ...

    async def quarantine_blob(self, digest: str, changed_before: float) -> str | None:
        """Move the blob's bytes out of the blob area (kept for inspection), under the
        same rule as :meth:`remove_blob_if_unchanged`; where they went, or None."""
        ...

    async def remove_upload_if_idle(self, upload_id: str, changed_before: float) -> bool:
        """Remove an upload's bytes if no writer holds them and they last changed before
        ``changed_before``. True if bytes were removed."""
        ...

    def close(self) -> None:
        """Release the driver's threads and connections."""
        ...
