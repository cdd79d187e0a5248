"""Helpers for tests of several ``hamn serve`` processes on one deployment, and of
the faults of the services they share (issue 5 points 2 and 6).

* :func:`fresh_database` makes a database of its own for a test on the PostgreSQL
  server ``HAMN_TEST_POSTGRES_URL`` names (and drops it afterwards).
* :class:`PostgresServer` is a private PostgreSQL cluster a test may stop and
  restart (initdb and pg_ctl, as scripts/with-postgres does).
* :class:`FaultProxy` is a TCP proxy in the test process, put in front of the
  storage service (Azurite): it passes traffic through, or delays each response,
  resets connections, answers every request with an HTTP error, or cuts responses
  part-way, switched on and off while the servers run.
* :class:`Deployment` is what several servers share (database, storage, secret
  key, owner credentials); it starts servers on it and runs ``hamn`` commands
  (gc, fsck) against it.

Nothing here stands in for a part of hamn: the servers, the database and the
storage service are real; the proxy only breaks the network between them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from api_support import ALL_MANIFESTS, digest_of, expect_status, get_blob, referenced_blobs

POSTGRES_ENV = "HAMN_TEST_POSTGRES_URL"
AZURE_ENV = "HAMN_TEST_AZURE_CONNECTION_STRING"

#: These tests choose their own backends (PostgreSQL and Azurite), so of the runs
#: of the backend matrix (``HAMN_TEST_BACKEND``, tests/backend_support.py) they run
#: in this one only, or in a run that names none.
ONCE_IN_BACKEND = "postgresql+azure"
ONCE_IN_THE_MATRIX = pytest.mark.skipif(
    os.environ.get("HAMN_TEST_BACKEND", ONCE_IN_BACKEND) != ONCE_IN_BACKEND,
    reason=f"runs once in the backend matrix: in its {ONCE_IN_BACKEND} run",
)

#: The owner every server of a deployment bootstraps (they share one database).
OWNER = "hamn-cluster-owner"


# ------------------------------------------------------------------- databases


def postgres_url_or_skip() -> str:
    """``HAMN_TEST_POSTGRES_URL``, or skip the test saying why."""
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/with-postgres or scripts/with-services)")
    return url


def azure_or_skip() -> str:
    """``HAMN_TEST_AZURE_CONNECTION_STRING`` (an Azurite), or skip the test saying why."""
    conn = os.environ.get(AZURE_ENV, "")
    if not conn:
        pytest.skip(f"{AZURE_ENV} is not set (scripts/with-services starts Azurite)")
    return conn


def _libpq(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as a libpq one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``; its SQLAlchemy URL.

    Dropped afterwards (``WITH (FORCE)`` ends connections left by killed servers).
    """
    name = f"hamn_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster on a free port that a test may stop and restart.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    ``postgres`` user (and lives under /tmp, which that user can reach).
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            pytest.skip("PostgreSQL's server programs are not installed (/usr/lib/postgresql)")
        self.bindir = found[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="hamn-pgfault-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.dir / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        self.start()

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c max_connections=200",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` (ends sessions, checkpoints) or ``immediate`` (a crash)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop it (if running) and remove its files."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------- proxy


@dataclass
class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` (host, port) that breaks on demand.

    ``mode`` (set it at any time; it applies to each request as it starts):

    * ``"pass"``: bytes go through untouched;
    * ``"delay"``: each response is held back ``delay`` seconds before its first byte;
    * ``"reset"``: a request is answered by resetting the connection (TCP RST);
    * ``"error"``: a request is answered ``status`` (500, 503...) and the connection closed;
    * ``"cut"``: responses pass until ``cut_after`` bytes of them have gone through
      since ``passed`` was last set to 0; the response that goes past is cut there by
      a reset, and so is every later one.

    A request is told apart as the client sending bytes after a response began
    (HTTP/1.1 without pipelining, as storage SDKs speak it). ``faults`` counts
    requests that met a fault.
    """

    upstream: tuple[str, int]
    mode: str = "pass"
    delay: float = 1.5
    status: int = 503
    cut_after: int = 64 * 1024
    passed: int = 0
    faults: int = 0
    port: int = 0
    _listener: socket.socket | None = field(default=None, repr=False)
    _stopping: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> FaultProxy:
        """Listen on a free port and accept connections on a thread."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self._stopping = True
        if self._listener is not None:
            self._listener.close()

    def _count(self) -> None:
        with self._lock:
            self.faults += 1

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            _reset(client)
            return
        state = _Exchange(client, server)
        threading.Thread(target=self._responses, args=(state,), daemon=True).start()
        self._requests(state)

    def _requests(self, s: _Exchange) -> None:
        """Client to storage: each new request meets the fault of the moment."""
        while data := s.receive(s.client):
            if not s.in_request:
                s.in_request = True
                s.response_bytes = -1  # -1: the response has not begun
                mode = self.mode
                s.mode = mode
                if mode == "reset":
                    self._count()
                    s.close(reset=True)
                    return
                if mode == "error":
                    self._count()
                    self._answer_error(s)
                    return
            if not s.forward(s.server, data):
                return

    def _answer_error(self, s: _Exchange) -> None:
        # Shaped as Azure Storage answers (its SDK reads Code and Message).
        code = "ServerBusy" if self.status == 503 else "InternalError"
        body = (
            '<?xml version="1.0" encoding="utf-8"?><Error>'
            f"<Code>{code}</Code><Message>Injected by the test proxy.</Message></Error>"
        ).encode()
        head = (
            f"HTTP/1.1 {self.status} Injected Fault\r\nContent-Type: application/xml\r\n"
            f"x-ms-error-code: {code}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            s.client.sendall(head.encode() + body)
            s.client.shutdown(socket.SHUT_WR)
            # Take in what is left of the request so closing does not reset the
            # connection before the client has read the answer.
            s.client.settimeout(1.0)
            while s.client.recv(65536):
                pass
        s.close()

    def _responses(self, s: _Exchange) -> None:
        """Storage to client: delayed or cut as the request's mode says."""
        while data := s.receive(s.server):
            if s.response_bytes < 0:
                s.response_bytes = 0
                s.in_request = False
                if s.mode == "delay":
                    self._count()
                    time.sleep(self.delay)
            if s.mode == "cut":
                with self._lock:
                    allowed = max(self.cut_after - self.passed, 0)
                    self.passed += min(len(data), allowed)
                if allowed < len(data):
                    self._count()
                    with contextlib.suppress(OSError):
                        s.client.sendall(data[:allowed])
                    s.close(reset=True)
                    return
            s.response_bytes += len(data)
            if not s.forward(s.client, data):
                return


@dataclass
class _Exchange:
    """One proxied connection: both sockets and where its current request stands."""

    client: socket.socket
    server: socket.socket
    in_request: bool = False
    response_bytes: int = -1
    mode: str = "pass"
    closed: bool = False

    def receive(self, sock: socket.socket) -> bytes:
        """The next bytes from ``sock``; empty (and the exchange closed) at its end."""
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.close()
        return data

    def forward(self, sock: socket.socket, data: bytes) -> bool:
        """Send ``data`` on ``sock``; False (and the exchange reset) if it is gone."""
        try:
            sock.sendall(data)
        except OSError:
            self.close(reset=True)
            return False
        return True

    def close(self, *, reset: bool = False) -> None:
        """End both connections (the client's with a reset if ``reset``)."""
        if self.closed:
            return
        self.closed = True
        if reset:
            _reset(self.client)
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP reset, not an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        # Wakes a thread blocked reading it: the close takes effect (and the reset
        # goes out) only once no system call holds the socket.
        sock.shutdown(socket.SHUT_RD)
    sock.close()


def azure_through(connection_string: str, port: int) -> str:
    """``connection_string`` with its BlobEndpoint moved to 127.0.0.1:``port`` (a proxy)."""
    parts = []
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key == "BlobEndpoint":
            url = httpx.URL(value)
            value = str(url.copy_with(host="127.0.0.1", port=port))
        parts.append(f"{key}={value}" if part else part)
    return ";".join(parts)


def blob_endpoint(connection_string: str) -> tuple[str, int]:
    """The (host, port) of a connection string's BlobEndpoint."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key == "BlobEndpoint":
            url = httpx.URL(value)
            return url.host, url.port or 80
    raise ValueError("the connection string has no BlobEndpoint")


# ------------------------------------------------------------------ deployments


#: ``filesystem`` runs the scale-out tests on one filesystem root every server shares
#: (as on a network file system) instead of Azurite.
CLUSTER_STORAGE_ENV = "HAMN_TEST_CLUSTER_STORAGE"


def shared_storage(tmp_path: Path) -> dict[str, str]:
    """Settings of one storage for every server of a deployment: a container of its
    own on the Azurite of ``HAMN_TEST_AZURE_CONNECTION_STRING`` (skipped when unset),
    or a filesystem root they share when ``HAMN_TEST_CLUSTER_STORAGE=filesystem``."""
    if os.environ.get(CLUSTER_STORAGE_ENV) == "filesystem":
        root = tmp_path / "shared-storage"
        root.mkdir(exist_ok=True)
        return {"HAMN_STORAGE_DRIVER": "filesystem", "HAMN_STORAGE_ROOT": str(root)}
    return azure_storage(azure_or_skip())


def azure_storage(connection_string: str) -> dict[str, str]:
    """Settings of a container of its own on the Azure storage of ``connection_string``."""
    return {
        "HAMN_STORAGE_DRIVER": "azure",
        "HAMN_AZURE_CONNECTION_STRING": connection_string,
        "HAMN_AZURE_CONTAINER": f"t{uuid.uuid4().hex[:20]}",
    }


@dataclass
class Deployment:
    """What every server of one registry shares, and the servers started on it.

    ``hamn_conftest`` is tests/conftest.py (start_hamn, stop_hamn).
    """

    hamn_conftest: Any
    base: Path
    env: dict[str, str]
    servers: list[Any] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        hamn_conftest: Any,
        base: Path,
        database_url: str,
        storage: dict[str, str],
        **settings: str,
    ) -> Deployment:
        """A deployment on ``database_url`` and ``storage``, with one secret key and one
        owner for all; ``settings`` are more ``HAMN_*`` variables (name without prefix)."""
        env = {
            "HAMN_DATABASE_URL": database_url,
            "HAMN_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "HAMN_BOOTSTRAP_USERNAME": OWNER,
            "HAMN_BOOTSTRAP_PASSWORD": secrets.token_urlsafe(18),
            # Collections run when a test says so (hamn gc), not on a timer.
            "HAMN_GC_INTERVAL": "0",
            "HAMN_STORAGE_PREFIX": "",
            **storage,
            **{f"HAMN_{k.upper()}": v for k, v in settings.items()},
        }
        return cls(hamn_conftest, base, env)

    def start(self, name: str, *, workers: int = 1, **env: str) -> Any:
        """Start ``hamn serve`` on a data directory of its own (``base/name``)."""
        reg = self.hamn_conftest.start_hamn(
            self.base / name, "--workers", str(workers), env={**self.env, **env}
        )
        self.servers.append(reg)
        return reg

    def stop_all(self) -> None:
        """Stop every server started here (SIGTERM, then SIGKILL)."""
        for reg in self.servers:
            self.hamn_conftest.stop_hamn(reg)

    def hamn(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``hamn ARGS`` (gc, fsck) on this deployment from a data directory of its own."""
        data_dir = self.base / "cli"
        data_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "hamn", *args, "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )

    def logs(self) -> str:
        """Every server's output (for failure messages)."""
        return "\n".join(f"--- {reg.host}\n{reg.log()[-6000:]}" for reg in self.servers)

    def internal_errors(self) -> list[str]:
        """Lines of the servers' logs that tell of a request failing inside hamn (a
        503 while a service is away is a warning, not one of these)."""
        marks = ("request failed", "Application callable raised")
        return [
            line
            for reg in self.servers
            for line in reg.log().splitlines()
            if any(mark in line for mark in marks)
        ]


# ---------------------------------------------------------------------- checks


def usage(client: httpx.Client, registry: str = "local") -> int:
    """The registry's usage (``Size``, bytes) as the management API reports it."""
    r = expect_status(client.get(f"/api/registries/{registry}/usages"), 200)
    entry = next(u for u in r.json()["value"] if u["name"] == "Size")
    return int(entry["currentValue"])


def check_image(client: httpx.Client, repo: str, reference: str, manifest: bytes) -> None:
    """``reference`` serves exactly ``manifest``, and every blob it names has its digest."""
    r = expect_status(
        client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ALL_MANIFESTS}), 200
    )
    assert r.content == manifest, (repo, reference)
    for blob in referenced_blobs(manifest):
        assert digest_of(get_blob(client, repo, blob)) == blob, (repo, reference, blob)
