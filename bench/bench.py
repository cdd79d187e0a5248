#!/usr/bin/env python3
"""hamn benchmark: hamn side by side with CNCF Distribution, one run, same workload, same client.

Run it with ``bench/run`` (see bench/README.md). Targets run one at a time, each on a
fresh data directory under bench/results/, in random order. Pulls use curl; pushes, the
small-layer and tag workloads use a small Go client (bench/client, built at bench time);
request rates use wrk, and the Go client for HEAD (wrk 4.1 hangs on HEAD responses).
Everything talks to 127.0.0.1 only, and every loop is bounded in count and in time.

hamn runs with authentication on, as it always does, and is measured the way clients
reach it: the Go client does the token flow (401, token from the realm with Basic,
Bearer, reused per scope), and wrk, curl and the HEAD load send a Bearer token that
the Go client fetched. Distribution runs without authentication (see bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CLIENT_SRC = BENCH / "client"
CLIENT_BIN = ROOT / ".cache" / "bench" / "benchclient"
WRK_DIR = BENCH / "wrk"
MiB = 1 << 20
ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)

HAMN = "hamn"
D2 = "distribution-2.8.2"
D3 = "distribution-3.x"
TARGETS = (HAMN, D2, D3)
ALIASES = {
    "hamn": HAMN,
    "d2": D2,
    "dist2": D2,
    "2.8.2": D2,
    "distribution-2.8.2": D2,
    "distribution2": D2,
    "d3": D3,
    "dist3": D3,
    "3.x": D3,
    "distribution-3.x": D3,
    "distribution3": D3,
}
SHORT = {HAMN: "hamn", D2: "2.8.2", D3: "3.x"}

# How much an RSS peak during the big push may exceed the peak during a small push
# before we say memory grows with blob size (one 16 MiB chunk buffered twice is fine).
RSS_GROWTH_LIMIT = 32 * MiB


class BenchError(Exception):
    """A workload failed on a target; the message is what the report shows."""


# ----------------------------------------------------------------------------- settings


@dataclass
class Settings:
    quick: bool = False
    blob_mib: int = 256
    chunk_mib: int = 16
    reps: int = 3
    load_seconds: int = 10
    warmup_seconds: int = 2
    connections: int = 64
    threads: int = 2
    tags_list: int = 1000
    walk_tags: int = 10000
    page: int = 100
    small_layers: int = 200
    small_size: int = 4096
    small_workers: int = 16
    tag_workers: int = 32

    @classmethod
    def make(cls, args: argparse.Namespace) -> Settings:
        s = cls(quick=args.quick)
        if args.quick:
            s.reps, s.load_seconds, s.warmup_seconds, s.walk_tags = 1, 3, 1, 2000
        for name in ("reps", "load_seconds", "blob_mib", "walk_tags"):
            value = getattr(args, name)
            if value is not None:
                setattr(s, name, value)
        return s


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
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,
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

    def stop(self, sig: int = signal.SIGTERM) -> None:
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
    argv: list[str], timeout: float, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
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


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process tree's live members."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICK


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree every ``interval`` s; keeps the max per phase."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def sample(self) -> None:
        rss = tree_rss(self.pid)
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


# ----------------------------------------------------------------------------- clients


def build_client() -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit(
            "bench: Go is needed to build bench/client (looked for `go` on PATH "
            "and /usr/local/go/bin/go)"
        )
    CLIENT_BIN.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    r = run([go, "build", "-trimpath", "-o", str(CLIENT_BIN), "."], 600, cwd=CLIENT_SRC, env=env)
    if r.returncode != 0:
        raise SystemExit(f"bench: building bench/client failed:\n{r.stderr}")
    return CLIENT_BIN


def client(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchclient subcommand and return its JSON result (``env``: its environment)."""
    r = run([str(CLIENT_BIN), *args], timeout, env=env)
    if r.returncode != 0:
        raise BenchError((r.stderr or r.stdout).strip() or f"benchclient exited {r.returncode}")
    try:
        return dict(json.loads(r.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError) as e:
        raise BenchError(f"benchclient printed no JSON: {r.stdout!r} {r.stderr!r}") from e


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk(
    url: str, script: str, settings: Settings, authorization: str | None = None
) -> dict[str, Any]:
    """Run wrk (after a warm-up run) and return req/s and latency percentiles in ms.

    ``authorization`` is sent as the Authorization header (the scripts read it from
    BENCH_AUTHORIZATION).
    """
    secs = settings.load_seconds
    env = {**os.environ, "BENCH_AUTHORIZATION": authorization or ""}
    base = [
        "wrk",
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
    ]
    run([*base, f"-d{settings.warmup_seconds}s", url], settings.warmup_seconds + 30, env=env)
    r = run([*base, f"-d{secs}s", url], secs + 60, env=env)
    out = r.stdout
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr.strip() or out.strip()}")
    res: dict[str, Any] = {
        "tool": "wrk",
        "connections": settings.connections,
        "threads": settings.threads,
        "seconds": secs,
    }
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    res["requests"] = int(m.group(1)) if m else 0
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        res[f"p{pct}_ms"] = float(val) * _UNITS[unit]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    if res["requests"] == 0:
        raise BenchError(f"wrk completed no request:\n{out.strip()}")
    if res["non2xx"]:
        raise BenchError(f"wrk: {res['non2xx']} of {res['requests']} responses were not 2xx/3xx")
    if res["socket_errors"] > res["requests"] // 100:
        raise BenchError(f"wrk: {res['socket_errors']} socket errors in {res['requests']} requests")
    return res


