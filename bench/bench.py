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
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from procs import (
    BenchError,
    Proc,
    RssSampler,
    free_port,
    http_request,
    loadavg,
    machine_cpu,
    run,
    say,
    stop_all,
    tree_cpu,
    trees_cpu,
    wait_ready,
)
from scaled_report import scaled_report
from services import nginx_config
from tables import ROWS, cell, dig, fmt, ratio, table
from targets import (
    CLASSIC,
    D2,
    D3,
    GROUPS,
    HAMN,
    SCALED,
    SharedServices,
    Started,
    TargetSpec,
    distribution_spec,
    hamn_spec,
    scaled_spec,
    start_target,
)

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

TARGETS = CLASSIC
ALIASES = {
    **{name: name for name in SCALED},
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
    url: str,
    script: str,
    settings: Settings,
    authorization: str | None = None,
    *,
    allow_none: bool = False,
) -> dict[str, Any]:
    """Run wrk (after a warm-up run) and return req/s and latency percentiles in ms.

    ``authorization`` is sent as the Authorization header (the scripts read it from
    BENCH_AUTHORIZATION). ``allow_none``: a run in which no request was answered is a
    figure (0 req/s), not an error.
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
    errors = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    res["socket_errors"] = sum(errors[:3])
    # Requests still unanswered after --timeout: a slow server, not a broken one. The
    # rate counts the answered ones; the report says how many timed out.
    res["timeouts"] = errors[3]
    if res["requests"] == 0 and not (allow_none and r.returncode == 0):
        raise BenchError(f"wrk completed no request:\n{out.strip()}")
    if res["requests"] == 0:  # wrk prints zero latencies when nothing was answered
        for pct in (50, 75, 90, 99):
            res.pop(f"p{pct}_ms", None)
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
    conf = nginx_config(
        base,
        f"""    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location / {{ }}
    }}
