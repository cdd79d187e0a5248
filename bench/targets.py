"""The targets: what each one is, and how it is started and stopped.

Two groups:

* **classic**: one server on 127.0.0.1 with its own local data directory: hamn
  (SQLite, filesystem), Distribution 2.8.2 and 3.x (filesystem).
* **scaled**: the scale-out deployment of issue 5: hamn on PostgreSQL and object
  storage (Azurite, or SeaweedFS's S3) with 1 or 2 ``hamn serve`` processes, and
  Distribution 3.x on the same kind of storage, every one of them behind the same
  nginx front (round robin), so the proxy's cost is in every scaled figure.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from procs import BenchError, Proc, free_port, run, say, wait_ready
from services import (
    AZURE_ACCOUNT,
    AZURE_KEY,
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    Postgres,
    start_azurite,
    start_front,
    start_seaweed,
)

ROOT = Path(__file__).resolve().parent.parent

HAMN = "hamn"
D2 = "distribution-2.8.2"
D3 = "distribution-3.x"
CLASSIC = (HAMN, D2, D3)

HAMN_AZ1 = "hamn-pg-azure-1"
HAMN_AZ2 = "hamn-pg-azure-2"
D3_AZ = "d3-azure"
HAMN_FS1 = "hamn-pg-fs-1"
HAMN_FS2 = "hamn-pg-fs-2"
D3_FS = "d3-fs"
HAMN_S3_1 = "hamn-pg-s3-1"
HAMN_S3_2 = "hamn-pg-s3-2"
D3_S3 = "d3-s3"
#: name -> (kind, storage, processes)
SCALED: dict[str, tuple[str, str, int]] = {
    HAMN_AZ1: ("hamn", "azure", 1),
    HAMN_AZ2: ("hamn", "azure", 2),
    D3_AZ: ("distribution", "azure", 1),
    HAMN_S3_1: ("hamn", "s3", 1),
    HAMN_S3_2: ("hamn", "s3", 2),
    D3_S3: ("distribution", "s3", 1),
    # One local storage directory the processes share: the same machine only.
    HAMN_FS1: ("hamn", "filesystem", 1),
    HAMN_FS2: ("hamn", "filesystem", 2),
    D3_FS: ("distribution", "filesystem", 1),
}
#: The groups ``--targets`` takes by name; ``--scaled`` is ``scaled``.
GROUPS: dict[str, tuple[str, ...]] = {
    "classic": CLASSIC,
    "scaled": (HAMN_AZ1, HAMN_AZ2, D3_AZ),
    "scaled-s3": (HAMN_S3_1, HAMN_S3_2, D3_S3),
    "scaled-fs": (HAMN_FS1, HAMN_FS2, D3_FS),
}
GROUPS["all"] = (*CLASSIC, *GROUPS["scaled"])
#: The bucket or container each scaled target keeps its blobs in.
CONTAINER = "registry"


@dataclass
class TargetSpec:
    """One target: how to run it and with what."""

    name: str
    argv_prefix: list[str]
    version: str = ""
    kind: str = "distribution"
    env: dict[str, str] = field(default_factory=dict)
    #: (username, password) the clients sign in with; None: no authentication
    creds: tuple[str, str] | None = None
    #: "filesystem" (a local data directory), "azure" (Azurite) or "s3" (SeaweedFS)
    storage: str = "filesystem"
    #: server processes (hamn only; they share one database, storage and secret key)
    processes: int = 1
    #: ``hamn serve --workers`` (None: hamn's default)
    workers: int | None = None
    #: behind the nginx front (every scaled target is)
    front: bool = False

    @property
    def group(self) -> str:
        return "scaled" if self.name in SCALED else "classic"


@dataclass
class Started:
    """A running target: the port its clients use and every process it runs with."""

    port: int
    #: the registry's own processes (their CPU and memory are the server's figures)
    servers: list[Proc]
    #: processes started for this target alone (front, storage), stopped with it
    helpers: list[Proc] = field(default_factory=list)
    #: name -> PID of a process tree whose CPU each step reports beside the server's
    services: dict[str, int] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    #: how it was set up, for the JSON
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.servers]

    def alive(self) -> bool:
        return all(p.alive() for p in [*self.servers, *self.helpers])

    def exit_note(self) -> str:
        """What exited, with the tail of its log."""
        return "".join(
            f"\n({p.name} exited with {p.popen.returncode}; log tail:\n{p.log_tail()})"
            for p in [*self.servers, *self.helpers]
            if not p.alive()
        )

    def stop(self) -> None:
        """Stop the front first, then the servers, then the storage (each by its PID)."""
        front = [p for p in self.helpers if p.name == "nginx-front"]
        for proc in [*front, *reversed(self.servers)]:
            say(f"bench: stopping {proc.name} (pid {proc.pid})")
            proc.stop()
        for proc in self.helpers:
            if proc not in front:
                say(f"bench: stopping {proc.name} (pid {proc.pid})")
                proc.stop()
        for cleanup in self.cleanups:
            with contextlib.suppress(BenchError):
                cleanup()


# ----------------------------------------------------------------------------- specs


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
        hint = " (scripts/install-tools builds it)" if name in (D3, D3_AZ, D3_S3) else ""
        return f"{binary} not found{hint}"
    v = run([str(path), "--version"], 30)
    return TargetSpec(name, [str(path)], v.stdout.strip().split(" ", 1)[-1] or "?")


def scaled_spec(
    name: str, hamn: TargetSpec | str, d3: TargetSpec | str, workers: int | None
) -> TargetSpec | str:
    """The spec of scaled target ``name`` from the classic hamn or Distribution 3.x one
    (or why it cannot run)."""
    kind, storage, processes = SCALED[name]
    base = hamn if kind == "hamn" else d3
    if isinstance(base, str):
        return base
    if storage == "azure" and not _azurite_ready():
        return "Azurite is not installed (.cache/npm; scripts/install-tools installs it)"
    if storage == "s3" and not _seaweed_ready():
        return "SeaweedFS is not installed (.cache/bin/weed; scripts/install-tools installs it)"
    return replace(
        base,
        name=name,
        env=dict(base.env),
        storage=storage,
        processes=processes,
        workers=workers if kind == "hamn" else None,
        front=True,
    )


def _azurite_ready() -> bool:
    from services import AZURITE

    return AZURITE.exists()


def _seaweed_ready() -> bool:
    from services import WEED

    return WEED.exists()


# ----------------------------------------------------------------------------- starting


class SharedServices:
    """What every scaled target of one run shares: the PostgreSQL server (started on
    first use, or reused from HAMN_TEST_POSTGRES_URL), a fresh database per target."""

    def __init__(self) -> None:
        self.postgres: Postgres | None = None

    def database(self, target: str) -> tuple[Postgres, str, str]:
        """(server, database name, SQLAlchemy URL) of a new database for ``target``."""
        if self.postgres is None:
            url = os.environ.get("HAMN_TEST_POSTGRES_URL", "")
            self.postgres = Postgres.reuse(url) if url else Postgres.start()
            say(f"bench: PostgreSQL {self.postgres.origin}")
        name = "bench_" + re.sub(r"\W", "_", target) + "_" + secrets.token_hex(4)
        return self.postgres, name, self.postgres.create_database(name)

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def start_target(spec: TargetSpec, tdir: Path, shared: SharedServices) -> Started:
    """Start ``spec`` with a fresh data directory (and fresh storage and database)."""
    started = Started(0, [])
    try:
        _start(spec, tdir, shared, started)
    except BaseException:
        started.stop()
        raise
    return started


def _start(spec: TargetSpec, tdir: Path, shared: SharedServices, started: Started) -> None:
    storage = _start_storage(spec, tdir, started)
    if spec.kind == "hamn":
        env = dict(spec.env)
        if spec.group == "scaled":
            pg, name, url = shared.database(spec.name)
            started.cleanups.append(lambda: pg.drop_database(name))
            if pg.pid is not None:
                started.services["postgres"] = pg.pid
            started.setup["database"] = f"PostgreSQL ({pg.origin}), database {name}"
            # Servers of one deployment share the database, the storage and the key
            # that seals the signing keys (a server with another key refuses to start).
            env.update(
                HAMN_DATABASE_URL=url,
                HAMN_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
                **storage,
            )
        for i in range(spec.processes):
            data = tdir / (f"data{i + 1}" if spec.processes > 1 else "data")
            data.mkdir(parents=True)
            port = free_port()
            argv = [*spec.argv_prefix, "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--data-dir", str(data)]  # fmt: skip
            if spec.workers is not None:
                argv += ["--workers", str(spec.workers)]
            proc = Proc(spec.name + (f"#{i + 1}" if spec.processes > 1 else ""), argv,
                        tdir / f"server{i + 1}.log", env=env)  # fmt: skip
            started.servers.append(proc)
            # One at a time: the first applies the database's migrations.
            wait_ready(proc, port, timeout=60)
            started.setup.setdefault("server_ports", []).append(port)
    else:
        data = tdir / "data"
        data.mkdir(parents=True)
        started.setup.setdefault("storage_service", "a local directory")
        port = free_port()
        conf = tdir / "config.yml"
        conf.write_text(distribution_config(data, port, spec.storage, storage))
        proc = Proc(spec.name, [*spec.argv_prefix, "serve", str(conf)], tdir / "server.log")
        started.servers.append(proc)
        wait_ready(proc, port, timeout=60)
        started.setup["server_ports"] = [port]
    ports: list[int] = started.setup["server_ports"]
    started.port = ports[0]
    if spec.front:
        front, port = start_front(tdir, ports)
        started.helpers.insert(0, front)
        started.services["nginx"] = front.pid
        started.port = port
        wait_ready(front, port)
    started.setup.update(
        storage=spec.storage,
        processes=spec.processes,
        workers=spec.workers,
        front="nginx round robin" if spec.front else "none",
    )


def _start_storage(spec: TargetSpec, tdir: Path, started: Started) -> dict[str, str]:
    """Start the target's own storage service; the settings that reach it (HAMN_*
    variables for hamn, Distribution's driver parameters for Distribution)."""
    if spec.storage in ("azure", "s3"):
        service = start_azurite(tdir) if spec.storage == "azure" else start_seaweed(tdir)
        started.helpers.append(service.proc)
        started.cleanups.append(service.cleanup)
        started.services[service.proc.name] = service.proc.pid
        started.setup["storage_service"] = service.describe()
        if spec.kind == "hamn":
            return service.hamn_env(CONTAINER)
        return service.distribution_params(CONTAINER)
    if spec.group == "scaled" and spec.kind == "hamn":
        root = tdir / "storage"
        root.mkdir()
        started.setup["storage_service"] = "a local directory the processes share"
        return {"HAMN_STORAGE_DRIVER": "filesystem", "HAMN_STORAGE_ROOT": str(root)}
    return {}


def distribution_config(
    data: Path, port: int, storage: str = "filesystem", params: dict[str, str] | None = None
) -> str:
    """Distribution's config: the storage driver, deletes on, error-level log, no access log."""
    params = params or {}
    if storage == "azure":
        # Shared Key on Azurite's path-style endpoint. Blob GETs are served by the
        # registry itself, as hamn serves them by default, not redirected to storage.
        driver = f"""  azure:
    accountname: {AZURE_ACCOUNT}
    accountkey: "{AZURE_KEY}"
    container: {CONTAINER}
    serviceurl: {params["serviceurl"]}
    credentials:
      type: shared_key
  redirect:
    disable: true
"""
    elif storage == "s3":
        driver = f"""  s3:
    accesskey: {S3_ACCESS_KEY}
    secretkey: {S3_SECRET_KEY}
    region: {S3_REGION}
    regionendpoint: {params["regionendpoint"]}
    bucket: {CONTAINER}
    forcepathstyle: true
    secure: false
    v4auth: true
  redirect:
    disable: true
"""
    else:
        driver = f"""  filesystem:
    rootdirectory: {data}
"""
    # Distribution's own sample config enables the in-memory blob descriptor cache; so do we.
    return f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
{driver}  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
"""