def load(url: str, method: str, settings: Settings, headers: list[str]) -> dict[str, Any]:
    """benchclient load (for HEAD, which wrk cannot do): warm-up, then the measured run."""
    args = ["load", "-url", url, "-method", method, "-c", str(settings.connections)]
    for h in headers:
        args += ["-H", h]
    client(*args, "-d", f"{settings.warmup_seconds}s", timeout=settings.warmup_seconds + 60)
    res = client(*args, "-d", f"{settings.load_seconds}s", timeout=settings.load_seconds + 60)
    res["tool"] = "benchclient load"
    if res["requests"] == 0:
        raise BenchError("benchclient load completed no request")
    if res["non2xx"] or res["errors"]:
        raise BenchError(
            f"{method} {url}: {res['non2xx']} non-2xx and {res['errors']} failed of "
            f"{res['requests']} requests; first: {res.get('first_error')}"
        )
    return res


def curl_get(
    url: str, expect_bytes: int, timeout: float = 300, headers: list[str] | None = None
) -> dict[str, Any]:
    r = run(
        [
            "curl",
            *(arg for h in headers or [] for arg in ("-H", h)),
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            str(int(timeout)),
            "-w",
            "%{http_code} %{size_download} %{time_total}",
            url,
        ],
        timeout + 10,
    )
    parts = r.stdout.split()
    if r.returncode != 0 or len(parts) != 3:
        raise BenchError(f"curl {url}: exit {r.returncode}: {r.stderr.strip()}")
    code, size, secs = int(parts[0]), int(parts[1]), float(parts[2])
    if code != 200 or size != expect_bytes:
        raise BenchError(f"curl {url}: HTTP {code}, {size} bytes (want 200, {expect_bytes})")
    return {"bytes": size, "seconds": secs, "mib_s": size / MiB / secs}


def summary(values: list[float], higher_is_better: bool = True) -> dict[str, Any]:
    best = max(values) if higher_is_better else min(values)
    return {"best": best, "median": statistics.median(values), "all": values}


# ----------------------------------------------------------------------------- machine limits


def sha256_limit(blob: Path, reps: int = 3) -> dict[str, Any]:
    data = blob.read_bytes()
    view = memoryview(data)
    speeds = []
    for _ in range(max(reps, 3)):
        h = hashlib.sha256()
        t0 = time.perf_counter()
        for off in range(0, len(data), MiB):
            h.update(view[off : off + MiB])
        h.hexdigest()
        speeds.append(len(data) / MiB / (time.perf_counter() - t0))
    return {"what": "hashlib.sha256, one core, 1 MiB updates", **summary(speeds)}


def start_nginx(work: Path, blob: Path, small: bytes) -> tuple[Proc, int]:
    base = work / "nginx"
    www = base / "www"
    www.mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (base / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    target = www / "blob.bin"
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)
    (www / "manifest.json").write_bytes(small)
    for p in (work, base, www):
        p.chmod(0o755)
    for p in (target, www / "manifest.json"):
        p.chmod(0o644)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = base / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes auto;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location / {{ }}
    }}
}}
"""
    )
    proc = Proc("nginx", ["nginx", "-p", str(base), "-c", str(conf)], base / "stderr.log")
    wait_ready(proc, port, "/manifest.json", timeout=15)
    return proc, port


def machine_limits(work: Path, blob: Path, settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    say("machine limits: sha256")
    out["sha256_mib_s"] = sha256_limit(blob)
    small_manifest = json.dumps({"schemaVersion": 2, "padding": "x" * 300}).encode()
    nginx = None
    try:
        nginx, port = start_nginx(work, blob, small_manifest)
        say("machine limits: nginx -> curl, 256 MiB file")
        out["nginx_curl_mib_s"] = summary(
            [
                curl_get(f"http://127.0.0.1:{port}/blob.bin", blob.stat().st_size)["mib_s"]
                for _ in range(3)
            ]
        )
        say("machine limits: wrk and benchclient against nginx (client ceilings)")
        url = f"http://127.0.0.1:{port}/manifest.json"
        out["wrk_nginx_small_get"] = wrk(url, "manifest_get.lua", settings)
        out["load_nginx_small_head"] = load(url, "HEAD", settings, [f"Accept: {ACCEPT}"])
    except BenchError as e:
        out["nginx_error"] = str(e)
        say(f"  nginx: {e}")
    finally:
        if nginx:
            nginx.stop(signal.SIGQUIT)
    # The push clients against a server that does no work: what the client itself can do.
    sink = Proc(
        "sink",
        [str(CLIENT_BIN), "sink", "-duration", "10m"],
        work / "sink.log",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert sink.popen.stdout is not None
        line = sink.popen.stdout.readline().decode().split()
        url = f"http://{line[1]}"
        say("machine limits: push clients against a no-op sink (client ceilings)")
        out["client_push_sink_mib_s"] = summary(
            [
                client(
                    "push",
                    "-url",
                    url,
                    "-file",
                    str(blob),
                    "-nonce",
                    f"sink{i}",
                    "-mode",
                    "mono",
                )["mib_s"]
                for i in range(2)
            ]
        )
        small = [
            client(
                "smallpush",
                "-url",
                url,
                "-n",
                str(settings.small_layers),
                "-c",
                str(settings.small_workers),
                "-size",
                str(settings.small_size),
            )
            for _ in range(2)
        ]
        out["client_smallpush_sink_per_s"] = summary([s["per_s"] for s in small])
        out["client_smallpush_sink_cores"] = max(s["client_cores"] for s in small)
    except (BenchError, IndexError) as e:
        out["sink_error"] = str(e)
    finally:
        if sink.popen.stdin:
            sink.popen.stdin.close()
        sink.stop()
    return out


# ----------------------------------------------------------------------------- targets


@dataclass
class TargetSpec:
    name: str
    argv_prefix: list[str]
    version: str = ""
    kind: str = "distribution"
    env: dict[str, str] = field(default_factory=dict)
    #: (username, password) the clients sign in with; None: no authentication
    creds: tuple[str, str] | None = None


def hamn_spec(cmd: str | None) -> TargetSpec | str:
    env = dict(os.environ)
    if cmd:
        prefix = shlex.split(cmd)
    else:
        prefix = [sys.executable, "-m", "hamn"]
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
    try:
        r = run([*prefix, "serve", "--help"], 60, env=env)
    except (BenchError, OSError) as e:
        return f"`{shlex.join([*prefix, 'serve', '--help'])}` failed: {e}"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        return f"`{shlex.join([*prefix, 'serve', '--help'])}` exited {r.returncode}: {tail[0]}"
    version = ""
    with contextlib.suppress(BenchError, OSError):
        v = run([*prefix, "--version"], 30, env=env)
        version = v.stdout.strip() if v.returncode == 0 else ""
    # hamn always authenticates: its first owner is made from these on first start.
    creds = ("bench-owner", secrets.token_urlsafe(24))
    env.update(HAMN_BOOTSTRAP_USERNAME=creds[0], HAMN_BOOTSTRAP_PASSWORD=creds[1])
    return TargetSpec(HAMN, prefix, version or "working tree", "hamn", env, creds)


def distribution_spec(name: str, binary: str) -> TargetSpec | str:
    path = Path(binary)
    if not (path.is_file() and os.access(path, os.X_OK)):
        hint = " (scripts/install-tools builds it)" if name == D3 else ""
        return f"{binary} not found{hint}"
    v = run([str(path), "--version"], 30)
    return TargetSpec(name, [str(path)], v.stdout.strip().split(" ", 1)[-1] or "?")


def distribution_config(data: Path, port: int) -> str:
    # Distribution's own sample config enables the in-memory blob descriptor cache; so do we.
    return f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
"""


