"""A local-filesystem blob driver.

Key layout, the only place it is defined::

    <root>/blobs/<algorithm>/<first two hex chars>/<hex>   published blob bytes
    <root>/uploads/<upload id>                             bytes of an upload in progress
    <root>/locks/<algorithm>-<hex>                         a blob's lock (digest_lock), there
                                                           only while someone holds it
    <root>/quarantine/<algorithm>-<hex>-<unix time>        corrupt blobs ``hamn fsck --repair``
                                                           moved aside (``.removing-*``: a
                                                           removal fsck was interrupted in)

Uploads become blobs by ``rename(2)``, so a blob path either holds the whole,
verified content or does not exist: a crash never leaves a partial blob
visible. With ``fsync`` on, the data and the directory entry are flushed
before a commit returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from hamn.storage.base import StorageBusy, StorageError, StorageNotFound, StoredFile, UploadWriter

_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")
_DIGEST_RE = re.compile(r"^(?:(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128}))\Z")
#: Hex length of each algorithm's blob file names (the scan's idea of a well-named blob).
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_PREFIX_RE = re.compile(r"^[0-9a-f]{2}\Z")
_READ_CHUNK = 1024 * 1024
_INLINE_WRITE = 64 * 1024
#: How long digest_lock waits for another holder before giving up (StorageBusy).
LOCK_WAIT_SECONDS = 60.0
T = TypeVar("T")


class FilesystemDriver:
    """Blobs and uploads in a directory tree on a local disk."""

    name = "filesystem"

    def __init__(self, root: str, *, fsync: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._blobs = os.path.join(self.root, "blobs")
        self._uploads = os.path.join(self.root, "uploads")
        self._quarantine = os.path.join(self.root, "quarantine")
        self._locks = os.path.join(self.root, "locks")
        os.makedirs(self._blobs, exist_ok=True)
        os.makedirs(self._uploads, exist_ok=True)
        os.makedirs(self._locks, exist_ok=True)
        # Disk I/O runs off the event loop; a few threads keep reads and writes overlapping.
        self._io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hamn-fs")

    def close(self) -> None:
        """Stop the I/O threads."""
        self._io.shutdown(wait=True)

    # -- keys -----------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        """The path of a blob's bytes (validated against path tricks)."""
        m = _DIGEST_RE.match(digest)
        if m is None:
            raise ValueError(f"not a storable digest: {digest[:100]!r}")
        algorithm = m.group(1) or m.group(3)
        hexpart = m.group(2) or m.group(4)
        return os.path.join(self._blobs, algorithm, hexpart[:2], hexpart)

    def upload_path(self, upload_id: str) -> str:
        """The path of an upload's bytes (validated against path tricks)."""
        if not _UPLOAD_ID_RE.match(upload_id):
            raise StorageNotFound(upload_id)
        return os.path.join(self._uploads, upload_id)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- blobs ----------------------------------------------------------------
    async def stat(self, digest: str) -> int | None:
        """The blob's size, or None."""
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    async def signed_url(self, digest: str, expires_in: float) -> str | None:
        """None: a local disk has no URLs of its own; hamn signs its own URLs for it."""
        self.blob_path(digest)
        return None

    def local_path(self, digest: str) -> str | None:
        """Blobs are local files: the path for zero-copy sends."""
        return self.blob_path(digest)

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream part or all of a blob."""
        try:
            fd = os.open(self.blob_path(digest), os.O_RDONLY)
        except FileNotFoundError:
            raise StorageNotFound(digest) from None
        try:
            async for chunk in self._read_fd(fd, offset, length):
                yield chunk
        finally:
            os.close(fd)

    async def _read_fd(self, fd: int, offset: int, length: int | None) -> AsyncIterator[bytes]:
        remaining = length if length is not None else os.fstat(fd).st_size - offset
        while remaining > 0:
            chunk = await self._run(os.pread, fd, min(_READ_CHUNK, remaining), offset)
            if not chunk:
                raise StorageNotFound("blob shorter than expected")
            offset += len(chunk)
            remaining -= len(chunk)
            yield chunk

    async def delete(self, digest: str) -> None:
        """Remove a blob's bytes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.blob_path(digest))

    def _try_lock(self, path: str) -> int | None:
        """The lock file's descriptor, flock-held, or None when another holder has it.

        The holder removes the file before it lets go, so a waiter may win the
        lock of a file that is gone: it counts only if ``path`` is still the file
        we locked (the usual lock-file dance), else the caller tries again.
        """
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is None or (current.st_ino, current.st_dev) != (held.st_ino, held.st_dev):
            os.close(fd)
            return None
        return fd

    @asynccontextmanager
    async def digest_lock(self, digest: str) -> AsyncIterator[None]:
        """Hold the blob's lock file (see BlobDriver.digest_lock).

        Waiting polls with a short back-off instead of a blocking flock, so
        waiters never tie up the I/O threads the holder needs to finish. Lock
        files exist only while held: a registry's millions of digests leave none.
        """
        self.blob_path(digest)  # validates the digest: no path tricks in the lock's name
        algorithm, hexpart = digest.split(":", 1)
        path = os.path.join(self._locks, f"{algorithm}-{hexpart}")
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = 0.001
        while (fd := self._try_lock(path)) is None:
            if time.monotonic() > deadline:
                raise StorageBusy(f"the lock of blob {digest} is held")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    async def list_blobs(self) -> AsyncIterator[str]:
        """Every stored blob digest."""
        for algorithm in sorted(os.listdir(self._blobs)):
            base = os.path.join(self._blobs, algorithm)
            for prefix in sorted(os.listdir(base)):
                for name in sorted(os.listdir(os.path.join(base, prefix))):
                    yield f"{algorithm}:{name}"

    # -- fsck -----------------------------------------------------------------
    def _file(self, key: str, st: os.stat_result, *, stray: bool = False) -> StoredFile:
        # ctime moves on rename(2) (how a blob is published) as well as on writes.
        return StoredFile(key, st.st_size, max(st.st_mtime, st.st_ctime), stray)

    def _stray(self, path: str) -> StoredFile:
        rel = os.path.relpath(path, self.root)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return StoredFile(rel, 0, 0.0, True)
        return self._file(rel, st, stray=True)

    def _scan_directory(self, path: str) -> list[tuple[str, bool, os.stat_result | None]]:
        """Entries of a directory: (name, is a directory, lstat of a regular file)."""
        out: list[tuple[str, bool, os.stat_result | None]] = []
        try:
            with os.scandir(path) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            out.append((entry.name, True, None))
                        elif entry.is_file(follow_symlinks=False):
                            out.append((entry.name, False, entry.stat(follow_symlinks=False)))
                        else:
                            out.append((entry.name, False, None))  # symlink, fifo...: stray
                    except FileNotFoundError:
                        continue  # removed while we looked
        except FileNotFoundError:
            return []
        return sorted(out, key=lambda e: e[0])

    async def scan_blobs(self) -> AsyncIterator[StoredFile]:
        """Every file under ``blobs/``; anything not at ``<alg>/<xx>/<hex>`` is a stray."""
        for alg, alg_is_dir, _ in await self._run(self._scan_directory, self._blobs):
            alg_path = os.path.join(self._blobs, alg)
            if not alg_is_dir or alg not in _HEX_LENGTHS:
                yield self._stray(alg_path)
                continue
            for prefix, prefix_is_dir, _ in await self._run(self._scan_directory, alg_path):
                prefix_path = os.path.join(alg_path, prefix)
                if not prefix_is_dir or not _PREFIX_RE.match(prefix):
                    yield self._stray(prefix_path)
                    continue
                for name, is_dir, st in await self._run(self._scan_directory, prefix_path):
                    digest = f"{alg}:{name}"
                    well_named = (
                        _DIGEST_RE.match(digest) is not None
                        and len(name) == _HEX_LENGTHS[alg]
                        and name.startswith(prefix)
                    )
                    if is_dir or st is None or not well_named:
                        yield self._stray(os.path.join(prefix_path, name))
                    else:
                        yield self._file(digest, st)

    async def scan_uploads(self) -> AsyncIterator[StoredFile]:
        """Every file under ``uploads/``; names that are not upload ids are strays."""
        for name, is_dir, st in await self._run(self._scan_directory, self._uploads):
            if is_dir or st is None or not _UPLOAD_ID_RE.match(name):
                yield self._stray(os.path.join(self._uploads, name))
            else:
                yield self._file(name, st)

    async def stat_upload(self, upload_id: str) -> StoredFile | None:
        """An upload's bytes, or None."""
        try:
            return self._file(upload_id, os.stat(self.upload_path(upload_id)))
        except (FileNotFoundError, StorageNotFound):
            return None

    def _take_aside(self, path: str, dest: str, changed_before: float) -> bool:
        """Move ``path`` to ``dest`` if the file there last changed before ``changed_before``.

        A publish replaces the file (a new inode) by rename: if one lands between
        our look and our move, we moved the new file, so it goes straight back
        (unless yet another publish of the same digest took its place: then ours
        is a copy of the same bytes and goes).
        """
        try:
            seen = os.stat(path)
        except FileNotFoundError:
            return False
        if max(seen.st_mtime, seen.st_ctime) >= changed_before:
            return False
        os.makedirs(self._quarantine, exist_ok=True)
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return False
        except OSError as exc:  # e.g. the quarantine is on another file system
            raise StorageError(f"cannot move {path} aside: {exc}") from exc
        taken = os.stat(dest)
        if (taken.st_ino, taken.st_dev) == (seen.st_ino, seen.st_dev):
            return True
        with contextlib.suppress(FileExistsError):
            os.link(dest, path)
        os.unlink(dest)
        return False

    def _remove_blob(self, digest: str, changed_before: float) -> bool:
        aside = os.path.join(self._quarantine, f".removing-{uuid.uuid4().hex}")
        if not self._take_aside(self.blob_path(digest), aside, changed_before):
            return False
        os.unlink(aside)
        return True

    async def remove_blob_if_unchanged(self, digest: str, changed_before: float) -> bool:
        """Remove a blob's bytes unless they changed (or were republished) since
        ``changed_before``."""
        return await self._run(self._remove_blob, digest, changed_before)

    def _quarantine_blob(self, digest: str, changed_before: float) -> str | None:
        path = self.blob_path(digest)  # validates the digest first
        algorithm, hexpart = digest.split(":", 1)
        dest = os.path.join(self._quarantine, f"{algorithm}-{hexpart}-{int(time.time())}")
        return dest if self._take_aside(path, dest, changed_before) else None

    async def quarantine_blob(self, digest: str, changed_before: float) -> str | None:
        """Move a blob's bytes to ``quarantine/`` (see remove_blob_if_unchanged)."""
        return await self._run(self._quarantine_blob, digest, changed_before)

    def _remove_upload(self, upload_id: str, changed_before: float) -> bool:
        path = self.upload_path(upload_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            # Every writer holds this lock while it writes: a held lock is a live request.
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            held = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                return False
            if current.st_ino != held.st_ino or max(held.st_mtime, held.st_ctime) >= changed_before:
                return False
            os.unlink(path)
            return True
        finally:
            os.close(fd)

    async def remove_upload_if_idle(self, upload_id: str, changed_before: float) -> bool:
        """Remove an upload's bytes unless a writer holds them or they changed since
        ``changed_before``."""
        try:
            return await self._run(self._remove_upload, upload_id, changed_before)
        except StorageNotFound:
            return False

    # -- uploads --------------------------------------------------------------
    async def open_upload(self, upload_id: str, size: int, *, create: bool) -> UploadWriter:
        """Open an upload exclusively at ``size`` bytes (see BlobDriver.open_upload)."""
        path = self.upload_path(upload_id)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            raise StorageNotFound(upload_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageBusy(upload_id) from None
        try:
            held = os.fstat(fd)
            try:
                same_file = os.stat(path).st_ino == held.st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:
                # Committed or cancelled by the previous holder between open and lock.
                raise StorageNotFound(upload_id)
            actual = held.st_size
            if actual < size:
                raise StorageNotFound(upload_id)
            if actual > size:
                os.ftruncate(fd, size)
            os.lseek(fd, size, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return _FilesystemUploadWriter(self, upload_id, path, fd, size)

    async def read_upload(self, upload_id: str, size: int) -> AsyncIterator[bytes]:
        """The first ``size`` bytes of an upload."""
        try:
            fd = os.open(self.upload_path(upload_id), os.O_RDONLY)
        except FileNotFoundError:
            raise StorageNotFound(upload_id) from None
        try:
            async for chunk in self._read_fd(fd, 0, size):
                yield chunk
        finally:
            os.close(fd)

    async def delete_upload(self, upload_id: str) -> None:
        """Remove an upload's bytes."""
        with contextlib.suppress(FileNotFoundError, StorageNotFound):
            os.unlink(self.upload_path(upload_id))

    def _fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _publish(self, fd: int, src: str, digest: str) -> None:
        dest = self.blob_path(digest)
        parent = os.path.dirname(dest)
        os.makedirs(parent, exist_ok=True)
        if self.fsync:
            os.fsync(fd)
        # rename() is atomic: readers see the old state or the whole blob.
        os.rename(src, dest)
        if self.fsync:
            self._fsync_dir(parent)


class _FilesystemUploadWriter:
    """An flock-held file descriptor on one upload."""

    def __init__(self, driver: FilesystemDriver, upload_id: str, path: str, fd: int, size: int):
        self._driver = driver
        self._id = upload_id
        self._path = path
        self._fd: int | None = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def _require_fd(self) -> int:
        if self._fd is None:
            raise StorageNotFound(self._id)
        return self._fd

    def _writev(self, fd: int, buffers: Sequence[bytes]) -> None:
        views = [memoryview(b) for b in buffers if b]
        while views:
            written = os.writev(fd, views[:1024])
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written and views:
                views[0] = views[0][written:]

    async def write(self, buffers: Sequence[bytes]) -> None:
        fd = self._require_fd()
        size = sum(len(b) for b in buffers)
        if size <= _INLINE_WRITE:
            # A small write to the page cache costs less than a thread hop.
            self._writev(fd, buffers)
        else:
            await self._driver._run(self._writev, fd, buffers)
        self._size += size

    async def truncate(self, size: int) -> None:
        fd = self._require_fd()
        os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)
        self._size = size

    async def flush(self) -> None:
        # Written bytes are in the page cache, which every process of this host reads.
        # A power cut may lose them after the offset was acknowledged; the next open
        # then finds the upload short and the client starts it again (never wrong data).
        self._require_fd()

    async def commit(self, digest: str) -> None:
        fd = self._require_fd()
        try:
            await self._driver._run(self._driver._publish, fd, self._path, digest)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    async def cancel(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            await self.close()
