"""The job queue (``jobs`` table): background work that worker processes claim from
the database, so any number of them, on any host, share it.

A job is *due* when it is queued and its ``run_at`` has come, or when it is running
but its claim's lease expired (its worker died). :meth:`JobStore.claim` takes the
oldest due job in one statement: ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP
LOCKED)`` on PostgreSQL, so concurrent claimers pass over each other's rows instead
of waiting; on SQLite the same statement runs inside the store's write transaction
(``BEGIN IMMEDIATE``), which already admits one writer at a time. Every claim gets
a fresh token (``claimed_by``); renewing, finishing or giving a job back only
counts while the token is still the job's (fencing), so a worker that lost its
claim cannot overwrite the outcome of the one that took the job over.

Times come from this host's clock, as leases' do (hosts keep clocks in step: NTP).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, Row, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hamn.metadata import schema as t
from hamn.metadata.store import MetadataStore, utcnow

JobState = Literal["queued", "running", "succeeded", "failed"]
#: States a job ends in; finished jobs are pruned after a while.
FINISHED: tuple[JobState, ...] = ("succeeded", "failed")
#: Attempts a job gets unless its enqueuer says otherwise.
DEFAULT_MAX_ATTEMPTS = 3
#: ``last_error`` keeps this much of a failure's text.
ERROR_LIMIT = 4000


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored."""

    id: int
    kind: str
    payload: dict[str, Any]
    unique_key: str | None
    state: JobState
    attempts: int
    max_attempts: int
    run_at: datetime
    claimed_by: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything hamn stores is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=utcnow().tzinfo)


def _job(row: Row[Any]) -> Job:
    run_at = _aware(row.run_at)
    created_at = _aware(row.created_at)
    assert run_at is not None and created_at is not None
    return Job(
        id=row.id,
        kind=row.kind,
        payload=orjson.loads(row.payload),
        unique_key=row.unique_key,
        state=row.state,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        run_at=run_at,
        claimed_by=row.claimed_by,
        lease_until=_aware(row.lease_until),
        last_error=row.last_error,
        created_at=created_at,
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
    )


def _holding(job_id: int, claim: str) -> Any:
    """The job is running under ``claim`` (the fence of every outcome)."""
    j = t.jobs.c
    return and_(j.id == job_id, j.claimed_by == claim, j.state == "running")


