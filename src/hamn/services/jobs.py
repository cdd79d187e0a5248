"""Background work run by worker processes that take jobs from the database.

A :class:`JobWorker` loops: it lets its :class:`Scheduler` queue the periodic jobs
whose turn has come, claims the oldest due job of a kind it has a handler for
(:meth:`hamn.metadata.jobs.JobStore.claim`), runs the handler while renewing the
claim's lease in the background, and records the outcome through the claim's
fence. Any number of workers, on any host, share one database:

- a job is claimed by one worker at a time, and its outcome is recorded only by
  the worker whose claim is current, so no job's outcome is recorded twice;
- a worker that dies stops renewing, its lease expires and another worker takes
  the job over (an attempt counted); a worker that finds its claim lost (it could
  not renew in time) cancels its handler;
- a handler that raises is retried with back-off up to the job's ``max_attempts``,
  then the job fails with the error; one that raises :class:`Deferred` runs again
  later without an attempt counted;
- stopping (SIGTERM) lets the running handler finish for ``stop_grace`` seconds,
  then cancels it and gives the job back.

Handlers must tolerate running again after a partial run (a dead worker's job is
taken over from the start), as the garbage collector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hamn.logs import FIELDS
from hamn.metadata.jobs import Job, JobStore

log = logging.getLogger("hamn.jobs")

#: A job kind's handler: runs the job; raising fails the attempt.
Handler = Callable[[Job], Awaitable[None]]

#: Defaults: seconds a claim lives without renewal, between polls when idle, a
#: stopping worker waits for its handler, and before the first retry (doubling).
DEFAULT_LEASE = 30.0
DEFAULT_POLL = 1.0
DEFAULT_STOP_GRACE = 10.0
DEFAULT_RETRY_DELAY = 30.0
#: Retries never wait longer than this.
MAX_RETRY_DELAY = 3600.0
#: Finished jobs are kept at least this long (for inspection), then pruned.
KEEP_FINISHED = 86400.0
#: How often each worker prunes finished jobs.
PRUNE_EVERY = 3600.0


class Deferred(Exception):
    """The job cannot run now (another process is doing the same work): run it again
    in ``delay`` seconds, the attempt not counted."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job of ``kind`` queued once per ``interval`` seconds (0: never)."""

    kind: str
    interval: float
    payload: dict[str, Any] = field(default_factory=dict)

    def turn(self, now: float) -> tuple[str, datetime]:
        """The next turn after ``now``: its unique key and when it is due.

        Turns are the interval's slots since the epoch, so every scheduler (every
        worker, on every host) names the same turn the same way and the queue keeps
        one job per turn; a deployment restarted often still collects on time.
        """
        slot = int(now // self.interval) + 1
        due = datetime.fromtimestamp(slot * self.interval, UTC)
        return f"{self.kind}@{self.interval:g}s#{slot}", due


class Scheduler:
    """Queues the periodic jobs: each turn's job once, whichever worker is first."""

    def __init__(self, jobs: JobStore, periodic: Sequence[Periodic]) -> None:
        self.jobs = jobs
        self.periodic = [p for p in periodic if p.interval > 0]
        self._queued: dict[str, str] = {}

    async def tick(self, now: float) -> None:
        """Queue the next turn of each periodic job, unless this scheduler did already
        (one write per turn per worker; the unique key keeps one job per turn)."""
        for periodic in self.periodic:
            key, due = periodic.turn(now)
            if self._queued.get(periodic.kind) == key:
                continue
            await self.jobs.enqueue(periodic.kind, periodic.payload, unique_key=key, run_at=due)
            self._queued[periodic.kind] = key


def worker_name() -> str:
    """This process's name in claims and logs: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobWorker:
    """Claims and runs jobs until stopped (see the module)."""

    def __init__(
        self,
        jobs: JobStore,
        handlers: Mapping[str, Handler],
        *,
        scheduler: Scheduler | None = None,
        lease: float = DEFAULT_LEASE,
        poll: float = DEFAULT_POLL,
        stop_grace: float = DEFAULT_STOP_GRACE,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        name: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.handlers = dict(handlers)
        self.scheduler = scheduler
        self.lease = lease
        self.poll = poll
        self.stop_grace = stop_grace
        self.retry_delay = retry_delay
        self.name = name or worker_name()
        self._pruned_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Run jobs until ``stop`` is set. Database errors are logged and the loop goes
        on at the next poll (a worker outlives a database restart)."""
        log.info("job worker %s started: kinds %s", self.name, sorted(self.handlers))
        while not stop.is_set():
            try:
                await self._housekeeping()
                ran = await self.run_once(stop)
            except Exception as exc:  # the database is down or not migrated yet
                log.warning(
                    "job worker %s: the job queue is unavailable (%s: %s); trying again",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
                ran = False
            if not ran:
                await self._idle(stop)
        log.info("job worker %s stopped", self.name)

    async def _housekeeping(self) -> None:
        now = time.time()
        if self.scheduler is not None:
            await self.scheduler.tick(now)
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            # Schedulers only queue turns still to come, so a finished turn's key is
            # never needed again once its job is gone.
            pruned = await self.jobs.prune(datetime.fromtimestamp(now - KEEP_FINISHED, UTC))
            if pruned:
                log.info("pruned %d finished jobs", pruned)

    async def _idle(self, stop: asyncio.Event) -> None:
        # A worker that ran a job looks for the next at once; an idle one polls (a
        # read: idle workers never take SQLite's write lock).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.poll)

    async def run_once(self, stop: asyncio.Event | None = None) -> bool:
        """Claim one due job and run it to its outcome; False when none was due."""
        kinds = list(self.handlers)
        if not await self.jobs.has_due(kinds):
            return False
        claim = f"{self.name}/{secrets.token_hex(6)}"
        job = await self.jobs.claim(claim, self.lease, kinds)
        if job is None:
            return False  # another worker was quicker
        log.info(
            "job %d (%s) started, attempt %d of %d",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
            extra=_fields(job),
        )
        await self._run(job, claim, stop or asyncio.Event())
        return True

    async def _run(self, job: Job, claim: str, stop: asyncio.Event) -> None:
        started = time.monotonic()
        handling = asyncio.ensure_future(self.handlers[job.kind](job))
        renewing = asyncio.ensure_future(self._renew(job, claim, handling))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({handling, stopping}, return_when="FIRST_COMPLETED")
            if not handling.done():  # asked to stop: let the handler finish, for a while
                await asyncio.wait({handling}, timeout=self.stop_grace)
            if not handling.done():
                handling.cancel()
                with contextlib.suppress(BaseException):
                    await handling
                if not renewing.done():
                    await self.jobs.release(job.id, claim)
                    log.info("job %d (%s) given back: the worker is stopping", job.id, job.kind)
                return
        finally:
            renewing.cancel()
            stopping.cancel()
            if not handling.done():  # this task itself was cancelled
                handling.cancel()
        await self._record(job, claim, handling, time.monotonic() - started)

    async def _renew(self, job: Job, claim: str, handling: asyncio.Future[None]) -> None:
        """Renew the claim every third of its lease; cancel the handler once it is lost."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                held = await self.jobs.renew(job.id, claim, self.lease)
            except Exception:  # the database is down: try again; expiry decides
                log.warning("could not renew the claim on job %d", job.id, exc_info=True)
                continue
            if not held:
                log.warning(
                    "job %d (%s): the claim was lost (another worker took the job over); "
                    "stopping its handler",
                    job.id,
                    job.kind,
                )
                handling.cancel()
                return

    async def _record(
        self, job: Job, claim: str, handling: asyncio.Future[None], seconds: float
    ) -> None:
        if handling.cancelled():
            return  # the claim was lost: the worker that holds it now records the outcome
        error = handling.exception()
        if error is None:
            if await self.jobs.succeed(job.id, claim):
                log.info(
                    "job %d (%s) finished in %.3f s",
                    job.id,
                    job.kind,
                    seconds,
                    extra=_fields(job),
                )
            else:
                log.warning("job %d (%s) finished after its claim was lost", job.id, job.kind)
            return
        if isinstance(error, Deferred):
            run_at = datetime.now(UTC) + timedelta(seconds=error.delay)
            await self.jobs.release(job.id, claim, run_at=run_at)
            log.info("job %d (%s) deferred %.0f s: %s", job.id, job.kind, error.delay, error)
            return
        text = f"{type(error).__name__}: {error}"
        retry_at = None
        if job.attempts < job.max_attempts:
            delay = min(self.retry_delay * 2 ** (job.attempts - 1), MAX_RETRY_DELAY)
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        await self.jobs.fail(job.id, claim, text, retry_at=retry_at)
        log.error(
            "job %d (%s) failed (attempt %d of %d%s): %s",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
            "; will retry" if retry_at else "; giving up",
            text,
            exc_info=error,
            extra=_fields(job),
        )


def _fields(job: Job) -> dict[str, Any]:
    return {FIELDS: {"job": job.id, "kind": job.kind, "attempt": job.attempts}}
