"""Helpers shared by the metadata-store contract suites (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, make_url, text

T = TypeVar("T")

#: Set (by scripts/with-postgres) to run every store case on PostgreSQL too.
POSTGRES_ENV = "HAMN_TEST_POSTGRES_URL"


def run(awaitable: Awaitable[T]) -> T:
    """Await one store call from a plain test."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


async def _gather(*aws: Awaitable[Any]) -> list[Any]:
    return await asyncio.gather(*aws, return_exceptions=True)


def gather(*aws: Awaitable[Any]) -> list[Any]:
    """Run store calls concurrently; results and exceptions, in order."""
    return asyncio.run(_gather(*aws))


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of a fresh, empty PostgreSQL schema, dropped afterwards."""
    base = os.environ[POSTGRES_ENV]
    schema = f"hamn_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
