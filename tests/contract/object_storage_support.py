"""Object-storage drivers for the blob-driver contract suite, on real services.

``scripts/with-services`` starts Azurite and a SeaweedFS S3 gateway and exports
the variables below; a backend whose variable is unset is skipped, naming it.
Each driver gets a prefix of its own in a shared container or bucket (tests run
in parallel), and real leases: a :class:`LeaseStore` on a SQLite database in the
test's temporary directory.
"""

from __future__ import annotations

import os
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from hamn.metadata.leases import LeaseStore
from hamn.metadata.store import MetadataStore, create_metadata_engine, migrate
from hamn.storage import BlobDriver, create_driver

AZURE_ENV = "HAMN_TEST_AZURE_CONNECTION_STRING"
S3_ENDPOINT_ENV = "HAMN_TEST_S3_ENDPOINT"
S3_ACCESS_KEY_ENV = "HAMN_TEST_S3_ACCESS_KEY"
S3_SECRET_KEY_ENV = "HAMN_TEST_S3_SECRET_KEY"
S3_REGION_ENV = "HAMN_TEST_S3_REGION"
#: The container or bucket the contract tests share (each test has its own prefix).
SHARED_CONTAINER = "hamn-contract"


def required(name: str) -> str:
    """The environment variable ``name``, or skip the test naming it."""
    value = os.environ.get(name, "")
    if not value:
        pytest.skip(f"{name} is not set (scripts/with-services starts the storage services)")
    return value


def leases_for(tmp: Path, stack: ExitStack) -> LeaseStore:
    """Leases on a fresh SQLite database, closed with ``stack``."""
    engine = create_metadata_engine(f"sqlite:///{tmp / 'leases.db'}")
    migrate(engine)
    store = MetadataStore(engine)
    stack.callback(engine.dispose)
    stack.callback(store.close)
    return LeaseStore(store)


def object_params(backend: str, *, container: str = SHARED_CONTAINER) -> dict[str, object]:
    """The create_driver parameters of ``backend`` ("azure" or "s3") on the test services."""
    if backend == "azure":
        return {"azure_connection_string": required(AZURE_ENV), "azure_container": container}
    return {
        "s3_endpoint_url": required(S3_ENDPOINT_ENV),
        "s3_access_key_id": required(S3_ACCESS_KEY_ENV),
        "s3_secret_access_key": required(S3_SECRET_KEY_ENV),
        "s3_bucket": container,
        "s3_region": os.environ.get(S3_REGION_ENV, "us-east-1"),
    }


def object_driver(
    backend: str, tmp: Path, stack: ExitStack, *, container: str = SHARED_CONTAINER
) -> BlobDriver:
    """A fresh, empty ``backend`` driver: a new prefix, its own leases and spool directory."""
    params = object_params(backend, container=container)
    driver = create_driver(
        backend,
        prefix=f"test-{uuid.uuid4().hex}",
        leases=leases_for(tmp, stack),
        spool_dir=str(tmp / "spool"),
        **params,
    )
    stack.callback(driver.close)
    return driver


def fresh_container() -> str:
    """A container or bucket name nobody has used (valid for Azure and S3 alike)."""
    return f"hamn-{uuid.uuid4().hex[:20]}"
