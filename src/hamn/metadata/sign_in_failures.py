"""Failed sign-ins counted in the database (``sign_in_failures``), so every server
process of a deployment enforces one limit instead of each its own.

Counts are kept per key and fixed time window; the service turns two adjacent
windows into a sliding estimate (see :mod:`hamn.services.sign_in_limits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from hamn.metadata import schema as t
from hamn.metadata.store import MetadataStore

_T = t.sign_in_failures


class SignInFailureStore:
    """Per-window failure counts in the database a :class:`MetadataStore` uses."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._insert: Any = sqlite.insert if store.dialect == "sqlite" else postgresql.insert

    async def counts(
        self, keys: Sequence[str], windows: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        """Failures per (key, window) for the given keys and windows (absent: none)."""

        def op(conn: Connection) -> dict[tuple[str, int], int]:
            rows = conn.execute(
                select(_T.c.key, _T.c.window, _T.c.failures).where(
                    _T.c.key.in_(list(keys)), _T.c.window.in_(list(windows))
                )
            )
            return {(r.key, r.window): r.failures for r in rows}

        return await self.store.run_read(op)

    async def add(self, keys: Sequence[str], window: int, *, keep_from: int) -> None:
        """Count one failure for each key in ``window``; forget windows before ``keep_from``."""

        def op(conn: Connection) -> None:
            for key in keys:
                stmt = self._insert(_T).values(key=key, window=window, failures=1)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[_T.c.key, _T.c.window],
                        set_={"failures": _T.c.failures + 1},
                    )
                )
            conn.execute(delete(_T).where(_T.c.window < keep_from))

        await self.store.run_write(op)
