"""The backend matrix: the database and storage every ``hamn serve`` the api,
conformance and e2e tiers start runs on (issue 5: the same suites on every
combination).

``HAMN_TEST_BACKEND=<database>+<storage>`` chooses it for a whole run: database
``sqlite`` or ``postgresql``, storage ``filesystem``, ``azure`` or ``s3``; unset,
``sqlite+filesystem``, hamn's defaults. The services come from
scripts/with-services (``HAMN_TEST_POSTGRES_URL``, ``HAMN_TEST_AZURE_*``,
``HAMN_TEST_S3_*``); scripts/test runs the suites once per combination inside it.

:func:`backend_env` gives the ``HAMN_*`` settings that put a server on a data
directory onto the chosen backend: a database (PostgreSQL), a container (Azure) or
a key prefix in one bucket (S3; SeaweedFS gives every bucket volumes of its own,
so a bucket per server would exhaust them) of its own, named by an id kept beside
the data directory. A server restarted on the same directory, and ``hamn gc`` or
``hamn fsck`` run against it, get the same ones back.

Tests that read or change what the default backend keeps inside the data directory
say so with a marker, and are skipped on the other backends:

* ``filesystem_storage``: the files of the filesystem storage driver;
* ``sqlite_database``: the SQLite database file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

BACKEND_ENV = "HAMN_TEST_BACKEND"
DATABASES = ("sqlite", "postgresql")
STORAGES = ("filesystem", "azure", "s3")
DEFAULT_BACKEND = "sqlite+filesystem"

#: The settings each service needs, as scripts/with-services exports them.
POSTGRES_ENV = "HAMN_TEST_POSTGRES_URL"
AZURE_ENV = "HAMN_TEST_AZURE_CONNECTION_STRING"
S3_ENVS = (
    "HAMN_TEST_S3_ENDPOINT",
    "HAMN_TEST_S3_ACCESS_KEY",
    "HAMN_TEST_S3_SECRET_KEY",
    "HAMN_TEST_S3_REGION",
)

#: The bucket every server shares on S3, each under its own prefix.
S3_BUCKET = "hamn-tests"

#: Marker name -> (what the marked test needs, the backend part it concerns).
BACKEND_MARKERS = {
    "filesystem_storage": ("filesystem", "storage"),
    "sqlite_database": ("sqlite", "database"),
}


@dataclass(frozen=True)
class Backend:
    """One combination of the matrix."""

    database: str
    storage: str

    @property
    def name(self) -> str:
        """``<database>+<storage>``, as ``HAMN_TEST_BACKEND`` spells it."""
        return f"{self.database}+{self.storage}"

    def required_env(self) -> list[str]:
        """The service settings (from scripts/with-services) this combination needs."""
        needed = [POSTGRES_ENV] if self.database == "postgresql" else []
        if self.storage == "azure":
            needed.append(AZURE_ENV)
        if self.storage == "s3":
            needed.extend(S3_ENVS)
        return needed


def current_backend() -> Backend:
    """The combination ``HAMN_TEST_BACKEND`` names (``sqlite+filesystem`` when unset)."""
    text = os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    database, plus, storage = text.partition("+")
    if not plus or database not in DATABASES or storage not in STORAGES:
        raise pytest.UsageError(
            f"{BACKEND_ENV}={text!r}: expected <database>+<storage> with database one of "
            f"{DATABASES} and storage one of {STORAGES}"
        )
    return Backend(database, storage)


def check_services(backend: Backend) -> None:
    """Stop the run at once, saying what is missing, when a service is not there."""
    missing = [name for name in backend.required_env() if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(
            f"{BACKEND_ENV}={backend.name} needs {', '.join(missing)}: run the tests "
            "under scripts/with-services, which starts PostgreSQL, Azurite and SeaweedFS"
        )


def skip_reason(marker: str, backend: Backend) -> str | None:
    """Why a test with ``marker`` cannot run on ``backend`` (None: it can)."""
    needed, part = BACKEND_MARKERS[marker]
    actual = backend.database if part == "database" else backend.storage
    if actual == needed:
        return None
    return f"looks inside the {needed} {part}; {BACKEND_ENV}={backend.name}"


def _deployment_id(data_dir: Path) -> str:
    """An id made once per data directory and kept beside it (as the bootstrap
    password is), so a restart on the directory finds its database and storage."""
    kept = data_dir.parent / f"{data_dir.name}-backend-id"
    if not kept.exists():
        kept.write_text(uuid.uuid4().hex[:20])
    return kept.read_text()


#: Databases this process made or found already (no query for a restart).
_databases: set[str] = set()


def _database_url(deployment: str) -> str:
    """A SQLAlchemy URL of the deployment's own database, made when missing."""
    server = os.environ[POSTGRES_ENV]
    name = f"hamn_{deployment}"
    if name not in _databases:
        with psycopg.connect(
            server.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        _databases.add(name)
    return f"{server.rpartition('/')[0]}/{name}"


def backend_env(data_dir: Path) -> dict[str, str]:
    """``HAMN_*`` settings for a server (or ``hamn`` command) on ``data_dir`` on the
    current backend; empty for ``sqlite+filesystem``, which the data directory holds."""
    backend = current_backend()
    if backend.name == DEFAULT_BACKEND:
        return {}
    deployment = _deployment_id(data_dir)
    env: dict[str, str] = {}
    if backend.database == "postgresql":
        env["HAMN_DATABASE_URL"] = _database_url(deployment)
    if backend.storage == "azure":
        env.update(
            HAMN_STORAGE_DRIVER="azure",
            HAMN_AZURE_CONNECTION_STRING=os.environ[AZURE_ENV],
            HAMN_AZURE_CONTAINER=f"hamn-{deployment}",
        )
    if backend.storage == "s3":
        env.update(
            HAMN_STORAGE_DRIVER="s3",
            HAMN_S3_ENDPOINT_URL=os.environ["HAMN_TEST_S3_ENDPOINT"],
            HAMN_S3_ACCESS_KEY_ID=os.environ["HAMN_TEST_S3_ACCESS_KEY"],
            HAMN_S3_SECRET_ACCESS_KEY=os.environ["HAMN_TEST_S3_SECRET_KEY"],
            HAMN_S3_REGION=os.environ["HAMN_TEST_S3_REGION"],
            HAMN_S3_BUCKET=S3_BUCKET,
            HAMN_STORAGE_PREFIX=deployment,
        )
    return env


def hamn_command_env(data_dir: Path) -> dict[str, str]:
    """The environment for a ``hamn`` command (gc, fsck) on ``data_dir``: this
    process's, with the deployment's backend settings."""
    return {**os.environ, **backend_env(data_dir)}