def start_target(spec: TargetSpec, tdir: Path) -> tuple[Proc, int]:
    data = tdir / "data"
    data.mkdir(parents=True)
    port = free_port()
    if spec.kind == "hamn":
        argv = [
            *spec.argv_prefix,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ]
        proc = Proc(spec.name, argv, tdir / "server.log", env=spec.env)
    else:
        conf = tdir / "config.yml"
        conf.write_text(distribution_config(data, port))
        proc = Proc(spec.name, [*spec.argv_prefix, "serve", str(conf)], tdir / "server.log")
    wait_ready(proc, port)
    return proc, port


# ----------------------------------------------------------------------------- workloads


class TargetRun:
    """Runs every workload against one started target and collects its results."""

    def __init__(
        self,
        spec: TargetSpec,
        port: int,
        proc: Proc,
        work: Path,
        blob: Path,
        small_blob: Path,
        settings: Settings,
    ) -> None:
        self.spec, self.port, self.proc = spec, port, proc
        self.url = f"http://127.0.0.1:{port}"
        self.work, self.blob, self.small_blob, self.s = work, blob, small_blob, settings
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.rss = RssSampler(proc.pid)
        self.client_env = None
        if spec.creds:
            self.client_env = {
                **os.environ,
                "BENCH_USERNAME": spec.creds[0],
                "BENCH_PASSWORD": spec.creds[1],
            }

    def client(self, *args: str, timeout: float = 300) -> dict[str, Any]:
        """benchclient against this target, with its credentials if it has any."""
        return client(*args, timeout=timeout, env=self.client_env)

    def authorization(self, scope: str, seconds: float) -> dict[str, str]:
        """The header a client that holds a token for ``scope`` sends (none when the
        target has no authentication); the token must outlive ``seconds``."""
        if not self.spec.creds:
            return {}
        t = self.client("token", "-url", self.url, "-scope", scope, timeout=60)
        if t["usable_seconds"] < seconds:
            raise BenchError(
                f"a token for {scope} is reusable for {t['usable_seconds']:.0f} s, "
                f"the run needs {seconds:.0f} s"
            )
        return {"Authorization": f"Bearer {t['token']}"}

    def load_seconds(self) -> float:
        """How long one wrk or load step sends requests (warm-up included), with margin."""
        return self.s.warmup_seconds + self.s.load_seconds + 30

    def step(self, key: str, fn: Callable[[], Any]) -> Any:
        say(f"  {self.spec.name}: {key}")
        t0 = time.monotonic()
        cpu0 = tree_cpu(self.proc.pid)
        try:
            value = fn()
        except BenchError as e:
            msg = str(e)
            if not self.proc.alive():
                msg += (
                    f"\n(server exited with {self.proc.popen.returncode}; log tail:\n"
                    f"{self.proc.log_tail()})"
                )
            self.errors[key] = msg
            say(f"    ERROR: {msg}")
            return None
        except Exception as e:  # a bug here must not lose the other figures
            self.errors[key] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            say(f"    ERROR: {self.errors[key]}")
            return None
        wall = time.monotonic() - t0
        if isinstance(value, dict) and wall > 0:
            # Includes warm-up runs and setup inside the step: a rough figure.
            value["server_cores"] = (tree_cpu(self.proc.pid) - cpu0) / wall
        self.results[key] = value
        say(f"    {brief(value)}  ({wall:.1f} s)")
        return value

    def run_all(self) -> None:
        self.rss.start()
        try:
            time.sleep(0.5)
            self.rss.set_phase("small-push")
            self.step("small_push", self.small_push)
            self.rss.set_phase("big-push")
            pushed = self.step("blob_push", self.big_push)
            self.rss.set_phase("pull")
            if pushed:
                self.step("blob_pull", lambda: self.pull(pushed["last_digest"]))
            self.rss.set_phase("manifest")
            if self.step("manifest_setup", self.manifest_setup):
                self.step("manifest_get", self.manifest_get)
                self.step("manifest_head", lambda: self.manifest_load("HEAD"))
                self.step("manifest_get_benchclient", lambda: self.manifest_load("GET"))
            self.rss.set_phase("tags")
            if self.step("tags_setup", lambda: self.make_tags("bench/tags1k", self.s.tags_list)):
                self.step("tags_list", self.tags_list)
            if self.step("walk_setup", lambda: self.make_tags("bench/tags10k", self.s.walk_tags)):
                self.step("tags_walk", self.walk)
            self.rss.set_phase("small-layers")
            self.step("small_layers", lambda: self.small_layers("two"))
            self.step("small_layers_single_post", lambda: self.small_layers("single"))
        finally:
            self.rss.stop()
        self.memory()

    # -- 6. memory: a small push first, so the big push can be compared with it
    def small_push(self) -> dict[str, Any]:
        for i in range(3):
            for mode in ("mono", "chunked"):
                self.client(
                    "push",
                    "-url",
                    self.url,
                    "-repo",
                    "bench/smallpush",
                    "-file",
                    str(self.small_blob),
                    "-nonce",
                    f"{self.spec.name}-{mode}-{i}-",
                    "-mode",
                    mode,
                    "-chunk",
                    str(self.s.chunk_mib * MiB),
                    timeout=60,
                )
        return {"pushes": 6, "bytes": self.small_blob.stat().st_size}

    # -- 2. the big blob
    def big_push(self) -> dict[str, Any]:
        res: dict[str, list[float]] = {"mono": [], "chunked": []}
        last = ""
        for i in range(self.s.reps):
            for mode in ("mono", "chunked"):
                r = self.client(
                    "push",
                    "-url",
                    self.url,
                    "-repo",
                    "bench/big",
                    "-file",
                    str(self.blob),
                    "-nonce",
                    f"{self.spec.name}-{mode}-{i}-{time.time_ns()}-",
                    "-mode",
                    mode,
                    "-chunk",
                    str(self.s.chunk_mib * MiB),
                    "-timeout",
                    "300s",
                    timeout=330,
                )
                res[mode].append(r["mib_s"])
                last = r["digest"]
        return {
            "mono_mib_s": summary(res["mono"]),
            "chunked_mib_s": summary(res["chunked"]),
            "chunk_mib": self.s.chunk_mib,
            "blob_mib": self.s.blob_mib,
            "last_digest": last,
        }

    def pull(self, digest: str) -> dict[str, Any]:
        size = self.blob.stat().st_size
        auth = header_lines(self.authorization("repository:bench/big:pull", 60 * self.s.reps))
        speeds = [
            curl_get(f"{self.url}/v2/bench/big/blobs/{digest}", size, headers=auth)["mib_s"]
            for _ in range(self.s.reps)
        ]
        return {"mib_s": summary(speeds)}

    # -- 3. manifests
    @property
    def manifest_url(self) -> str:
        return f"{self.url}/v2/bench/manifest/manifests/v0"

    def manifest_get(self) -> dict[str, Any]:
        auth = self.authorization("repository:bench/manifest:pull", self.load_seconds())
        return wrk(self.manifest_url, "manifest_get.lua", self.s, auth.get("Authorization"))

    def manifest_load(self, method: str) -> dict[str, Any]:
        auth = self.authorization("repository:bench/manifest:pull", self.load_seconds())
        return load(self.manifest_url, method, self.s, [f"Accept: {ACCEPT}", *header_lines(auth)])

    def manifest_setup(self) -> dict[str, Any]:
        r = self.client(
            "tags", "-url", self.url, "-repo", "bench/manifest", "-n", "1", "-prefix", "v"
        )
        path = "/v2/bench/manifest/manifests/v0"
        headers = {"Accept": ACCEPT, **self.authorization("repository:bench/manifest:pull", 60)}
        for method in ("GET", "HEAD"):
            status, hdrs, body = http_request(self.port, method, path, headers)
            if status != 200:
                raise BenchError(f"{method} {path}: HTTP {status}: {body[:300]!r}")
            if hdrs.get("docker-content-digest") != r["manifest_digest"]:
                raise BenchError(
                    f"{method} {path}: Docker-Content-Digest "
                    f"{hdrs.get('docker-content-digest')!r}, want "
                    f"{r['manifest_digest']}"
                )
        return {"digest": r["manifest_digest"], "content_type": hdrs.get("content-type")}

    # -- 4. tags
    def make_tags(self, repo: str, n: int) -> dict[str, Any]:
        r = self.client(
            "tags",
            "-url",
            self.url,
            "-repo",
            repo,
            "-n",
            str(n),
            "-c",
            str(self.s.tag_workers),
            "-timeout",
            "600s",
            timeout=630,
        )
        return {"tags": r["tags"], "setup_seconds": r["seconds"]}

    def tags_list(self) -> dict[str, Any]:
        path = "/v2/bench/tags1k/tags/list"
        auth = self.authorization("repository:bench/tags1k:pull", self.load_seconds() + 60)
        status, _, body = http_request(
            self.port, "GET", path, {"Accept": "application/json", **auth}
        )
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        got = len(json.loads(body).get("tags") or [])
        if got != self.s.tags_list:
            raise BenchError(f"GET {path} returned {got} tags, want {self.s.tags_list}")
        res = wrk(self.url + path, "tags_list.lua", self.s, auth.get("Authorization"))
        res["response_bytes"] = len(body)
        return res

    def walk(self) -> dict[str, Any]:
        walks = [
            self.client(
                "walk",
                "-url",
                self.url,
                "-repo",
                "bench/tags10k",
                "-n",
                str(self.s.page),
                "-expect",
                str(self.s.walk_tags),
                "-timeout",
                "120s",
                timeout=150,
            )
            for _ in range(self.s.reps)
        ]
        for w in walks:
            if not w["complete"] or w["duplicates"]:
                raise BenchError(
                    f"incomplete walk: {w['tags']} distinct tags of "
                    f"{self.s.walk_tags}, {w['duplicates']} duplicates, "
                    f"stopped: {w.get('stopped_early') or '-'}"
                )
        best = min(walks, key=lambda w: w["seconds"])
        return {
            "seconds": summary([w["seconds"] for w in walks], higher_is_better=False),
            "ms": summary([w["seconds"] * 1000 for w in walks], higher_is_better=False),
            "pages": best["pages"],
            "pages_s": best["pages_s"],
            "tags_s": best["tags"] / best["seconds"],
            "honours_n": best["honours_n"],
            "sorted": best["sorted"],
            "max_page_tags": best["max_page_tags"],
            "tags": best["tags"],
        }

    # -- 5. small layers
    def small_layers(self, mode: str) -> dict[str, Any]:
        runs = []
        for _ in range(self.s.reps):
            r = self.client(
                "smallpush",
                "-url",
                self.url,
                "-repo",
                "bench/small",
                "-n",
                str(self.s.small_layers),
                "-c",
                str(self.s.small_workers),
                "-size",
                str(self.s.small_size),
                "-mode",
                mode,
                timeout=120,
            )
            if r["unsupported"]:
                return {
                    "unsupported": True,
                    "note": "server answered the single POST with 202 (an upload session)",
                }
            if r["failed"] or r["ok"] != self.s.small_layers:
                raise BenchError(
                    f"{r['ok']} of {self.s.small_layers} layers pushed: "
                    f"{'; '.join(r['errors'] or [])}"
                )
            runs.append(r)
        return {
            "per_s": summary([r["per_s"] for r in runs]),
            "client_cores": max(r["client_cores"] for r in runs),
            "layers": self.s.small_layers,
            "workers": self.s.small_workers,
            "size": self.s.small_size,
        }

    # -- 6. memory summary
    def memory(self) -> None:
        peaks = dict(self.rss.peaks)
        res: dict[str, Any] = {
            "peaks_by_phase_mib": {k: v / MiB for k, v in peaks.items()},
            "peak_mib": self.rss.peak() / MiB,
            "samples": self.rss.samples,
        }
        if "small-push" in peaks and "big-push" in peaks:
            growth = peaks["big-push"] - peaks["small-push"]
            res["small_push_mib"] = peaks["small-push"] / MiB
            res["big_push_mib"] = peaks["big-push"] / MiB
            res["growth_mib"] = growth / MiB
            res["flat"] = growth <= RSS_GROWTH_LIMIT
        res["idle_mib"] = peaks.get("start", 0) / MiB
        self.results["memory"] = res


