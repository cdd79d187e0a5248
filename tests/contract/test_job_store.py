"""The job queue on every supported database: hamn.metadata.jobs.JobStore, and
hamn.services.jobs' worker and scheduler over it.

A job is claimed by one claimer at a time (also by two processes), a dead claimer's
job is taken over after its lease, a lost claim records nothing, failures retry
with back-off and then fail, and periodic turns are queued once per interval.
Handlers here are registered by the tests (no test-only kind in hamn itself).
"""

# ruff: noqa: F811 - the store fixtures are imported from test_metadata_store

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from store_support import run
from test_metadata_store import engine, reg, store  # noqa: F401

from hamn.metadata import schema as t
from hamn.metadata.jobs import Job, JobStore
from hamn.metadata.leases import LeaseStore
from hamn.metadata.store import MetadataStore, create_metadata_engine
from hamn.oci.digest import digest_bytes
from hamn.services.gc import GarbageCollector
from hamn.services.jobs import Deferred, JobWorker, Periodic, Scheduler
from hamn.storage.filesystem import FilesystemDriver
from hamn.storage.leases import try_lease

LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def jobs(store: MetadataStore) -> JobStore:
    return JobStore(store)


def test_a_unique_key_queues_one_job(jobs: JobStore) -> None:
    first = run(jobs.enqueue("gc", {"a": 1}, unique_key="gc@60s#1"))
    again = run(jobs.enqueue("gc", {"a": 2}, unique_key="gc@60s#1"))
    other = run(jobs.enqueue("gc", unique_key="gc@60s#2"))
    assert first is not None and other is not None and again is None
    listed = run(jobs.listing())
    assert [(j.id, j.payload, j.state) for j in listed] == [
        (first, {"a": 1}, "queued"),
        (other, {}, "queued"),
    ]


def test_claim_takes_the_oldest_due_job_of_its_kinds(jobs: JobStore) -> None:
    run(jobs.enqueue("x", {"n": "later"}, run_at=LATER))
    run(jobs.enqueue("y", {"n": "other kind"}))
    first = run(jobs.enqueue("x", {"n": "first"}))
    second = run(jobs.enqueue("x", {"n": "second"}))
    assert run(jobs.has_due(["x"])) and not run(jobs.has_due(["z"]))

    got = run(jobs.claim("c1", 30, ["x"]))
    assert got is not None and got.id == first and got.payload == {"n": "first"}
    assert (got.state, got.attempts, got.claimed_by) == ("running", 1, "c1")
    assert got.lease_until is not None and got.lease_until > datetime.now(UTC)
    got = run(jobs.claim("c2", 30, ["x"]))
    assert got is not None and got.id == second
    assert run(jobs.claim("c3", 30, ["x"])) is None  # the later one is not due
    assert not run(jobs.has_due(["x"]))
    assert run(jobs.counts()) == {("x", "queued"): 1, ("x", "running"): 2, ("y", "queued"): 1}


def test_a_dead_claimers_job_is_taken_over_and_its_old_claim_records_nothing(
    jobs: JobStore,
) -> None:
    job_id = run(jobs.enqueue("x"))
    assert run(jobs.claim("dead", 0.5, ["x"])) is not None
    assert run(jobs.claim("alive", 30, ["x"])) is None  # its lease still holds
    time.sleep(0.6)
    taken = run(jobs.claim("alive", 30, ["x"]))
    assert taken is not None and taken.id == job_id and taken.attempts == 2

    # The first claimer comes back: none of its outcomes count any more.
    assert not run(jobs.renew(job_id, "dead", 30))
    assert not run(jobs.succeed(job_id, "dead"))
    assert not run(jobs.fail(job_id, "dead", "boom", retry_at=None))
    assert not run(jobs.release(job_id, "dead"))
    assert run(jobs.renew(job_id, "alive", 30))
    assert run(jobs.succeed(job_id, "alive"))
    done = run(jobs.get(job_id))
    assert done is not None and done.state == "succeeded" and done.finished_at is not None
    assert not run(jobs.succeed(job_id, "alive"))  # an outcome is recorded once


def test_a_job_whose_workers_keep_dying_fails_after_its_attempts(jobs: JobStore) -> None:
    job_id = run(jobs.enqueue("x", max_attempts=2))
    for claimer in ("one", "two"):
        assert run(jobs.claim(claimer, 0.02, ["x"])) is not None
        time.sleep(0.05)
    assert run(jobs.claim("three", 30, ["x"])) is None
    failed = run(jobs.get(job_id))
    assert failed is not None and failed.state == "failed" and failed.attempts == 2
    assert failed.last_error and "stopped before it finished" in failed.last_error