class JobStore:
    """The job queue in the database a :class:`MetadataStore` uses."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._insert: Any = sqlite.insert if store.dialect == "sqlite" else postgresql.insert

    async def enqueue(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        unique_key: str | None = None,
        run_at: datetime | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> int | None:
        """Queue a job; its id, or None when a job with ``unique_key`` exists already
        (whatever its state: a key names one piece of work, done once)."""
        now = utcnow()
        values = {
            "kind": kind,
            "payload": orjson.dumps(payload or {}).decode(),
            "unique_key": unique_key,
            "state": "queued",
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_at": run_at or now,
            "created_at": now,
        }

        def op(conn: Connection) -> int | None:
            stmt = self._insert(t.jobs).values(**values)
            if unique_key is not None:
                stmt = stmt.on_conflict_do_nothing(index_elements=[t.jobs.c.unique_key])
            found = conn.execute(stmt.returning(t.jobs.c.id)).scalar()
            return None if found is None else int(found)

        return await self.store.run_write(op)

    async def has_due(self, kinds: Collection[str]) -> bool:
        """Whether a job of one of ``kinds`` is due: a read, so idle workers poll
        without taking the database's write lock."""
        now = utcnow()

        def op(conn: Connection) -> bool:
            stmt = select(t.jobs.c.id).where(_due(now), t.jobs.c.kind.in_(kinds)).limit(1)
            return conn.execute(stmt).first() is not None

        return await self.store.run_read(op)

    async def claim(self, claim: str, lease: float, kinds: Collection[str]) -> Job | None:
        """Take the oldest due job of one of ``kinds`` for ``claim`` (a token unique to
        this claim) for ``lease`` seconds, counting an attempt; None if none is due.

        A running job whose lease expired with no attempts left fails instead
        (its worker died each time: the job may be what kills them)."""
        now = utcnow()
        j = t.jobs.c

        def op(conn: Connection) -> Job | None:
            conn.execute(
                update(t.jobs)
                .where(j.state == "running", j.lease_until < now, j.attempts >= j.max_attempts)
                .values(
                    state="failed",
                    finished_at=now,
                    claimed_by=None,
                    last_error=func.coalesce(j.last_error, "")
                    + "; its worker stopped before it finished, on every attempt",
                )
            )
            oldest = (
                select(j.id)
                .where(_due(now), j.kind.in_(kinds))
                .order_by(j.run_at, j.id)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            row = conn.execute(
                update(t.jobs)
                .where(j.id == oldest)
                .values(
                    state="running",
                    attempts=j.attempts + 1,
                    claimed_by=claim,
                    lease_until=now + timedelta(seconds=lease),
                    started_at=now,
                )
                .returning(*t.jobs.c)
            ).first()
            return None if row is None else _job(row)

        return await self.store.run_write(op)

    async def renew(self, job_id: int, claim: str, lease: float) -> bool:
        """Extend the claim's lease by ``lease`` from now; False if the claim is lost."""
        values = {"lease_until": utcnow() + timedelta(seconds=lease)}
        return await self._fenced(job_id, claim, values)

    async def succeed(self, job_id: int, claim: str) -> bool:
        """Record that the job is done; False (nothing changed) if the claim is lost."""
        values = {"state": "succeeded", "finished_at": utcnow(), "lease_until": None}
        return await self._fenced(job_id, claim, values)

    async def fail(self, job_id: int, claim: str, error: str, *, retry_at: datetime | None) -> bool:
        """Record a failed attempt: queued again for ``retry_at``, or failed for good when
        None; False (nothing changed) if the claim is lost."""
        values: dict[str, Any] = {"last_error": error[:ERROR_LIMIT], "lease_until": None}
        if retry_at is None:
            values |= {"state": "failed", "finished_at": utcnow()}
        else:
            values |= {"state": "queued", "run_at": retry_at, "claimed_by": None}
        return await self._fenced(job_id, claim, values)

    async def release(self, job_id: int, claim: str, *, run_at: datetime | None = None) -> bool:
        """Give the job back unfinished, the attempt not counted (a worker stopping, or
        a job that cannot run yet), to run again from ``run_at`` (now by default)."""
        values = {
            "state": "queued",
            "run_at": run_at or utcnow(),
            "attempts": t.jobs.c.attempts - 1,
            "claimed_by": None,
            "lease_until": None,
        }
        return await self._fenced(job_id, claim, values)

    async def _fenced(self, job_id: int, claim: str, values: dict[str, Any]) -> bool:
        def op(conn: Connection) -> bool:
            stmt = update(t.jobs).where(_holding(job_id, claim)).values(**values)
            return bool(conn.execute(stmt).rowcount == 1)

        return await self.store.run_write(op)

    async def get(self, job_id: int) -> Job | None:
        """The job ``job_id``, or None."""

        def op(conn: Connection) -> Job | None:
            row = conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).first()
            return None if row is None else _job(row)

        return await self.store.run_read(op)

    async def listing(
        self,
        *,
        kind: str | None = None,
        state: JobState | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[Job]:
        """Up to ``limit`` jobs (of ``kind``, in ``state``, when given), oldest first
        or newest first."""

        def op(conn: Connection) -> list[Job]:
            j = t.jobs.c
            stmt = select(t.jobs).order_by(j.id.desc() if newest_first else j.id).limit(limit)
            if kind is not None:
                stmt = stmt.where(j.kind == kind)
            if state is not None:
                stmt = stmt.where(j.state == state)
            return [_job(row) for row in conn.execute(stmt)]

        return await self.store.run_read(op)

    async def counts(self) -> dict[tuple[str, str], int]:
        """How many jobs there are per (kind, state)."""

        def op(conn: Connection) -> dict[tuple[str, str], int]:
            j = t.jobs.c
            stmt = select(j.kind, j.state, func.count()).group_by(j.kind, j.state)
            return {(kind, state): int(n) for kind, state, n in conn.execute(stmt)}

        return await self.store.run_read(op)

    async def prune(self, finished_before: datetime) -> int:
        """Delete jobs that finished before ``finished_before``; how many went."""

        def op(conn: Connection) -> int:
            j = t.jobs.c
            stmt = delete(t.jobs).where(j.state.in_(FINISHED), j.finished_at < finished_before)
            return int(conn.execute(stmt).rowcount)

        return await self.store.run_write(op)


def _due(now: datetime) -> Any:
    j = t.jobs.c
    return or_(
        and_(j.state == "queued", j.run_at <= now),
        and_(j.state == "running", j.lease_until < now),
    )