def header_lines(headers: dict[str, str]) -> list[str]:
    """``Name: value`` lines, as curl -H and benchclient -H take them."""
    return [f"{name}: {value}" for name, value in headers.items()]


def brief(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    keys = (
        "rps",
        "p99_ms",
        "mib_s",
        "mono_mib_s",
        "chunked_mib_s",
        "per_s",
        "seconds",
        "pages_s",
        "tags",
        "setup_seconds",
        "unsupported",
    )
    parts = []
    for k in keys:
        if k in value:
            v = value[k]
            if isinstance(v, dict) and "best" in v:
                parts.append(f"{k}={fmt(v['best'])} (median {fmt(v['median'])})")
            else:
                parts.append(f"{k}={fmt(v)}")
    return ", ".join(parts) or json.dumps(value)[:200]


# ----------------------------------------------------------------------------- report


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        a = abs(v)
        if a >= 100:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def dig(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# (section, label, result path, higher_is_better)
ROWS: list[tuple[str, str, str, bool | None]] = [
    ("2. 256 MiB blob", "push monolithic MiB/s, best", "blob_push.mono_mib_s.best", True),
    ("2. 256 MiB blob", "push monolithic MiB/s, median", "blob_push.mono_mib_s.median", True),
    ("2. 256 MiB blob", "push chunked MiB/s, best", "blob_push.chunked_mib_s.best", True),
    ("2. 256 MiB blob", "push chunked MiB/s, median", "blob_push.chunked_mib_s.median", True),
    ("2. 256 MiB blob", "pull MiB/s, best", "blob_pull.mib_s.best", True),
    ("2. 256 MiB blob", "pull MiB/s, median", "blob_pull.mib_s.median", True),
    ("2. 256 MiB blob", "server cores used while pushing", "blob_push.server_cores", None),
    ("3. manifest by tag", "GET req/s (wrk)", "manifest_get.rps", True),
    ("3. manifest by tag", "GET p99 ms (wrk)", "manifest_get.p99_ms", False),
    ("3. manifest by tag", "HEAD req/s (benchclient)", "manifest_head.rps", True),
    ("3. manifest by tag", "HEAD p99 ms (benchclient)", "manifest_head.p99_ms", False),
    ("3. manifest by tag", "GET req/s (benchclient)", "manifest_get_benchclient.rps", True),
    ("3. manifest by tag", "GET p99 ms (benchclient)", "manifest_get_benchclient.p99_ms", False),
    ("3. manifest by tag", "server cores used, wrk GET", "manifest_get.server_cores", None),
    ("4. tags", "tags/list of 1,000: req/s", "tags_list.rps", True),
    ("4. tags", "tags/list of 1,000: p99 ms", "tags_list.p99_ms", False),
    ("4. tags", "walk n=100: full walk ms, best", "tags_walk.ms.best", False),
    ("4. tags", "walk n=100: pages", "tags_walk.pages", None),
    ("4. tags", "walk n=100: pages/s", "tags_walk.pages_s", True),
    ("4. tags", "walk n=100: tags/s", "tags_walk.tags_s", True),
    ("4. tags", "walk: server honours n", "tags_walk.honours_n", None),
    ("4. tags", "setup: tags created/s (not a goal)", "walk_setup.rate", None),
    ("5. small layers", "POST+PUT layers/s, best", "small_layers.per_s.best", True),
    ("5. small layers", "POST+PUT layers/s, median", "small_layers.per_s.median", True),
    ("5. small layers", "client cores used", "small_layers.client_cores", None),
    ("5. small layers", "server cores used (approx.)", "small_layers.server_cores", None),
    ("5. small layers", "single POST layers/s, best", "small_layers_single_post.per_s.best", True),
    ("6. memory (RSS of the process tree)", "idle MiB", "memory.idle_mib", False),
    (
        "6. memory (RSS of the process tree)",
        "peak during small pushes MiB",
        "memory.small_push_mib",
        False,
    ),
    (
        "6. memory (RSS of the process tree)",
        "peak during 256 MiB pushes MiB",
        "memory.big_push_mib",
        False,
    ),
    ("6. memory (RSS of the process tree)", "growth big - small MiB", "memory.growth_mib", False),
    ("6. memory (RSS of the process tree)", "flat (growth <= 32 MiB)", "memory.flat", None),
    (
        "6. memory (RSS of the process tree)",
        "peak over the whole run MiB",
        "memory.peak_mib",
        False,
    ),
]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def one(r: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([one(header), line, *(one(r) for r in rows)])


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def unsupported_cell(res: dict[str, Any], path: str) -> str | None:
    key = path.split(".")[0]
    if isinstance(res.get(key), dict) and res[key].get("unsupported"):
        return "n/a"
    if key in res.get("_errors", {}):
        return "ERR"
    return None


def report(doc: dict[str, Any]) -> str:
    out: list[str] = []
    lim = doc["limits"]
    targets = doc["targets"]
    cols = [t for t in TARGETS if t in targets]
    out.append("")
    out.append("1. Machine limits")
    lrows = [
        ["sha256 (hashlib, 1 core) MiB/s, best", fmt(dig(lim, "sha256_mib_s.best"))],
        ["nginx sendfile -> curl, 256 MiB, MiB/s, best", fmt(dig(lim, "nginx_curl_mib_s.best"))],
        ["nginx -> curl MiB/s, median", fmt(dig(lim, "nginx_curl_mib_s.median"))],
        ["wrk -> nginx small file: req/s (wrk ceiling)", fmt(dig(lim, "wrk_nginx_small_get.rps"))],
        [
            "benchclient HEAD -> nginx: req/s (its ceiling)",
            fmt(dig(lim, "load_nginx_small_head.rps")),
        ],
        [
            "benchclient push -> no-op sink MiB/s (ceiling)",
            fmt(dig(lim, "client_push_sink_mib_s.best")),
        ],
        [
            "benchclient small layers -> no-op sink /s (ceiling)",
            fmt(dig(lim, "client_smallpush_sink_per_s.best")),
        ],
    ]
    if lim:
        out.append(table(["limit", "value"], lrows))
    else:
        out.append("  (skipped: --skip-limits)")
    for key in ("nginx_error", "sink_error"):
        if key in lim:
            out.append(f"  {key}: {lim[key]}")

    header = ["", *cols, f"{SHORT[HAMN]}/{SHORT[D2]}", f"{SHORT[HAMN]}/{SHORT[D3]}"]
    sections: dict[str, list[list[str]]] = {}
    for section, label, path, higher in ROWS:
        cells = []
        for t in cols:
            res = {**targets[t]["results"], "_errors": targets[t]["errors"]}
            if path == "walk_setup.rate":
                ws = res.get("walk_setup")
                val = ws["tags"] / ws["setup_seconds"] if ws else None
            else:
                val = dig(res, path)
            cells.append(unsupported_cell(res, path) if val is None else fmt(val))
        h = targets.get(HAMN, {}).get("results", {})
        ratios = []
        for other in (D2, D3):
            o = targets.get(other, {}).get("results", {})
            if (
                path.startswith("tags_walk.")
                and h
                and dig(o, "tags_walk.honours_n") is False
                and higher is not None
            ):
                ratios.append("n/c")  # one page of every tag: not comparable
                continue
            r = None if higher is None else ratio(dig(h, path), dig(o, path))
            ratios.append(f"{r:.2f}" if r is not None else "-")
        arrow = {True: " (up)", False: " (down)", None: ""}[higher]
        sections.setdefault(section, []).append([label + arrow, *cells, *ratios])
    for section, rows in sections.items():
        out.append("")
        out.append(section)
        out.append(table(header, rows))
    out.append("")
    out.append(
        "(up) higher is better, (down) lower is better; ratios are hamn / Distribution "
        "of the figure as shown; n/c: not comparable (that server ignores ?n=)."
    )
    errs = [(t, k, v) for t in cols for k, v in targets[t]["errors"].items()]
    if errs:
        out.append("")
        out.append("Errors")
        for t, k, v in errs:
            out.append(f"  {t} / {k}: {v}")
    out.append("")
    out.append("Goals")
    out.append(
        table(
            ["goal", *cols],
            [[g["goal"], *[g["verdicts"].get(t, "-") for t in cols]] for g in doc["goals"]],
        )
    )
    notes = doc.get("notes") or []
    if notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in notes)
    return "\n".join(out)


def goals(doc: dict[str, Any]) -> list[dict[str, Any]]:
    lim = doc["limits"]
    targets = doc["targets"]
    sha = dig(lim, "sha256_mib_s.best")
    nginx = dig(lim, "nginx_curl_mib_s.best")
    out: list[dict[str, Any]] = []

    def verdict(v: float | None, need: float) -> str:
        if v is None:
            return "n/a"
        return f"{'PASS' if v >= need else 'BEHIND'} ({v:.2f}x)"

    for label, path, base in (
        ("push monolithic >= 0.8 x sha256 limit", "blob_push.mono_mib_s.best", sha),
        ("push chunked >= 0.8 x sha256 limit", "blob_push.chunked_mib_s.best", sha),
        ("pull >= 0.9 x nginx", "blob_pull.mib_s.best", nginx),
    ):
        need = 0.9 if label.startswith("pull") else 0.8
        verdicts = {
            t: verdict(ratio(dig(targets[t]["results"], path), base), need) for t in targets
        }
        out.append({"goal": label, "verdicts": verdicts, "need": need})
    h = targets.get(HAMN, {}).get("results")
    for label, path in (
        ("manifest GET req/s", "manifest_get.rps"),
        ("manifest HEAD req/s", "manifest_head.rps"),
        ("tags/list req/s", "tags_list.rps"),
        ("small-layer push layers/s", "small_layers.per_s.best"),
    ):
        for other, need in ((D2, 3.0), (D3, 1.0)):
            verdicts = {t: "(reference)" for t in targets if t != HAMN}
            if h is not None:
                o = targets.get(other, {}).get("results")
                verdicts[HAMN] = (
                    verdict(ratio(dig(h, path), dig(o, path)), need)
                    if o is not None
                    else f"n/a ({other} not run)"
                )
            out.append(
                {
                    "goal": f"{label} >= {need:g} x {SHORT[other]}",
                    "verdicts": verdicts,
                    "need": need,
                }
            )
    return out


# ----------------------------------------------------------------------------- main


_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def make_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"work-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
            say("bench: data directories removed")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated: hamn, distribution-2.8.2 (d2), distribution-3.x (d3); default: all",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short run (~2 min): 1 repetition, 3 s load runs, 2,000-tag walk",
    )
    p.add_argument("--reps", type=int, help="repetitions of blob, walk and small-layer runs")
    p.add_argument("--load-seconds", type=int, help="seconds per wrk/benchclient load run")
    p.add_argument("--blob-mib", type=int, help="size of the big blob (default 256)")
    p.add_argument("--walk-tags", type=int, help="tags in the paged walk (default 10,000)")
    p.add_argument(
        "--order",
        choices=("random", "given"),
        default="random",
        help="order of the targets (default random)",
    )
    p.add_argument("--seed", type=int, help="seed for the random order")
    p.add_argument("--skip-limits", action="store_true", help="do not measure machine limits")
    p.add_argument(
        "--hamn-cmd",
        help="command that runs hamn (default: python3 -m hamn with src/ on PYTHONPATH)",
    )
    p.add_argument(
        "--registry-v2", default="/usr/bin/docker-registry", help="Distribution 2.8.2 binary"
    )
    p.add_argument(
        "--registry-v3",
        default=str(ROOT / ".cache" / "bin" / "registry-v3"),
        help="Distribution 3.x binary",
    )
    p.add_argument(
        "--json",
        type=Path,
        help="where to write the JSON results (default bench/results/<timestamp>.json)",
    )
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    return p.parse_args(argv)


def client_notes(doc: dict[str, Any]) -> list[str]:
    """Compare what the clients can do (against nginx or a no-op sink) with the targets."""
    notes = []
    lim, results = doc["limits"], [e["results"] for e in doc["targets"].values()]
    for what, unit, ceiling_path, path in (
        (
            "small-layer push client",
            "layers/s",
            "client_smallpush_sink_per_s.best",
            "small_layers.per_s.best",
        ),
        ("wrk (GET)", "req/s", "wrk_nginx_small_get.rps", "manifest_get.rps"),
        ("benchclient load (HEAD)", "req/s", "load_nginx_small_head.rps", "manifest_head.rps"),
        (
            "big-blob push client",
            "MiB/s",
            "client_push_sink_mib_s.best",
            "blob_push.mono_mib_s.best",
        ),
    ):
        ceiling = dig(lim, ceiling_path)
        fastest = max((dig(r, path) or 0 for r in results), default=0)
        if not ceiling or not fastest:
            continue
        share = fastest / ceiling
        verdict = (
            "not the bottleneck"
            if share < 0.5
            else "NEAR ITS CEILING: the figure may be limited by the client"
        )
        notes.append(
            f"{what}: ceiling {ceiling:,.0f} {unit}, fastest target {fastest:,.0f} {unit} "
            f"({share:.0%} of it): {verdict}"
        )
    return notes


def finish(
    doc: dict[str, Any], notes: list[str], args: argparse.Namespace, started: dt.datetime
) -> None:
    doc["host"]["loadavg_end"] = loadavg()
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc["goals"] = goals(doc)
    for t, e in doc["targets"].items():
        if e["results"].get("tags_walk", {}).get("honours_n") is False:
            notes.append(f"{t} ignores ?n= on tags/list: the walk is one page of every tag")
        if e["results"].get("small_layers_single_post", {}).get("unsupported"):
            notes.append(f"{t} does not take a blob in a single POST ?digest= (answers 202)")
    notes.extend(client_notes(doc))
    loads = [doc["host"]["loadavg_start"][0], doc["host"]["loadavg_end"][0]]
    if max(loads) > (os.cpu_count() or 1):
        notes.append(
            f"machine busy: load average {loads[0]:.1f} at start, {loads[1]:.1f} at end on "
            f"{os.cpu_count()} cores; figures are noisy"
        )
    notes.append("every target shares the machine's cores with its load client")
    doc["notes"] = notes
    print(report(doc), flush=True)
    out = args.json or RESULTS / f"{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    say(f"bench: results written to {out}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = Settings.make(args)
    wanted = []
    for t in args.targets.split(","):
        t = t.strip().lower()
        if not t:
            continue
        if t not in ALIASES:
            raise SystemExit(f"bench: unknown target {t!r} (choose from {', '.join(TARGETS)})")
        if ALIASES[t] not in wanted:
            wanted.append(ALIASES[t])
    for tool in ("wrk", "curl", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is needed and not on PATH")

    started = dt.datetime.now(dt.UTC)
    notes: list[str] = []
    specs: list[TargetSpec] = []
    for name in wanted:
        spec: TargetSpec | str
        if name == HAMN:
            spec = hamn_spec(args.hamn_cmd)
        elif name == D2:
            spec = distribution_spec(name, args.registry_v2)
        else:
            spec = distribution_spec(name, args.registry_v3)
        if isinstance(spec, str):
            notes.append(f"{name} skipped: {spec}")
            say(f"bench: {name} skipped: {spec}")
        else:
            specs.append(spec)
    if args.order == "random":
        random.Random(args.seed).shuffle(specs)

    say("bench: building bench/client")
    build_client()
    doc: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_start": loadavg(),
        },
        "settings": asdict(settings),
        "order": [s.name for s in specs],
        "limits": {},
        "targets": {},
    }
    say(f"bench: targets in this order: {', '.join(s.name for s in specs) or '(none)'}")
    with workdir(args.keep) as work:
        blob = work / "blob.bin"
        small_blob = work / "small.bin"
        say(f"bench: making a {settings.blob_mib} MiB random blob")
        make_random_file(blob, settings.blob_mib * MiB)
        make_random_file(small_blob, settings.small_size)
        if not args.skip_limits:
            doc["limits"] = machine_limits(work, blob, settings)
        for spec in specs:
            tdir = work / spec.name
            tdir.mkdir()
            say(f"bench: starting {spec.name} ({spec.version})")
            entry: dict[str, Any] = {
                "version": spec.version,
                "auth": "bearer tokens (token flow)" if spec.creds else "none",
                "results": {},
                "errors": {},
                "loadavg_before": loadavg(),
            }
            t0 = time.monotonic()
            try:
                proc, port = start_target(spec, tdir)
            except BenchError as e:
                entry["errors"]["start"] = str(e)
                say(f"  ERROR: {e}")
                doc["targets"][spec.name] = entry
                continue
            try:
                tr = TargetRun(spec, port, proc, work, blob, small_blob, settings)
                tr.run_all()
                entry["results"], entry["errors"] = tr.results, tr.errors
                entry["server_pid"] = proc.pid
            finally:
                say(f"bench: stopping {spec.name} (pid {proc.pid})")
                proc.stop()
            entry["seconds"] = time.monotonic() - t0
            entry["loadavg_after"] = loadavg()
            doc["targets"][spec.name] = entry
        finish(doc, notes, args, started)
        if not args.keep:
            say("bench: removing the data directories (slow on this disk for many small files)")
    return 0


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        say("bench: interrupted")
        sys.exit(130)
    finally:
        stop_all()