def test_failures_retry_at_their_time_and_a_release_is_not_an_attempt(jobs: JobStore) -> None:
    job_id = run(jobs.enqueue("x", max_attempts=2))
    assert run(jobs.claim("a", 30, ["x"])) is not None
    assert run(jobs.release(job_id, "a"))
    again = run(jobs.claim("b", 30, ["x"]))
    assert again is not None and again.attempts == 1
    assert run(jobs.fail(job_id, "b", "ValueError: once", retry_at=LATER))
    queued = run(jobs.get(job_id))
    assert queued is not None and queued.state == "queued" and queued.run_at == LATER
    assert queued.last_error == "ValueError: once" and queued.claimed_by is None
    assert run(jobs.claim("c", 30, ["x"])) is None  # not before its retry time


def test_prune_removes_only_jobs_finished_before_the_cutoff(jobs: JobStore) -> None:
    done = run(jobs.enqueue("x"))
    waiting = run(jobs.enqueue("x", run_at=LATER))
    assert done is not None and waiting is not None
    run(jobs.claim("a", 30, ["x"]))
    run(jobs.succeed(done, "a"))
    assert run(jobs.prune(datetime.now(UTC) - timedelta(hours=1))) == 0
    assert run(jobs.prune(datetime.now(UTC) + timedelta(seconds=1))) == 1
    assert [j.id for j in run(jobs.listing())] == [waiting]


def test_concurrent_claimers_on_two_stores_never_share_a_job(
    engine: Engine, jobs: JobStore
) -> None:
    for n in range(60):
        run(jobs.enqueue("x", {"n": n}))
    other = MetadataStore(create_metadata_engine(str(engine.url)), threads=8)
    try:
        stores = [JobStore(jobs.store), JobStore(other)]

        async def drain(js: JobStore, name: str) -> list[int]:
            got = []
            while (job := await js.claim(name, 30, ["x"])) is not None:
                got.append(job.id)
            return got

        async def all_claimers() -> list[list[int]]:
            return await asyncio.gather(*(drain(stores[i % 2], f"claimer-{i}") for i in range(6)))

        claimed = [i for ids in run(all_claimers()) for i in ids]
    finally:
        other.close()
    assert len(claimed) == 60 and len(set(claimed)) == 60


# -- the worker -----------------------------------------------------------------------------------
def worker(jobs: JobStore, handler: Any, **options: Any) -> JobWorker:
    defaults: dict[str, Any] = {"lease": 30.0, "poll": 0.01, "retry_delay": 0.01}
    return JobWorker(jobs, {"x": handler}, **{**defaults, **options})


def drain(w: JobWorker, seconds: float = 10.0) -> None:
    """Run the worker's jobs until none is due or pending a retry soon."""

    async def loop() -> None:
        deadline = time.monotonic() + seconds
        idle = 0
        while time.monotonic() < deadline and idle < 20:
            idle = 0 if await w.run_once() else idle + 1
            await asyncio.sleep(0.005)

    run(loop())


def test_worker_retries_a_failing_handler_then_records_success(jobs: JobStore) -> None:
    calls: list[int] = []

    async def flaky(job: Job) -> None:
        calls.append(job.attempts)
        if job.attempts < 3:
            raise RuntimeError(f"attempt {job.attempts} failed")

    job_id = run(jobs.enqueue("x", max_attempts=3))
    drain(worker(jobs, flaky))
    assert calls == [1, 2, 3]
    done = run(jobs.get(job_id))
    assert done is not None and done.state == "succeeded"
    assert done.last_error == "RuntimeError: attempt 2 failed"


def test_worker_gives_up_after_max_attempts(jobs: JobStore) -> None:
    async def broken(job: Job) -> None:
        raise ValueError("never works")

    job_id = run(jobs.enqueue("x", max_attempts=2))
    drain(worker(jobs, broken))
    failed = run(jobs.get(job_id))
    assert failed is not None and (failed.state, failed.attempts) == ("failed", 2)
    assert failed.last_error == "ValueError: never works"


def test_a_deferred_job_runs_later_without_an_attempt_counted(jobs: JobStore) -> None:
    async def busy(job: Job) -> None:
        raise Deferred("someone else is at it", delay=3600)

    job_id = run(jobs.enqueue("x", max_attempts=1))
    assert run(worker(jobs, busy).run_once())
    later = run(jobs.get(job_id))
    assert later is not None and (later.state, later.attempts) == ("queued", 0)
    assert later.run_at > datetime.now(UTC) + timedelta(minutes=59)


def test_a_worker_that_loses_its_claim_stops_the_handler_and_records_nothing(
    jobs: JobStore,
) -> None:
    seen: list[str] = []

    async def slow(job: Job) -> None:
        # Another worker takes the job over (as after this one's lease expired).
        await jobs.store.run_write(
            lambda conn: conn.execute(
                update(t.jobs).where(t.jobs.c.id == job.id).values(claimed_by="usurper")
            )
        )
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    job_id = run(jobs.enqueue("x"))
    started = time.monotonic()
    assert run(worker(jobs, slow, lease=0.3).run_once())
    assert seen == ["cancelled"] and time.monotonic() - started < 5
    kept = run(jobs.get(job_id))
    assert kept is not None and (kept.state, kept.claimed_by) == ("running", "usurper")


