"""The services the scaled targets run with: PostgreSQL, Azurite, SeaweedFS's S3 and an
nginx front. Each listens on a free port of 127.0.0.1 and is stopped by its PID.

Containers and buckets are made with requests signed here (Azure Shared Key, AWS
Signature V4) so the benchmark keeps to the standard library.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from procs import BenchError, Proc, free_port, free_ports, run

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: scripts/install-tools links Azurite here (older trees had it only under .cache/npm).
AZURITE = next(
    (
        p
        for p in (
            ROOT / ".cache" / "bin" / "azurite-blob",
            ROOT / ".cache" / "npm" / "node_modules" / ".bin" / "azurite-blob",
        )
        if p.exists()
    ),
    ROOT / ".cache" / "bin" / "azurite-blob",
)
WEED = ROOT / ".cache" / "bin" / "weed"
#: Azurite's well-known development account (public, in Azurite's documentation).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: The access key pair the SeaweedFS S3 gateway is configured with (a throwaway one).
S3_ACCESS_KEY = "hamnbench"
S3_SECRET_KEY = "hamnbench-secret"
S3_REGION = "us-east-1"


def wait_tcp(proc: Proc, port: int, timeout: float = 60) -> None:
    """Wait until ``port`` accepts connections (or ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{proc.name} did not listen on {port} within {timeout:.0f} s")


def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """The PostgreSQL server every scaled hamn target keeps its metadata in; each
    target gets a database of its own on it.

    Either a throwaway cluster this run makes (initdb, then ``postgres`` in the
    foreground so it is one process with a PID this run owns; as root it runs as the
    ``postgres`` user, since PostgreSQL refuses root), or the server
    ``HAMN_TEST_POSTGRES_URL`` names (scripts/with-postgres), reused as it is.
    """

    def __init__(self, url: str, psql: str, proc: Proc | None, tmp: Path | None) -> None:
        #: SQLAlchemy URL of the server's ``postgres`` database.
        self.url = url
        self.psql = psql
        self.proc = proc
        self.tmp = tmp

    @property
    def pid(self) -> int | None:
        """The postmaster's PID when this run started it (its backends are its children)."""
        return self.proc.pid if self.proc else None

    @property
    def origin(self) -> str:
        return "started by the bench" if self.proc else "reused from HAMN_TEST_POSTGRES_URL"

    @classmethod
    def reuse(cls, url: str) -> Postgres:
        return cls(url, _psql(), None, None)

    @classmethod
    def start(cls) -> Postgres:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if not found:
            raise BenchError("PostgreSQL's server programs are not in /usr/lib/postgresql")
        bindir = found[-1].parent
        user = "postgres" if os.geteuid() == 0 else None
        # Under /tmp: the postgres user cannot reach a root-owned work tree.
        tmp = Path(tempfile.mkdtemp(prefix="hamn-bench-pg-"))
        if user:
            shutil.chown(tmp, user, user)
        data = tmp / "data"
        r = run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8"],
            120,
            user=user,
        )  # fmt: skip
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BenchError(f"initdb failed: {r.stderr.strip()}")
        port = free_port()
        # PostgreSQL's defaults (fsync and synchronous commit on), with room for the
        # connection pools of several servers.
        argv = [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                "-k", str(tmp), "-c", "max_connections=200"]  # fmt: skip
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients to leave).
        proc = Proc("postgres", argv, tmp / "server.log", user=user, stop_signal=signal.SIGINT)
        pg = cls(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", str(bindir / "psql"),
                 proc, tmp)  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            if not proc.alive():
                pg.stop()
                raise BenchError(f"postgres exited:\n{proc.log_tail()}")
            if pg.sql("SELECT 1", check=False):
                return pg
            if time.monotonic() > deadline:
                pg.stop()
                raise BenchError(f"postgres did not answer within 60 s:\n{proc.log_tail()}")
            time.sleep(0.2)

    def _libpq(self, database: str = "") -> str:
        base = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        return base if not database else base.rpartition("/")[0] + "/" + database

    def sql(self, statement: str, *, check: bool = True) -> bool:
        r = run([self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self._libpq(),
                 "-c", statement], 60)  # fmt: skip
        if r.returncode != 0 and check:
            raise BenchError(f"psql {statement!r}: {r.stderr.strip()}")
        return r.returncode == 0

    def create_database(self, name: str) -> str:
        """Make database ``name``; its SQLAlchemy URL."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url.rpartition("/")[0] + "/" + name

    def drop_database(self, name: str) -> None:
        # FORCE ends connections a killed server may have left.
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _psql() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    path = str(found[-1]) if found else shutil.which("psql")
    if not path:
        raise BenchError("psql is needed to make a database per target")
    return path


# ----------------------------------------------------------------------------- Azurite


@dataclass
class Azurite:
    """An Azurite blob service (a fresh one per target) and its account."""

    proc: Proc
    port: int
    in_memory: bool

    def cleanup(self) -> None:
        """Nothing to remove: its data goes with the process or the target's directory."""

    def describe(self) -> str:
        where = "in memory" if self.in_memory else "on disk"
        return f"Azurite (blobs {where}) on port {self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};"
            f"AccountKey={AZURE_KEY};BlobEndpoint={self.endpoint};"
        )

    def hamn_env(self, container: str) -> dict[str, str]:
        """The settings that point hamn at ``container`` (hamn makes it on first use)."""
        return {
            "HAMN_STORAGE_DRIVER": "azure",
            "HAMN_AZURE_CONNECTION_STRING": self.connection_string,
            "HAMN_AZURE_CONTAINER": container,
        }

    def distribution_params(self, container: str) -> dict[str, str]:
        """Make ``container`` (Distribution's azure driver expects it) and return the
        parameters its config needs."""
        self.create_container(container)
        return {"serviceurl": self.endpoint}

    def create_container(self, name: str) -> None:
        """Make container ``name`` (Distribution's azure driver expects it to exist)."""
        path = f"/{AZURE_ACCOUNT}/{name}"
        headers = {
            "x-ms-date": dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "x-ms-version": "2021-08-06",
            "Content-Length": "0",
        }
        canonical_headers = "".join(
            f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-")
        )
        # Shared Key: the verb, eleven standard headers (all empty here; a zero
        # Content-Length is signed as empty), the x-ms- headers, then the resource, in
        # which a path-style emulator URL names the account twice.
        to_sign = (
            "PUT\n" + "\n" * 11 + canonical_headers + f"/{AZURE_ACCOUNT}{path}\nrestype:container"
        )
        mac = hmac.new(base64.b64decode(AZURE_KEY), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (
            f"SharedKey {AZURE_ACCOUNT}:{base64.b64encode(mac.digest()).decode()}"
        )
        status, body = _request(self.port, "PUT", f"{path}?restype=container", headers)
        if status not in (201, 409):
            raise BenchError(f"Azurite: creating container {name}: HTTP {status} {body[:300]!r}")


def start_azurite(tdir: Path) -> Azurite:
    """A fresh Azurite for one target: in memory when the machine has room, else on disk."""
    if not AZURITE.exists():
        raise BenchError(f"{AZURITE} not found (scripts/install-tools installs Azurite)")
    port = free_port()
    home = tdir / "azurite"
    home.mkdir()
    argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
            "--disableTelemetry", "--silent", "--skipApiVersionCheck", "--loose"]  # fmt: skip
    available = _mem_available_mib()
    if available >= 8192:
        # A full run stores about 2 GiB per target; leave the rest to everyone else.
        argv += ["--inMemoryPersistence", "--extentMemoryLimit", str(min(available // 3, 6144))]
    else:
        argv += ["--location", str(home)]
    proc = Proc("azurite", argv, tdir / "azurite.log", cwd=home)
    wait_tcp(proc, port)
    return Azurite(proc, port, "--inMemoryPersistence" in argv)


def _mem_available_mib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


# ----------------------------------------------------------------------------- SeaweedFS (S3)


@dataclass
class SeaweedS3:
    """A SeaweedFS server with its S3 gateway (a fresh one per target)."""

    proc: Proc
    port: int
    #: ports whose gRPC servers also listen on /tmp/seaweedfs-*-<port>.sock
    socket_ports: list[int]

    def describe(self) -> str:
        return f"SeaweedFS S3 (weed server, data on disk) on port {self.port}"

    def cleanup(self) -> None:
        """Remove the Unix sockets weed leaves in /tmp (once it has stopped)."""
        for port in self.socket_ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hamn_env(self, bucket: str) -> dict[str, str]:
        """The settings that point hamn at ``bucket`` (hamn makes it on first use)."""
        return {
            "HAMN_STORAGE_DRIVER": "s3",
            "HAMN_S3_ENDPOINT_URL": self.endpoint,
            "HAMN_S3_BUCKET": bucket,
            "HAMN_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "HAMN_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "HAMN_S3_REGION": S3_REGION,
        }

    def distribution_params(self, bucket: str) -> dict[str, str]:
        """Make ``bucket`` (Distribution's s3 driver expects it) and return the
        parameters its config needs."""
        self.create_bucket(bucket)
        return {"regionendpoint": self.endpoint}

    def create_bucket(self, name: str) -> None:
        """Make bucket ``name`` (Distribution's s3 driver expects it to exist)."""
        headers = sigv4_headers("PUT", f"/{name}", f"127.0.0.1:{self.port}")
        status, body = _request(self.port, "PUT", f"/{name}", headers)
        if status not in (200, 409):
            raise BenchError(f"SeaweedFS: creating bucket {name}: HTTP {status} {body[:300]!r}")


def sigv4_headers(method: str, path: str, host: str) -> dict[str, str]:
    """Headers of an AWS Signature V4 request with an empty body, for the bench's key."""
    now = dt.datetime.now(dt.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, urllib.parse.quote(path), "",
         *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, empty]
    )  # fmt: skip
    scope = f"{day}/{S3_REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + S3_SECRET_KEY).encode()
    for part in (day, S3_REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={S3_ACCESS_KEY}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    return headers


def start_seaweed(tdir: Path) -> SeaweedS3:
    """A fresh SeaweedFS for one target: master, volume server, filer and S3 gateway in
    one ``weed server``, its data under ``tdir`` (SeaweedFS has no in-memory mode)."""
    if not WEED.exists():
        raise BenchError(f"{WEED} not found (scripts/install-tools installs SeaweedFS)")
    home = tdir / "seaweedfs"
    home.mkdir()
    config = tdir / "seaweedfs-s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "bench",
                        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    # Every port is given (the gRPC ones default to port + 10000, which may be taken),
    # as scripts/with-services does; telemetry and the extra endpoints are off.
    argv = [str(WEED), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={home}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0",
            "-volume.preStopSeconds=0", f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}", "-filer", f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}", f"-filer.localSocket={tdir}/weed-filer.sock",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-s3.localSocket={tdir}/weed-s3.sock",
            f"-s3.config={config}"]  # fmt: skip
    proc = Proc("seaweedfs", argv, tdir / "seaweedfs.log", cwd=home)
    service = SeaweedS3(proc, s3, [master_grpc, volume_grpc, filer, filer_grpc, s3, s3_grpc])
    try:
        wait_tcp(proc, s3)
        # The gateway answers before a volume server joins the master; writes fail
        # until the master has room for volumes.
        deadline = time.monotonic() + 60
        while not re.search(rb'"Free":[1-9]', _get(master, "/dir/status")):
            if time.monotonic() > deadline:
                raise BenchError(f"SeaweedFS has no volume server after 60 s:\n{proc.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        proc.stop()
        raise
    return service


def _get(port: int, path: str) -> bytes:
    try:
        return _request(port, "GET", path, {})[1]
    except OSError:
        return b""


# ----------------------------------------------------------------------------- nginx


def nginx_config(base: Path, http: str, *, errors: str = "error", connections: int = 1024) -> Path:
    """Write ``base``/nginx.conf: nginx in the foreground with everything under ``base``,
    no access log, and ``http`` (server and upstream blocks) inside its http block."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (base / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = base / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes auto;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log {errors};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
{http}}}
"""
    )
    return conf


def start_front(tdir: Path, upstreams: list[int]) -> tuple[Proc, int]:
    """nginx round-robin in front of ``upstreams`` (ports), as a deployment runs several
    servers: request and response bodies streamed (no buffering, no size limit), and
    HTTP/1.1 keep-alive to the upstreams; the Host header goes through unchanged, so
    every server sees the one name tokens are issued for."""
    base = tdir / "front"
    port = free_port()
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstreams)
    conf = nginx_config(
        base,
        f"""    upstream registry {{
{servers}        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_read_timeout 600s;
        proxy_send_timeout 600s;
        location / {{ proxy_pass http://registry; }}
    }}
""",
        errors="warn",
        connections=4096,
    )
    proc = Proc("nginx-front", ["nginx", "-p", str(base), "-c", str(conf)], base / "stderr.log")
    wait_tcp(proc, port, timeout=15)
    return proc, port
