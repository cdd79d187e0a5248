"""S3 (AWS or any S3-compatible service) as an :class:`hamn.storage.objects.ObjectStore` (boto3).

Objects live in one bucket. Files go up as multipart uploads of a few MiB per
part (bounded memory); a multipart object appears only when it is completed.
Composing copies on the service's side (CopyObject, or UploadPartCopy per
source) as long as every source but the last is at least S3's 5 MiB minimum
part; otherwise the driver concatenates through a spool file. With an endpoint
URL (MinIO, SeaweedFS, Ceph...), requests use path-style addressing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hamn.storage.base import StorageError, StorageNotFound
from hamn.storage.objects import ObjectInfo, RangeNotSatisfiable, redact

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client
    from types_boto3_s3.type_defs import CompletedPartTypeDef

_MiB = 1024 * 1024
#: S3's smallest part (all but the last) and largest part or single copy.
_MIN_PART = 5 * _MiB
_MAX_PART = 5 * 1024 * _MiB
_MAX_PARTS = 10_000
_READ_CHUNK = _MiB
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}


@contextlib.contextmanager
def _errors(key: str) -> Iterator[None]:
    """boto3's exceptions as storage errors, with no credential in the message."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND or status == 404:
            raise StorageNotFound(key) from None
        if code == "InvalidRange" or status == 416:
            raise RangeNotSatisfiable(key) from None
        raise StorageError(f"s3 answered {status} {code}") from None
    except (BotoCoreError, Boto3Error) as exc:
        # upload_file wraps a ClientError in S3UploadFailedError (a Boto3Error).
        raise StorageError(f"s3: {redact(str(exc))}") from None


class S3Objects:
    """One bucket of an S3-compatible service."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
    ) -> None:
        if not bucket:
            raise ValueError("the s3 storage driver needs a bucket")
        if bool(access_key_id) != bool(secret_access_key):
            raise ValueError("the s3 storage driver needs both an access key id and its secret")
        self.bucket = bucket
        self.region = region
        config = Config(
            region_name=region,
            signature_version="s3v4",
            # Path-style for S3-compatible servers, which seldom have per-bucket host names.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Two quick retries (standard mode: a second or two apart at most), then a 503.
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
            connect_timeout=5,
            read_timeout=120,
            # Checksums only where S3 requires them: several S3-compatible servers
            # reject the newer default (trailing CRC checksums on every upload).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # Without keys boto3 finds credentials the usual way (environment, profile, role).
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config,
        )
        self._client.meta.events.register("before-call.s3", _no_continue)
        self._transfer = TransferConfig(
            multipart_threshold=16 * _MiB,
            multipart_chunksize=8 * _MiB,
            max_concurrency=4,
            use_threads=True,
        )

    def ensure_container(self) -> None:
        """Create the bucket unless it exists."""
        with _errors(self.bucket):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if status != 404:
                    raise
            try:
                if self.region == "us-east-1":
                    self._client.create_bucket(Bucket=self.bucket)
                else:
                    self._client.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
                    )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_file(self, key: str, path: str, size: int) -> None:
        """Upload a local file (multipart above 16 MiB, four parts at a time)."""
        with _errors(key):
            if size == 0:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=b"")
                return
            self._client.upload_file(path, self.bucket, key, Config=self._transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload a small object."""
        with _errors(key):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        """One ranged GET, streamed in 1 MiB chunks."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length is not None:
            params["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            params["Range"] = f"bytes={offset}-"
        with _errors(key):
            body = self._client.get_object(**params)["Body"]
        return self._chunks(key, body)

    def _chunks(self, key: str, body: Any) -> Iterator[bytes]:
        try:
            with _errors(key):
                yield from body.iter_chunks(_READ_CHUNK)
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and last-modified time, or None."""
        try:
            with _errors(key):
                found = self._client.head_object(Bucket=self.bucket, Key=key)
        except StorageNotFound:
            return None
        return ObjectInfo(key, found["ContentLength"], found["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        """Delete the object (S3 answers alike whether it existed or not)."""
        with contextlib.suppress(StorageNotFound), _errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects under ``prefix``, page after page (none when the bucket is missing)."""
        pages = self._client.get_paginator("list_objects_v2")
        with contextlib.suppress(StorageNotFound), _errors(prefix):
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], item["Size"], item["LastModified"].timestamp())

    def compose(self, dest: str, sources: Sequence[ObjectInfo]) -> bool:
        """CopyObject for one source up to 5 GiB; else a multipart upload of UploadPartCopy
        parts, when every source but the last makes a legal part; else False."""
        if len(sources) == 1 and sources[0].size <= _MAX_PART:
            with _errors(dest):
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=dest,
                    CopySource={"Bucket": self.bucket, "Key": sources[0].key},
                )
            return True
        parts = [part for source in sources for part in _part_ranges(source)]
        if len(parts) > _MAX_PARTS or any(size < _MIN_PART for _, _, size in parts[:-1]):
            return False
        with _errors(dest):
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=dest)[
                "UploadId"
            ]
            try:
                done: list[CompletedPartTypeDef] = []
                for number, (key, start, size) in enumerate(parts, 1):
                    copied = self._client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=dest,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": key},
                        CopySourceRange=f"bytes={start}-{start + size - 1}",
                    )
                    done.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=dest,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
            except BaseException:
                with contextlib.suppress(ClientError, BotoCoreError):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=dest, UploadId=upload_id
                    )
                raise
        return True

    def touch(self, info: ObjectInfo) -> bool:
        """Copy the object onto itself with new metadata (S3's only way to move
        Last-Modified); False over the 5 GiB a single copy takes."""
        if info.size > _MAX_PART:
            return False
        with _errors(info.key):
            self._client.copy_object(
                Bucket=self.bucket,
                Key=info.key,
                CopySource={"Bucket": self.bucket, "Key": info.key},
                MetadataDirective="REPLACE",
                Metadata={"published": str(int(time.time()))},
            )
        return True

    def presign(self, key: str, expires_in: float) -> str:
        """A presigned GET URL valid for ``expires_in`` seconds."""
        with _errors(key):
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=max(1, int(expires_in)),
            )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _no_continue(params: dict[str, Any], **_: Any) -> None:
    """Send bodies without ``Expect: 100-continue``: S3-compatible servers (SeaweedFS
    under load) may answer it and the final status in one go, which urllib3 takes for a
    malformed response. Waiting for the go-ahead only saves the body of a refused
    request, and hamn's requests are refused only when misconfigured."""
    params.get("headers", {}).pop("Expect", None)


def _part_ranges(source: ObjectInfo) -> list[tuple[str, int, int]]:
    """(key, start, size) parts of one source, none over 5 GiB, split evenly so none is
    needlessly small."""
    count = -(-source.size // _MAX_PART)
    step = -(-source.size // count)
    return [
        (source.key, start, min(step, source.size - start)) for start in range(0, source.size, step)
    ]
