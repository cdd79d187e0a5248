"""Blob bytes only: a small driver protocol and its implementations.

The driver is chosen by configuration and injected by ``hamn.http.app``; an
unknown driver name is an error, never a silent fallback.
"""

from __future__ import annotations

from hamn.storage.base import BlobDriver, StorageBusy, StorageError, StorageNotFound, UploadWriter

__all__ = [
    "BlobDriver",
    "StorageBusy",
    "StorageError",
    "StorageNotFound",
    "UploadWriter",
    "create_driver",
]


def create_driver(name: str, **params: object) -> BlobDriver:
    """Build the blob driver ``name`` ("filesystem") with its parameters."""
    if name == "filesystem":
        from hamn.storage.filesystem import FilesystemDriver

        root = params.get("root")
        if not isinstance(root, str):
            raise ValueError("the filesystem driver needs a 'root' directory")
        return FilesystemDriver(root, fsync=bool(params.get("fsync", True)))
    raise ValueError(f"unknown storage driver {name!r}; known drivers: filesystem")
