"""Blob uploads: monolithic, single-POST, chunked and streamed, plus cross-repository mounts.

The request body streams through a pipeline: while the event loop receives the
next batch, the previous one is hashed on one thread and written on another
(hashlib and ``writev`` release the GIL), so memory stays bounded by two
batches whatever the blob size, and hashing runs beside the disk.

Crash safety: the acknowledged offset of an upload lives in the metadata
store and moves only after its bytes are written; bytes past it (from a
request that died) are dropped on the next open. A blob becomes visible only
when its verified bytes are published by the driver *and* linked in metadata.

Garbage collection: publishing and linking, and a mount's look-up and link, run
under the blob's ``digest_lock``, the lock garbage collection holds while it
re-checks and removes a blob (see :mod:`hamn.services.gc`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hamn.errors import (
    BLOB_UPLOAD_INVALID,
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    RANGE_INVALID,
    SIZE_INVALID,
    UPLOAD_BUSY,
    HamnError,
)
from hamn.metadata.models import Upload
from hamn.metadata.store import MetadataStore, UploadConflict
from hamn.oci.digest import DEFAULT_ALGORITHM, Hasher, new_hasher, parse_digest
from hamn.services.quota import Quotas, quota_error, quota_for
from hamn.services.registry import Target
from hamn.storage.base import BlobDriver, StorageBusy, StorageNotFound, UploadWriter

#: Bytes gathered from the body before a batch is handed to the hash and write threads.
BATCH_BYTES = 1024 * 1024
#: Batches up to this size are hashed on the event loop instead of a thread.
INLINE_BYTES = 64 * 1024
#: Hash states kept per process so consecutive chunks need not re-read the upload.
_HASH_STATES = 256

Body = AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """Where an upload stands: its id and acknowledged size."""

    id: str
    size: int


@dataclass(frozen=True, slots=True)
class CommittedBlob:
    """A blob made visible in a repository."""

    digest: str
    size: int


class BlobUploadService:
    """Starts, feeds, completes and cancels blob uploads; mounts blobs across repositories."""

    def __init__(
        self, store: MetadataStore, blobs: BlobDriver, *, quotas: Quotas | None = None
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.quotas: Quotas = quotas or {}
        self._hash_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hamn-hash")
        self._states: OrderedDict[str, tuple[int, Hasher]] = OrderedDict()

    # -- sessions ---------------------------------------------------------------
    async def start(self, target: Target) -> UploadStatus:
        """Open a new upload session."""
        upload_id = str(uuid.uuid4())
        await self.store.create_upload(upload_id, target.registry.id, target.repository)
        writer = await self.blobs.open_upload(upload_id, 0, create=True)
        await writer.close()
        return UploadStatus(upload_id, 0)

    async def _session(self, target: Target, upload_id: str) -> Upload:
        # Every id this service hands out is a UUID: anything else (a NUL byte, which
        # PostgreSQL text cannot even hold) names no upload and never reaches the store.
        upload = await self.store.get_upload(upload_id) if _is_uuid(upload_id) else None
        if (
            upload is None
            or upload.registry_id != target.registry.id
            or upload.repository != target.repository
        ):
            raise HamnError(
                BLOB_UPLOAD_UNKNOWN,
                f"upload {upload_id[:80]!r} is not in progress for this repository",
                detail={"upload": upload_id[:80]},
            )
        return upload

    async def _open(self, upload: Upload) -> UploadWriter:
        try:
            return await self.blobs.open_upload(upload.id, upload.size, create=False)
        except StorageBusy:
            raise HamnError(
                UPLOAD_BUSY, headers={"Retry-After": "1"}, detail={"upload": upload.id}
            ) from None
        except StorageNotFound:
            # The bytes are gone or short (storage lost them): the session cannot go on.
            await self.store.delete_upload(upload.id)
            raise HamnError(
                BLOB_UPLOAD_UNKNOWN,
                "the upload's data is no longer available; start the upload again",
                detail={"upload": upload.id},
            ) from None

    async def status(self, target: Target, upload_id: str) -> UploadStatus:
        """The acknowledged size of an upload."""
        upload = await self._session(target, upload_id)
        return UploadStatus(upload.id, upload.size)

    async def cancel(self, target: Target, upload_id: str) -> None:
        """Abandon an upload and delete its bytes."""
        upload = await self._session(target, upload_id)
        writer = await self._open(upload)
        await self.store.delete_upload(upload.id)
        await writer.cancel()
        self._states.pop(upload.id, None)

    # -- data -----------------------------------------------------------------------
    async def append(
        self,
        target: Target,
        upload_id: str,
        body: Body,
        *,
        content_range: tuple[int, int] | None,
        content_length: int | None,
    ) -> UploadStatus:
        """Append a chunk (PATCH), checking it continues the upload where it stands."""
        upload = await self._session(target, upload_id)
        expected_length = _check_range(upload.size, content_range, content_length)
        writer = await self._open(upload)
        try:
            # Hash as the chunk streams only when this process holds the hash state
            # at this offset. Otherwise (the previous chunk went to another worker
            # process, or the server restarted) the chunk is stored unhashed and the
            # completing request hashes the upload once: re-reading it on every
            # chunk would make a chunked upload quadratic.
            hasher = self._cached_hasher(upload)
            await self._ingest(writer, hasher, body, expected_length)
            await writer.flush()
            await self._acknowledge(upload, writer.size)
            if hasher is not None:
                self._remember(upload.id, writer.size, hasher)
        finally:
            await writer.close()
        return UploadStatus(upload.id, writer.size)

    async def complete(
        self,
        target: Target,
        upload_id: str,
        digest: str,
        body: Body,
        *,
        content_range: tuple[int, int] | None,
        content_length: int | None,
    ) -> CommittedBlob:
        """Finish an upload (PUT): take the last chunk, verify the digest, publish and link."""
        expected = parse_digest(digest)
        upload = await self._session(target, upload_id)
        expected_length = _check_range(upload.size, content_range, content_length)
        writer = await self._open(upload)
        try:
            hasher = await self._hasher(upload, expected.algorithm)
            await self._ingest(writer, hasher, body, expected_length)
            return await self._publish(target, upload, writer, hasher, str(expected))
        finally:
            await writer.close()

    async def upload_whole(
        self, target: Target, digest: str, body: Body, content_length: int | None
    ) -> CommittedBlob:
        """Single-request upload (POST with ``digest``): stream, verify, publish, link."""
        expected = parse_digest(digest)
        upload = await self.store.create_upload(
            str(uuid.uuid4()), target.registry.id, target.repository
        )
        writer = await self.blobs.open_upload(upload.id, 0, create=True)
        try:
            hasher = new_hasher(expected.algorithm)
            await self._ingest(writer, hasher, body, content_length)
            return await self._publish(target, upload, writer, hasher, str(expected))
        except BaseException:
            await self.store.delete_upload(upload.id)
            await writer.cancel()
            raise

    async def mount(self, target: Target, digest: str, source: str | None) -> CommittedBlob | None:
        """Link a blob the registry already holds into the repository, if it can be found.

        With ``source``, only that repository is searched; without it, any
        repository of the same registry (OCI 1.1 automatic mount). Never across
        registries. A ``digest`` that is not a valid digest names no blob, so
        nothing is mounted and the caller starts an upload, as the spec asks.
        """
        try:
            digest = str(parse_digest(digest))
        except HamnError:
            return None
        # Under the blob's lock garbage collection cannot remove the blob between
        # finding it and linking it: once linked, its re-check sees the new link.
        async with self.blobs.digest_lock(digest):
            size = await self.store.blob_size_in_registry(target.registry.id, digest, source)
            if size is None or await self.blobs.stat(digest) is None:
                return None
            await self.store.link_blob(target.registry.id, target.repository, digest, size)
        return CommittedBlob(digest, size)

    # -- internals ---------------------------------------------------------------
    def _cached_hasher(self, upload: Upload) -> Hasher | None:
        """This process's hash state at the upload's offset, if it has it."""
        if upload.size == 0:
            return new_hasher(DEFAULT_ALGORITHM)
        cached = self._states.pop(upload.id, None)
        if cached is not None and cached[0] == upload.size:
            return cached[1]
        return None

    async def _hasher(self, upload: Upload, algorithm: str = DEFAULT_ALGORITHM) -> Hasher:
        """The hash state at the upload's offset: cached, or rebuilt from its bytes."""
        if algorithm == DEFAULT_ALGORITHM:
            cached = self._cached_hasher(upload)
            if cached is not None:
                return cached
        else:
            self._states.pop(upload.id, None)
        hasher = new_hasher(algorithm)
        if upload.size == 0:
            return hasher
        loop = asyncio.get_running_loop()
        async for chunk in self.blobs.read_upload(upload.id, upload.size):
            await loop.run_in_executor(self._hash_pool, hasher.update, chunk)
        return hasher

    def _remember(self, upload_id: str, size: int, hasher: Hasher) -> None:
        self._states[upload_id] = (size, hasher)
        while len(self._states) > _HASH_STATES:
            self._states.popitem(last=False)

    async def _acknowledge(self, upload: Upload, new_size: int) -> None:
        try:
            await self.store.advance_upload(upload.id, upload.size, new_size)
        except UploadConflict:
            raise HamnError(
                UPLOAD_BUSY, "the upload moved on under this request", headers={"Retry-After": "1"}
            ) from None

    async def _publish(
        self, target: Target, upload: Upload, writer: UploadWriter, hasher: Hasher, digest: str
    ) -> CommittedBlob:
        algorithm = digest.split(":", 1)[0]
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            # Nothing is kept: a mismatched upload cannot become any blob.
            await self.store.delete_upload(upload.id)
            await writer.cancel()
            self._states.pop(upload.id, None)
            raise HamnError(
                DIGEST_INVALID,
                f"the uploaded content's digest is {actual}, not {digest}",
                detail={"expected": digest, "actual": actual},
            )
        size = writer.size
        quota = quota_for(self.quotas, target.registry)
        if quota is not None:
            over = await self.store.blob_over_quota(target.registry.id, digest, size, quota)
            if over is not None:
                # Refused before it is published: the bytes are not kept.
                await self.store.delete_upload(upload.id)
                await writer.cancel()
                self._states.pop(upload.id, None)
                raise quota_error(target.registry, over)
        # The blob's lock spans publish and link: garbage collection, which deletes
        # a blob's row and bytes under the same lock, never sees the bytes of this
        # push without their link, nor removes bytes this push is about to link.
        async with self.blobs.digest_lock(digest):
            await writer.commit(digest)
            await self.store.finish_upload(
                upload.id, target.registry.id, target.repository, digest, size
            )
        self._states.pop(upload.id, None)
        return CommittedBlob(digest, size)

    async def _ingest(
        self, writer: UploadWriter, hasher: Hasher | None, body: Body, expected_length: int | None
    ) -> None:
        """Stream ``body`` into the writer (and the hasher, if any); on any failure,
        roll the upload back."""
        start = writer.size
        loop = asyncio.get_running_loop()
        received = 0
        batch: list[bytes] = []
        batch_bytes = 0
        in_flight: asyncio.Future[object] | None = None

        async def flush(buffers: list[bytes], size: int) -> object:
            if hasher is None:
                await writer.write(buffers)
                return None
            if size <= INLINE_BYTES:
                # Hashing a few KiB costs less than handing it to a thread.
                _update_all(hasher, buffers)
                await writer.write(buffers)
                return None
            hashed = loop.run_in_executor(self._hash_pool, _update_all, hasher, buffers)
            await asyncio.gather(hashed, writer.write(buffers))
            return None

        try:
            async for chunk in body:
                if not chunk:
                    continue
                received += len(chunk)
                if expected_length is not None and received > expected_length:
                    raise HamnError(
                        SIZE_INVALID,
                        f"the body is longer than the {expected_length} bytes announced",
                    )
                batch.append(chunk)
                batch_bytes += len(chunk)
                if batch_bytes >= BATCH_BYTES:
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.ensure_future(flush(batch, batch_bytes))
                    batch, batch_bytes = [], 0
            if in_flight is not None:
                await in_flight
                in_flight = None
            if batch:
                await flush(batch, batch_bytes)
            if expected_length is not None and received != expected_length:
                raise HamnError(
                    SIZE_INVALID,
                    f"received {received} bytes but {expected_length} were announced",
                )
        except BaseException:
            if in_flight is not None:
                await asyncio.gather(in_flight, return_exceptions=True)
            await writer.truncate(start)
            raise


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _update_all(hasher: Hasher, buffers: list[bytes]) -> None:
    for b in buffers:
        hasher.update(b)


def _check_range(
    size: int, content_range: tuple[int, int] | None, content_length: int | None
) -> int | None:
    """Validate a chunk's Content-Range against the upload's offset; return the expected length."""
    if content_range is None:
        return content_length
    first, last = content_range
    if first != size or last < first:
        raise HamnError(
            RANGE_INVALID,
            f"the chunk covers bytes {first}-{last} but the upload holds {size} bytes; "
            f"send the next chunk from byte {size}",
            headers={"Range": f"0-{max(size - 1, 0)}"},
            detail={"offset": size},
        )
    length = last - first + 1
    if content_length is not None and content_length != length:
        raise HamnError(
            BLOB_UPLOAD_INVALID,
            f"Content-Range spans {length} bytes but Content-Length is {content_length}",
        )
    return length
