"""``hamn worker``: a job worker process (garbage collection and other background work).

It takes jobs from the deployment's database (:mod:`hamn.services.jobs`), so any
number of workers, on any host, share the work, and a worker's death only delays
its job until its lease expires. ``hamn serve`` starts ``job_workers`` of them
beside its HTTP workers (:class:`WorkerProcesses`); with ``job_workers = 0`` the
servers only serve HTTP and dedicated ``hamn worker`` processes, started with the
same ``--config`` / ``HAMN_*`` settings, do the rest.

SIGTERM or SIGINT stops a worker: it claims nothing more, lets its running job
finish for a few seconds, then gives it back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hamn.cli.commands.fsck import _check_deployment_exists, _load

if TYPE_CHECKING:
    from hamn.config import Settings

log = logging.getLogger("hamn.serve")

#: Seconds a stopping worker gets before it is killed (its job's handler gets
#: ``hamn.services.jobs.DEFAULT_STOP_GRACE`` of them; the rest is for giving it back).
STOP_SECONDS = 15.0
#: A worker that died is started again, at most this often per slot.
RESPAWN_SECONDS = 1.0


@click.command("worker")
@click.option(
    "--config", "config_file", type=click.Path(exists=True), help="The server's TOML settings file."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="The server's data directory.")
@click.option("--from-serve", is_flag=True, hidden=True, help="Started by hamn serve.")
def worker(config_file: str | None, data_dir: Path | None, from_serve: bool) -> None:
    """Run background jobs (garbage collection...) from the deployment's database.

    Use the same --config, --data-dir and HAMN_* settings as `hamn serve`. Run as many
    as you like, on any host that reaches the database and the blob storage; each
    job runs once. `hamn serve` starts `job_workers` of them itself (default 1).
    """
    from hamn.http.app import SETTINGS_ENV, end_with_parent
    from hamn.logs import configure_logging

    if from_serve:
        end_with_parent()
        from hamn.config import Settings

        settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    else:
        settings = _load(config_file, data_dir)
        _check_deployment_exists(settings)
    configure_logging(settings.log_level)
    asyncio.run(_work(settings))


async def _work(settings: Settings) -> None:
    from hamn.http.app import deployment_stores, job_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with deployment_stores(settings) as (store, driver):
        await job_worker(settings, store, driver).run(stop)


class WorkerProcesses:
    """``hamn serve``'s job workers: ``hamn worker`` child processes, started again
    when one dies (not when one was asked to stop), stopped with the server (and
    killed with it: they ask the kernel for SIGKILL when their parent dies, as the
    HTTP workers do)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        from hamn.http.observability import METRICS_DIR_ENV

        # Settings come from the environment hamn serve prepared (SETTINGS_ENV). The
        # HTTP workers' metrics directory is theirs alone.
        env = {k: v for k, v in os.environ.items() if k != METRICS_DIR_ENV}
        command = [sys.executable, "-m", "hamn", "worker", "--from-serve"]
        # close_fds=False lets Popen use posix_spawn, which does not wait on a pipe for
        # the exec: with fork+exec, a granian worker forked meanwhile by the main thread
        # inherits that pipe and Popen waits until it exits. Python and granian open
        # every descriptor close-on-exec, so the child inherits none of them anyway.
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, close_fds=False)

    def start(self) -> None:
        """Start the workers, and a thread that starts again any that dies."""
        if self.count == 0:
            return
        self._watcher = threading.Thread(target=self._watch, name="hamn-job-workers", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        # Children are started from this thread, which lives until stop(): the kernel's
        # parent-death signal follows the thread that started a child.
        with self._lock:
            if self._stopping.is_set():
                return
            self.processes = [self._spawn() for _ in range(self.count)]
        while not self._stopping.wait(RESPAWN_SECONDS):
            with self._lock:
                if self._stopping.is_set():
                    return
                for i, process in enumerate(self.processes):
                    # 0: it was asked to stop (a signal to it, or Ctrl-C to the group).
                    if process.poll() not in (None, 0):
                        log.warning(
                            "job worker %d exited with %s; starting another",
                            process.pid,
                            process.returncode,
                        )
                        self.processes[i] = self._spawn()
        # Keep the children's parent thread alive until stop() has ended them.
        with self._lock:
            return

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after ``STOP_SECONDS``)."""
        if self._watcher is None:
            return
        with self._lock:
            self._stopping.set()
            for process in self.processes:
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            for process in self.processes:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._watcher.join()
