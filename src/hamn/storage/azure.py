"""Azure Blob Storage as an :class:`hamn.storage.objects.ObjectStore` (azure-storage-blob).

Blobs are block blobs in one container. A segmented upload is composed on the
service's side: each segment is staged into the blob as blocks read from the
segment's URL (Put Block From URL, authorised by a short SAS), then the block
list is committed, which makes the blob appear whole at once. Signed URLs are
read-only SAS tokens made with the account key of the connection string.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    LinearRetry,
    StorageStreamDownloader,
    generate_blob_sas,
)

from hamn.storage.base import StorageError, StorageNotFound
from hamn.storage.objects import ObjectInfo, RangeNotSatisfiable, redact

_BLOCK = 4 * 1024 * 1024
#: The most one Put Block From URL moves (older service versions' limit).
_URL_BLOCK = 100 * 1024 * 1024
#: How long the SAS a compose reads its sources with stays valid.
_SOURCE_SAS = timedelta(hours=1)


def parse_connection_string(connection_string: str) -> dict[str, str]:
    """The ``Name=value;...`` pairs of an Azure Storage connection string."""
    pairs: dict[str, str] = {}
    for part in connection_string.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            pairs[name.strip()] = value.strip()
    return pairs


def _total_size(download: StorageStreamDownloader[bytes]) -> int:
    """The whole blob's size, from a ranged download's Content-Range (``bytes a-b/total``)."""
    content_range = download.properties.content_range or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else download.properties.size


@contextlib.contextmanager
def _errors(key: str) -> Iterator[None]:
    """Azure's exceptions as storage errors, with no key or signature in the message."""
    try:
        yield
    except ResourceNotFoundError:
        raise StorageNotFound(key) from None
    except HttpResponseError as exc:
        if exc.status_code == 416:
            raise RangeNotSatisfiable(key) from None
        code = getattr(exc, "error_code", None) or exc.reason or ""
        raise StorageError(f"azure blob storage answered {exc.status_code} {code}") from None
    except AzureError as exc:
        raise StorageError(f"azure blob storage: {redact(str(exc))}") from None