def test_a_stopping_worker_gives_its_job_back(jobs: JobStore) -> None:
    async def endless(job: Job) -> None:
        await asyncio.sleep(60)

    job_id = run(jobs.enqueue("x"))
    w = worker(jobs, endless, stop_grace=0.1)

    async def stop_soon() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        await asyncio.wait_for(w.run(stop), 10)

    run(stop_soon())
    back = run(jobs.get(job_id))
    assert back is not None and (back.state, back.attempts, back.claimed_by) == ("queued", 0, None)


def test_schedulers_queue_one_job_per_turn(jobs: JobStore) -> None:
    periodic = [Periodic("gc", 60.0), Periodic("never", 0.0)]
    a, b = Scheduler(jobs, periodic), Scheduler(jobs, periodic)
    now = 1_800_000_030.0  # half-way through a minute
    run(a.tick(now))
    run(b.tick(now + 1))
    run(a.tick(now + 2))
    listed = run(jobs.listing())
    assert [(j.kind, j.unique_key) for j in listed] == [("gc", "gc@60s#30000001")]
    assert listed[0].run_at == datetime.fromtimestamp(1_800_000_060.0, UTC)
    run(b.tick(now + 60))
    run(a.tick(now + 61))
    assert [j.unique_key for j in run(jobs.listing())] == ["gc@60s#30000001", "gc@60s#30000002"]


# -- two worker processes -------------------------------------------------------------------------
def _process_worker(url: str, log_path: str, ready: Any, go: Any) -> None:
    """A worker process: runs ``x`` jobs (each appends its id to ``log_path``) until
    none has been due for half a second."""
    store = MetadataStore(create_metadata_engine(url), threads=2)
    jobs = JobStore(store)

    async def record(job: Job) -> None:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{job.id} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        await asyncio.sleep(0.002)

    async def main() -> None:
        w = JobWorker(jobs, {"x": record}, poll=0.01, lease=30)
        idle_since = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() - idle_since < 0.5 and time.monotonic() < deadline:
            if await w.run_once():
                idle_since = time.monotonic()
            else:
                await asyncio.sleep(0.01)

    ready.set()
    go.wait(30)
    try:
        asyncio.run(main())
    finally:
        store.close()


def test_two_worker_processes_run_each_job_once(
    engine: Engine, jobs: JobStore, tmp_path: Path
) -> None:
    ids = [run(jobs.enqueue("x", {"n": n})) for n in range(200)]
    log_path = str(tmp_path / "ran.log")
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    readies = [ctx.Event(), ctx.Event()]
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        ctx.Process(target=_process_worker, args=(url, log_path, ready, go)) for ready in readies
    ]
    for p in procs:
        p.start()
    try:
        for ready in readies:
            assert ready.wait(60)
        go.set()
        for p in procs:
            p.join(90)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    lines = [line.split() for line in Path(log_path).read_text().splitlines()]
    runs = Counter(int(job_id) for job_id, _ in lines)
    assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}, runs.most_common(3)
    assert len({pid for _, pid in lines}) == 2  # both processes took part
    assert {j.state for j in run(jobs.listing())} == {"succeeded"}


# -- garbage collection as a job ------------------------------------------------------------------
def test_gc_job_collects_and_waits_for_a_collection_holding_the_lease(
    store: MetadataStore, reg: int, jobs: JobStore, tmp_path: Path
) -> None:
    driver = FilesystemDriver(str(tmp_path / "storage"), fsync=False)
    try:
        data = b"garbage"
        digest = digest_bytes(data)
        path = Path(driver.blob_path(digest))
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        run(store.link_blob(reg, "repo", digest, len(data)))
        collector = GarbageCollector(store, driver, grace=0, lease_ttl=30)
        w = JobWorker(jobs, {"gc": collector.run_job}, poll=0.01)
        job_id = run(jobs.enqueue("gc"))

        async def while_another_collects() -> bool:
            # Another process's collection (hamn gc, on another store) holds the lease.
            other = await try_lease(LeaseStore(store), "gc")
            assert other is not None
            try:
                return await w.run_once()
            finally:
                await other.release()

        assert run(while_another_collects())
        deferred = run(jobs.get(job_id))
        assert deferred is not None and (deferred.state, deferred.attempts) == ("queued", 0)
        assert path.exists()
        due_now = update(t.jobs).values(run_at=datetime.now(UTC))
        run(jobs.store.run_write(lambda conn: conn.execute(due_now)))
        assert run(w.run_once())
        done = run(jobs.get(job_id))
        assert done is not None and done.state == "succeeded"
        assert not path.exists()
    finally:
        driver.close()
