"""The lease record (``leases`` table): :class:`hamn.storage.leases.Leases` on the
metadata database, so processes on different machines share it.

Each call is one statement in its own transaction. Expiry uses this host's clock,
so hosts must keep their clocks within a fraction of a lease's lifetime (NTP).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hamn.metadata import schema as t
from hamn.metadata.store import MetadataStore, utcnow


class LeaseStore:
    """Leases in the database a :class:`MetadataStore` uses."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._insert: Any = sqlite.insert if store.dialect == "sqlite" else postgresql.insert

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take ``name`` if it is free, expired, or ``holder``'s already."""

        def op(conn: Connection) -> bool:
            now = utcnow()
            stmt = self._insert(t.leases).values(
                name=name, holder=holder, expires_at=now + timedelta(seconds=ttl)
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.leases.c.name],
                set_={"holder": holder, "expires_at": now + timedelta(seconds=ttl)},
                where=or_(t.leases.c.expires_at < now, t.leases.c.holder == holder),
            )
            # RETURNING, not rowcount: psycopg reports no row count for an upsert.
            return conn.execute(stmt.returning(t.leases.c.name)).first() is not None

        return await self.store.run_write(op)

    async def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Extend ``holder``'s lease; False if another holder has it now."""

        def op(conn: Connection) -> bool:
            stmt = (
                update(t.leases)
                .where(and_(t.leases.c.name == name, t.leases.c.holder == holder))
                .values(expires_at=utcnow() + timedelta(seconds=ttl))
                .returning(t.leases.c.name)
            )
            return conn.execute(stmt).first() is not None

        return await self.store.run_write(op)

    async def release(self, name: str, holder: str) -> None:
        """Give ``name`` up if ``holder`` holds it."""

        def op(conn: Connection) -> None:
            conn.execute(
                delete(t.leases).where(and_(t.leases.c.name == name, t.leases.c.holder == holder))
            )

        await self.store.run_write(op)

    async def holder(self, name: str) -> str | None:
        """Who holds ``name`` (expired or not), or None."""

        def op(conn: Connection) -> str | None:
            row = conn.execute(select(t.leases.c.holder).where(t.leases.c.name == name)).first()
            return None if row is None else str(row[0])

        return await self.store.run_read(op)

    async def take_over(self, name: str, old: str, new: str, ttl: float) -> bool:
        """Give ``name`` to ``new`` if ``old`` (a dead process) still holds it."""

        def op(conn: Connection) -> bool:
            stmt = (
                update(t.leases)
                .where(and_(t.leases.c.name == name, t.leases.c.holder == old))
                .values(holder=new, expires_at=utcnow() + timedelta(seconds=ttl))
                .returning(t.leases.c.name)
            )
            return conn.execute(stmt).first() is not None

        return await self.store.run_write(op)
