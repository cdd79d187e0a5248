"""Blob bytes only: a small driver protocol and its implementations.

The driver is chosen by configuration and injected by ``hamn.http.app``; an
unknown driver name is an error, never a silent fallback.
"""

from __future__ import annotations

from typing import cast

from hamn.storage.base import BlobDriver, StorageBusy, StorageError, StorageNotFound, UploadWriter
from hamn.storage.leases import Leases

__all__ = [
    "BlobDriver",
    "StorageBusy",
    "StorageError",
    "StorageNotFound",
    "UploadWriter",
    "create_driver",
]


#: The parameters each driver takes; any other name is a mistake worth an error.
_PARAMETERS = {
    "filesystem": {"root", "fsync"},
    "azure": {"azure_connection_string", "azure_container"},
    "s3": {"s3_endpoint_url", "s3_region", "s3_bucket", "s3_access_key_id", "s3_secret_access_key"},
}
#: What the object-storage drivers share: their key prefix, the leases their locks
#: are kept in (``hamn.storage.leases.Leases``) and the local spool directory.
_OBJECT_PARAMETERS = {"prefix", "leases", "spool_dir"}


def create_driver(name: str, **params: object) -> BlobDriver:
    """Build the blob driver ``name`` ("filesystem", "azure" or "s3") with its parameters.

    The composition root may pass every driver's parameters (they come from one
    settings object); each driver reads its own, and a name no driver knows is an error.
    """
    if name not in _PARAMETERS:
        raise ValueError(
            f"unknown storage driver {name!r}; known drivers: {', '.join(_PARAMETERS)}"
        )
    unknown = set(params) - set().union(*_PARAMETERS.values()) - _OBJECT_PARAMETERS
    if unknown:
        raise ValueError(f"unknown storage driver parameters: {', '.join(sorted(unknown))}")
    if name == "filesystem":
        from hamn.storage.filesystem import FilesystemDriver

        root = params.get("root")
        if not isinstance(root, str) or not root:
            raise ValueError("the filesystem driver needs a 'root' directory")
        return FilesystemDriver(root, fsync=bool(params.get("fsync", True)))
    from hamn.storage.objects import ObjectStorageDriver, ObjectStore

    leases = params.get("leases")
    spool_dir = _text(params, "spool_dir")
    if leases is None or not spool_dir:
        raise ValueError(
            f"the {name} driver needs 'leases' (its locks live in the metadata database) "
            "and a local 'spool_dir'"
        )
    objects: ObjectStore
    if name == "azure":
        from hamn.storage.azure import AzureObjects

        objects = AzureObjects(
            _text(params, "azure_connection_string"), _text(params, "azure_container") or "hamn"
        )
    else:
        from hamn.storage.s3 import S3Objects

        objects = S3Objects(
            _text(params, "s3_bucket"),
            endpoint_url=_text(params, "s3_endpoint_url"),
            region=_text(params, "s3_region") or "us-east-1",
            access_key_id=_text(params, "s3_access_key_id"),
            secret_access_key=_text(params, "s3_secret_access_key"),
        )
    return ObjectStorageDriver(
        objects, cast(Leases, leases), spool_dir, prefix=_text(params, "prefix")
    )


def _text(params: dict[str, object], name: str) -> str:
    value = params.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"the storage parameter {name!r} must be text")
    return value
