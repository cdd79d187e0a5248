"""Fixtures of the contract tier: every store case runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import POSTGRES_ENV, postgres_schema

from hamn.metadata.store import create_metadata_engine, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    """Each supported kind of database (PostgreSQL only when ``HAMN_TEST_POSTGRES_URL`` is set)."""
    if request.param == "postgresql" and not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    return str(request.param)


@pytest.fixture
def empty_database_url(database: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each supported kind."""
    if database == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; tests start from copies (it is faster)."""
    path = tmp_path_factory.mktemp("template") / "metadata.db"
    eng = create_metadata_engine(f"sqlite:///{path}")
    migrate(eng)
    eng.dispose()  # the last connection checkpoints the WAL into the file
    return path
