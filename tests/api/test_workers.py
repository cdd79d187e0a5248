"""Job workers beside a live server: dedicated ``hamn worker`` processes share the
``gc`` jobs of a deployment and run each once; a worker killed mid-collection has
its job taken over after the lease and done once; ``hamn gc`` cannot collect while
a job does; ``hamn serve`` starts ``job_workers`` of them (none with 0).

Leases are 2 s here (``HAMN_JOB_LEASE``), so take-overs come quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import child_pids, connect, digest_of, push_blob, random_bytes

from backend_support import backend_env, hamn_command_env
from hamn.metadata.jobs import Job, JobStore
from hamn.metadata.store import MetadataStore, create_metadata_engine
from hamn.storage.filesystem import FilesystemDriver

LEASE = "2s"  # a duration, as in a settings file


def job_store_call(data_dir: Path, call: Any) -> Any:
    """Run ``call(JobStore)`` on the deployment's database from this test process."""

    url = backend_env(data_dir).get("HAMN_DATABASE_URL", f"sqlite:///{data_dir / 'metadata.db'}")

    async def main() -> Any:
        store = MetadataStore(create_metadata_engine(url))
        try:
            return await call(JobStore(store))
        finally:
            store.close()

    return asyncio.run(main())


def start_worker(reg: Any, name: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = reg.data_dir.parent / f"worker-{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamn", "worker", "--data-dir", str(reg.data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - the process keeps it
        env={**hamn_command_env(reg.data_dir), **env},
    )
    return proc, log


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def finished(log: Path) -> list[int]:
    """Ids of the jobs a worker's log says it finished."""
    out = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if " finished in " in entry.get("message", ""):
                out.append(int(entry["job"]))
    return out


def wait_for(what: str, check: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gc_jobs(data_dir: Path) -> list[Job]:
    return list(job_store_call(data_dir, lambda js: js.listing(kind="gc")))


def test_dedicated_workers_share_the_jobs_and_run_each_once(start_server: Any) -> None:
    """(Collections take turns through their lease, so one worker may do them all;
    tests/contract/test_job_store.py shows two processes sharing jobs.)"""
    env = {"HAMN_JOB_WORKERS": "0", "HAMN_GC_INTERVAL": "0", "HAMN_JOB_LEASE": LEASE}
    reg = start_server(env=env)
    time.sleep(1)
    assert len(child_pids(reg.process.pid)) == 2  # the HTTP workers only

    async def enqueue(js: JobStore) -> list[int | None]:
        return [await js.enqueue("gc") for _ in range(20)]

    workers = [start_worker(reg, name, env) for name in ("a", "b")]
    try:
        for _, log in workers:
            wait_for("the workers to start", lambda log=log: "started" in log.read_text())
        ids = job_store_call(reg.data_dir, enqueue)
        assert len(set(ids)) == 20
        wait_for(
            "every job to succeed",
            lambda: {j.state for j in gc_jobs(reg.data_dir)} == {"succeeded"},
        )
    finally:
        codes = [stop_worker(proc) for proc, _ in workers]
    assert codes == [0, 0]  # SIGTERM stops a worker cleanly
    runs = [finished(log) for _, log in workers]
    counted = Counter(runs[0] + runs[1])
    assert sorted(counted) == sorted(ids) and set(counted.values()) == {1}, runs
    listed = subprocess.run(
        [sys.executable, "-m", "hamn", "job", "list", "--data-dir", str(reg.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=hamn_command_env(reg.data_dir),
    )
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert [j["id"] for j in shown] == sorted(ids, reverse=True)  # newest first
    assert {(j["kind"], j["state"]) for j in shown} == {("gc", "succeeded")}
    # Any server reports the deployment's queue on /metrics.
    metrics = httpx.get(f"{reg.url}/metrics", auth=reg.auth, timeout=10).text
    assert 'hamn_jobs{kind="gc",state="succeeded"} 20' in metrics.splitlines(), metrics[-500:]


@contextlib.contextmanager
def holding_blob_lock(root: str, digest: str) -> Iterator[None]:
    """Hold a blob's storage lock (as a push publishing it would) in a thread of ours."""
    taken, release = threading.Event(), threading.Event()

    async def hold() -> None:
        driver = FilesystemDriver(root, fsync=False)
        try:
            async with driver.digest_lock(digest):
                taken.set()
                await asyncio.to_thread(release.wait, 60)
        finally:
            driver.close()

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    try:
        assert taken.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)


@pytest.mark.filesystem_storage  # holds a blob's lock file
def test_a_killed_workers_job_is_taken_over_and_done_once(start_server: Any) -> None:
    env = {
        "HAMN_JOB_WORKERS": "0",
        "HAMN_GC_INTERVAL": "0",
        "HAMN_GC_GRACE": "0",
        "HAMN_JOB_LEASE": LEASE,
    }
    reg = start_server(env=env)
    with connect(reg) as client:
        loose = random_bytes(1000)
        push_blob(client, "scratch", loose)  # linked, used by no manifest: garbage
    digest = digest_of(loose)
    root = str(reg.data_dir / "storage")
    first, first_log = start_worker(reg, "first", env)
    second: subprocess.Popen[bytes] | None = None
    try:
        with holding_blob_lock(root, digest):
            job_id = job_store_call(reg.data_dir, lambda js: js.enqueue("gc"))
            # The first worker's collection waits for the blob's lock, holding the job
            # and the collection lease.
            job = wait_for(
                "the first worker to run the job",
                lambda: next(
                    (j for j in gc_jobs(reg.data_dir) if j.claimed_by and j.state == "running"),
                    None,
                ),
            )
            assert f":{first.pid}/" in job.claimed_by
            busy = subprocess.run(
                [sys.executable, "-m", "hamn", "gc", "--data-dir", str(reg.data_dir)],
                capture_output=True,
                text=True,
                timeout=60,
                env={**hamn_command_env(reg.data_dir), **env},
            )
            assert busy.returncode == 3, busy.stderr
            assert "another garbage collection is running" in busy.stderr
            second, second_log = start_worker(reg, "second", env)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        done = wait_for(
            "the second worker to finish the job",
            lambda: next(
                (j for j in gc_jobs(reg.data_dir) if j.id == job_id and j.state == "succeeded"),
                None,
            ),
        )
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
    assert second is not None
    assert f":{second.pid}/" in (done.claimed_by or "")
    assert done.attempts == 2  # the dead worker's attempt, then the second's
    assert finished(first_log) == [] and finished(second_log) == [job_id]
    with connect(reg) as client:
        assert client.head(f"/v2/scratch/blobs/{digest}").status_code == 404
    driver = FilesystemDriver(root, fsync=False)
    assert not os.path.exists(driver.blob_path(digest))
    driver.close()


def job_worker_pids(server_pid: int) -> list[int]:
    """``hamn serve``'s job worker children (their command line says ``worker``)."""
    found = []
    for pid in child_pids(server_pid):
        with contextlib.suppress(OSError):
            if b"worker\0--from-serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def test_serve_starts_its_job_workers_again_when_one_dies(start_server: Any) -> None:
    reg = start_server(env={"HAMN_JOB_WORKERS": "2", "HAMN_GC_INTERVAL": "0"})

    def workers() -> list[int]:
        return job_worker_pids(reg.process.pid)

    first = wait_for("two job workers", lambda: len(workers()) == 2 and workers())
    os.kill(first[0], signal.SIGKILL)

    def replaced() -> list[int]:
        now = workers()
        return now if len(now) == 2 and first[0] not in now else []

    assert first[1] in wait_for("a new job worker", replaced)