""",
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


# ----------------------------------------------------------------------------- workloads


class TargetRun:
    """Runs every workload against one started target and collects its results."""

    def __init__(
        self,
        spec: TargetSpec,
        started: Started,
        work: Path,
        blob: Path,
        small_blob: Path,
        settings: Settings,
    ) -> None:
        self.spec, self.started, self.port = spec, started, started.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.work, self.blob, self.small_blob, self.s = work, blob, small_blob, settings
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.rss = RssSampler(started.pids)
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
        cpu0 = trees_cpu(self.started.pids)
        machine0 = machine_cpu()
        services = self.started.services
        service_cpu0 = {name: tree_cpu(pid, reaped=True) for name, pid in services.items()}
        try:
            value = fn()
        except BenchError as e:
            msg = str(e)
            if not self.started.alive():
                msg += self.started.exit_note()
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
            value["server_cores"] = (trees_cpu(self.started.pids) - cpu0) / wall
            # The whole machine: when it is near its core count, a target cannot go faster.
            value["machine_cores"] = (machine_cpu() - machine0) / wall
            if services:
                # What the front, the storage service and the database used meanwhile.
                value["service_cores"] = {
                    name: (tree_cpu(pid, reaped=True) - service_cpu0[name]) / wall
                    for name, pid in services.items()
                }
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
                if self.spec.group != "scaled":  # a cross-check of the HEAD client's cost
                    self.step("manifest_get_benchclient", lambda: self.manifest_load("GET"))
            self.rss.set_phase("tags")
            if self.spec.group == "scaled":
                self.scaled_tail()
            else:
                self.classic_tail()
        finally:
            self.rss.stop()
        self.memory()

    def classic_tail(self) -> None:
        """Tags (a list of 1,000, then a walk of ``walk_tags``) and small layers."""
        if self.step("tags_setup", lambda: self.make_tags("bench/tags1k", self.s.tags_list)):
            self.step("tags_list", self.tags_list)
        if self.step("walk_setup", lambda: self.make_tags("bench/tags10k", self.s.walk_tags)):
            self.step("tags_walk", lambda: self.walk("bench/tags10k", self.s.walk_tags))
        self.rss.set_phase("small-layers")
        self.step("small_layers", lambda: self.small_layers("two"))
        self.step("small_layers_single_post", lambda: self.small_layers("single"))

    def scaled_tail(self) -> None:
        """Tags and small layers for the scaled group, in an order that suits servers
        on an emulated object store.

        Small layers go first: Azurite's in-memory index slows as blobs accumulate,
        and Distribution keeps several blobs per tag, so small layers measured after
        1,000 tags ran at a quarter of their rate on an emptier store. The walk goes
        through the tags list's 1,000 tags (making another 2,000-10,000 tags there
        takes minutes), and the tags/list load runs last: on Distribution each of its
        64 concurrent requests lists the store, and the server works through that
        backlog for seconds after wrk has stopped, which would slow whatever ran next.
        """
        self.rss.set_phase("small-layers")
        self.step("small_layers", lambda: self.small_layers("two"))
        self.step("small_layers_single_post", lambda: self.small_layers("single"))
        self.rss.set_phase("tags")
        if self.step("tags_setup", lambda: self.make_tags("bench/tags1k", self.s.tags_list)):
            self.step("tags_walk", lambda: self.walk("bench/tags1k", self.s.tags_list))
            self.step("tags_list", self.tags_list)

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
        # A minute: Distribution on an emulated object store lists tags slowly.
        t0 = time.monotonic()
        status, _, body = http_request(
            self.port, "GET", path, {"Accept": "application/json", **auth}, timeout=60
        )
        alone_ms = (time.monotonic() - t0) * 1000
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        got = len(json.loads(body).get("tags") or [])
        if got != self.s.tags_list:
            raise BenchError(f"GET {path} returned {got} tags, want {self.s.tags_list}")
        res = wrk(
            self.url + path,
            "tags_list.lua",
            self.s,
            auth.get("Authorization"),
            allow_none=self.spec.group == "scaled",
        )
        res["response_bytes"] = len(body)
        res["alone_ms"] = alone_ms
        return res

    def walk(self, repo: str, tags: int) -> dict[str, Any]:
        walks = [
            self.client(
                "walk",
                "-url",
                self.url,
                "-repo",
                repo,
                "-n",
                str(self.s.page),
                "-expect",
                str(tags),
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
                    f"{tags}, {w['duplicates']} duplicates, "
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

    if cols:
        out.extend(classic_tables(doc, cols))
    scaled = scaled_report(doc)
    if scaled:
        out.append("")
        out.extend(scaled)
    notes = doc.get("notes") or []
    if notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in notes)
    return "\n".join(out)


def classic_tables(doc: dict[str, Any], cols: list[str]) -> list[str]:
    """Sections 2-6 and the goals, for the classic targets that ran."""
    targets = doc["targets"]
    out: list[str] = []
    header = ["", *cols, f"{SHORT[HAMN]}/{SHORT[D2]}", f"{SHORT[HAMN]}/{SHORT[D3]}"]
    sections: dict[str, list[list[str]]] = {}
    for section, label, path, higher in ROWS:
        cells = [cell(targets[t], path) for t in cols]
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
    return out


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
        help="comma-separated targets or groups: hamn, distribution-2.8.2 (d2), "
        f"distribution-3.x (d3), {', '.join(SCALED)}; groups: "
        + "; ".join(f"{g} = {','.join(names)}" for g, names in GROUPS.items())
        + ". Default: classic",
    )
    p.add_argument(
        "--scaled",
        action="store_true",
        help="run the scaled group only (same as --targets scaled): hamn on PostgreSQL and "
        "Azurite with 1 and 2 processes, and Distribution 3.x on Azurite, all behind nginx",
    )
    p.add_argument(
        "--scaled-workers",
        type=int,
        default=1,
        help="`hamn serve --workers` of each process of the scaled hamn targets (default 1: "
        "one process is one worker, so 1 -> 2 processes is 1 -> 2 workers)",
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
        for key, value in e["results"].items():
            if isinstance(value, dict) and value.get("requests") == 0 and "rps" in value:
                alone = value.get("alone_ms")
                notes.append(
                    f"{t} / {key}: no request was answered within the {value['seconds']} s "
                    f"run of {value['connections']} connections"
                    + (f" (one request alone took {alone:,.0f} ms)" if alone else "")
                )
            if isinstance(value, dict) and value.get("timeouts"):
                notes.append(
                    f"{t} / {key}: {value['timeouts']} of {value['requests']} requests were "
                    "unanswered after wrk's 10 s timeout (the rate counts answered ones)"
                )
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
    wanted = wanted_targets(args)
    for tool in ("wrk", "curl", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is needed and not on PATH")

    started = dt.datetime.now(dt.UTC)
    notes: list[str] = []
    specs: list[TargetSpec] = []
    hamn = hamn_spec(args.hamn_cmd) if {HAMN, *SCALED} & set(wanted) else "not wanted"
    d3 = distribution_spec(D3, args.registry_v3) if {D3, *SCALED} & set(wanted) else "-"
    for name in wanted:
        spec: TargetSpec | str
        if name == HAMN:
            spec = hamn
        elif name == D2:
            spec = distribution_spec(name, args.registry_v2)
        elif name == D3:
            spec = d3
        else:
            spec = scaled_spec(name, hamn, d3, args.scaled_workers)
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
    shared = SharedServices()
    with workdir(args.keep) as work, contextlib.ExitStack() as stack:
        stack.callback(shared.stop)
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
                "group": spec.group,
                "auth": "bearer tokens (token flow)" if spec.creds else "none",
                "results": {},
                "errors": {},
                "loadavg_before": loadavg(),
            }
            if spec.group == "scaled":
                entry["setup"] = {
                    "storage": spec.storage,
                    "processes": spec.processes,
                    "workers": spec.workers,
                }
            t0 = time.monotonic()
            try:
                started_target = start_target(spec, tdir, shared)
            except BenchError as e:
                entry["errors"]["start"] = str(e)
                say(f"  ERROR: {e}")
                doc["targets"][spec.name] = entry
                continue
            entry["setup"] = {**entry.get("setup", {}), **started_target.setup}
            try:
                tr = TargetRun(spec, started_target, work, blob, small_blob, settings)
                tr.run_all()
                entry["results"], entry["errors"] = tr.results, tr.errors
                entry["server_pids"] = started_target.pids
            finally:
                started_target.stop()
            entry["seconds"] = time.monotonic() - t0
            entry["loadavg_after"] = loadavg()
            doc["targets"][spec.name] = entry
        if shared.postgres is not None:
            doc["scaled"] = {
                "postgres": shared.postgres.origin,
                "postgres_settings": "PostgreSQL defaults (fsync and synchronous_commit on), "
                "max_connections=200"
                if shared.postgres.proc
                else "as HAMN_TEST_POSTGRES_URL's server runs",
                "hamn_workers_per_process": args.scaled_workers,
            }
        finish(doc, notes, args, started)
        if not args.keep:
            say("bench: removing the data directories (slow on this disk for many small files)")
    return 0


def wanted_targets(args: argparse.Namespace) -> list[str]:
    """The target names ``--targets`` / ``--scaled`` ask for, groups expanded, in order."""
    given = args.targets or ("scaled" if args.scaled else "classic")
    if args.scaled and args.targets:
        raise SystemExit("bench: --scaled is --targets scaled; give one of them")
    wanted: list[str] = []
    for t in given.split(","):
        t = t.strip().lower()
        if not t:
            continue
        if t in GROUPS:
            names = list(GROUPS[t])
        elif t in ALIASES:
            names = [ALIASES[t]]
        else:
            raise SystemExit(
                f"bench: unknown target {t!r} (choose from {', '.join([*CLASSIC, *SCALED])}, "
                f"or a group: {', '.join(GROUPS)})"
            )
        wanted.extend(n for n in names if n not in wanted)
    return wanted


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
