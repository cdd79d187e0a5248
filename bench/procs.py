"""Processes the benchmark starts (stopped by their own PID only), free ports, plain
HTTP requests, and the CPU and memory of process trees read from /proc."""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20


class BenchError(Exception):
    """A workload failed on a target; the message is what the report shows."""


# ----------------------------------------------------------------------------- processes

_started: list[Proc] = []


class Proc:
    """A process this benchmark started; stopped by its own PID only."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        self.stop_signal = stop_signal
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        # ``user``: run as that user and group (PostgreSQL refuses to run as root).
        self.popen = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **as_user(user),
        )
        self.pid = self.popen.pid
        _started.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, sig: int | None = None) -> None:
        """Stop it with ``sig`` (default: its ``stop_signal``), SIGKILL after 15 s."""
        sig = self.stop_signal if sig is None else sig
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=15)
        # Children the process left behind (its own session), by PID, if any.
        for pid in _session_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()
        if self in _started:
            _started.remove(self)


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a command as ``user`` and its group (none: as we are)."""
    if not user:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def _session_members(sid: int) -> list[int]:
    """PIDs still alive in the session a stopped process led (its orphans)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and int(entry) != sid:  # field 6 (session) is [3] after ")"
            found.append(int(entry))
    return found


def stop_all() -> None:
    for proc in list(reversed(_started)):
        with contextlib.suppress(Exception):
            proc.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` different free ports (held open together while they are picked)."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, path: str = "/v2/", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            status, _, _ = http_request(port, "GET", path, timeout=1)
            if status in (200, 401):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(
        f"{proc.name} did not answer {path} within {timeout:.0f} s:\n{proc.log_tail()}"
    )


def run(
    argv: list[str],
    timeout: float,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (``user``: as that user and group), bounded by ``timeout``."""
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
            check=False,
            **as_user(user),
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{shlex.join(argv)} took longer than {timeout:.0f} s") from e


# ----------------------------------------------------------------------------- RSS sampling


def _tree(pid: int) -> list[int]:
    """The process and all its descendants (from /proc/<pid>/task/<tid>/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    return out


PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) used so far by a process tree's live members.

    ``reaped``: add what children that exited and were waited for used (cutime,
    cstime), for servers whose workers come and go (PostgreSQL's backends).
    """
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if reaped:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICK


def machine_cpu() -> float:
    """CPU seconds every core of the machine has been busy so far (not idle, not
    waiting for I/O), whoever used them: the benchmark's processes and anyone else's."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user time
    return (sum(fields[:8]) - idle) / TICK


def trees_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by several process trees together."""
    return sum(tree_cpu(pid) for pid in pids)


class RssSampler(threading.Thread):
    """Samples the RSS of process trees (summed) every ``interval`` s; keeps the max per phase."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def sample(self) -> None:
        rss = sum(tree_rss(pid) for pid in self.pids)
        with self._lock:
            self.samples += 1
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)

    def set_phase(self, phase: str) -> None:
        self.sample()
        with self._lock:
            self.phase = phase
        self.sample()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sample()

    def peak(self) -> int:
        with self._lock:
            return max(self.peaks.values(), default=0)


_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]