class AzureObjects:
    """One container of an Azure Storage account (or Azurite)."""

    name = "azure"

    def __init__(self, connection_string: str, container: str) -> None:
        pairs = parse_connection_string(connection_string)
        self._account = pairs.get("AccountName", "")
        self._key = pairs.get("AccountKey", "")
        if not self._account or not self._key:
            raise ValueError(
                "the azure storage driver needs a connection string with AccountName and "
                "AccountKey (the key signs the URLs blobs are composed and served with)"
            )
        if not container:
            raise ValueError("the azure storage driver needs a container name")
        try:
            service = BlobServiceClient.from_connection_string(
                connection_string,
                # Parts of a few MiB: memory per transfer stays small and constant.
                max_single_put_size=_BLOCK,
                max_block_size=_BLOCK,
                max_single_get_size=_BLOCK,
                max_chunk_get_size=_BLOCK,
                connection_timeout=5,
                read_timeout=120,
                # Two quick retries, a second or so apart: a request waits seconds, not the
                # minute of the SDK's default, before hamn answers 503 and its client retries.
                retry_policy=LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
            )
        except ValueError:
            raise ValueError("the azure connection string is not valid") from None
        self._container = service.get_container_client(container)
        self._blocks_from_url = True

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(key)

    def ensure_container(self) -> None:
        """Create the container unless it exists."""
        with _errors(self._container.container_name), contextlib.suppress(ResourceExistsError):
            self._container.create_container()

    def put_file(self, key: str, path: str, size: int) -> None:
        """Upload a local file in blocks (four at a time)."""
        with _errors(key), open(path, "rb") as fh:
            self._blob(key).upload_blob(fh, length=size, overwrite=True, max_concurrency=4)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload a small object."""
        with _errors(key):
            self._blob(key).upload_blob(data, overwrite=True)

    def get(self, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        """Ranged downloads of one block each. Not the SDK's chunked download: that pins
        the blob's ETag, so a blob pushed again (the same bytes, a new ETag) would fail
        the reads streaming it."""
        first, total = self._range(key, offset, _BLOCK if length is None else min(_BLOCK, length))
        end = total if length is None else offset + length
        return self._chunks(key, first, offset, end)

    def _range(self, key: str, offset: int, length: int) -> tuple[bytes, int]:
        """``length`` bytes from ``offset`` (fewer at the end), and the blob's whole size."""
        with _errors(key):
            download = self._blob(key).download_blob(offset=offset, length=length)
            return download.readall(), _total_size(download)

    def _chunks(self, key: str, first: bytes, offset: int, end: int) -> Iterator[bytes]:
        chunk = first
        while True:
            yield chunk
            offset += len(chunk)
            want = min(_BLOCK, end - offset)
            if want <= 0 or len(chunk) < _BLOCK:
                return  # done, or the blob ended early (the driver counts what came)
            chunk = self._range(key, offset, want)[0]

    def head(self, key: str) -> ObjectInfo | None:
        """The blob's size and last-modified time, or None."""
        try:
            with _errors(key):
                props = self._blob(key).get_blob_properties()
        except StorageNotFound:
            return None
        return ObjectInfo(key, props.size, props.last_modified.timestamp())

    def delete(self, key: str) -> None:
        """Delete the blob (and its snapshots) if it exists."""
        with contextlib.suppress(StorageNotFound), _errors(key):
            self._blob(key).delete_blob(delete_snapshots="include")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """The blobs under ``prefix`` (none when the container is missing)."""
        with contextlib.suppress(StorageNotFound), _errors(prefix):
            for blob in self._container.list_blobs(name_starts_with=prefix):
                yield ObjectInfo(blob.name, blob.size, blob.last_modified.timestamp())

    def compose(self, dest: str, sources: Sequence[ObjectInfo]) -> bool:
        """One source: Copy Blob. Several: stage every source as blocks read from its URL
        (Put Block From URL), then commit the block list. False where the service lacks
        Put Block From URL (Azurite): the driver concatenates through a spool file."""
        if len(sources) == 1:
            self._copy(sources[0].key, dest)
            return True
        if not self._blocks_from_url:
            return False
        # Block ids unique to this compose: another writer's uncommitted blocks under
        # the same name can never end up in this blob.
        tag = uuid.uuid4().hex
        blocks: list[BlobBlock] = []
        target = self._blob(dest)
        with _errors(dest):
            for source in sources:
                url = self.presign(source.key, _SOURCE_SAS.total_seconds())
                for start in range(0, source.size, _URL_BLOCK):
                    block_id = f"{tag}{len(blocks):08d}"
                    try:
                        target.stage_block_from_url(
                            block_id,
                            url,
                            source_offset=start,
                            source_length=min(_URL_BLOCK, source.size - start),
                        )
                    except HttpResponseError as exc:
                        if exc.status_code != 501:
                            raise
                        self._blocks_from_url = False
                        return False
                    blocks.append(BlobBlock(block_id))
            target.commit_block_list(blocks)
        return True

    def _copy(self, source: str, dest: str) -> None:
        """Copy Blob inside the account: done at once by the service, or polled to its end."""
        url = self.presign(source, _SOURCE_SAS.total_seconds())
        target = self._blob(dest)
        deadline = time.monotonic() + _SOURCE_SAS.total_seconds()
        with _errors(dest):
            status = target.start_copy_from_url(url, requires_sync=None).get("copy_status")
            while status == "pending":
                if time.monotonic() > deadline:
                    target.abort_copy(target.get_blob_properties())
                    raise StorageError(f"copying {source} to {dest} did not finish")
                time.sleep(0.5)
                status = target.get_blob_properties().copy.status
            if status != "success":
                raise StorageError(f"copying {source} to {dest} ended {status}")

    def touch(self, info: ObjectInfo) -> bool:
        """Set Blob Metadata: it moves Last-Modified and leaves the bytes alone."""
        with _errors(info.key):
            self._blob(info.key).set_blob_metadata({"published": str(int(time.time()))})
        return True

    def presign(self, key: str, expires_in: float) -> str:
        """The blob's URL with a read-only SAS valid for ``expires_in`` seconds."""
        now = datetime.now(UTC)
        sas = generate_blob_sas(
            self._account,
            self._container.container_name,
            key,
            account_key=self._key,
            permission=BlobSasPermissions(read=True),
            # A little slack at the start for clocks that disagree.
            start=now - timedelta(minutes=5),
            expiry=now + timedelta(seconds=expires_in),
        )
        return f"{self._blob(key).url}?{sas}"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._container.close()
