"""TLS with a minimum version (SPEC §9 "TLS 1.2-only", §11): `hamn serve --tls-cert
--tls-key --tls-min-version`, checked with real handshakes by `openssl s_client`
and a real client (skopeo) that verifies the certificate."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def handshake(port: int, version: str) -> bool:
    """Whether `openssl s_client` completes a handshake at exactly this TLS version.

    The system OpenSSL config refuses TLS 1.1 on the client side; it is bypassed
    (OPENSSL_CONF=/dev/null, security level 0) so a refusal can only be the server's.
    """
    flag = {"1.1": "-tls1_1", "1.2": "-tls1_2", "1.3": "-tls1_3"}[version]
    run = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            flag,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-brief",
        ],
        input=b"",
        capture_output=True,
        timeout=30,
        env={**os.environ, "OPENSSL_CONF": "/dev/null"},
    )
    out = (run.stdout + run.stderr).decode(errors="replace")
    return run.returncode == 0 and f"Protocol version: TLSv{version}" in out


#: port, minimum TLS version, certificate, and the owner's (username, password)
TlsServer = tuple[int, str, Path, tuple[str, str]]


def _trust(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 with a PKCS#8 EC key."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _start(
    data_dir: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = _free_port()
    log = data_dir.parent / f"{data_dir.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hamn",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    return proc, port, log


def _wait_tls(proc: subprocess.Popen[bytes], port: int, cert: Path, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hamn serve exited: {log.read_text(errors='replace')}")
        try:  # any answer will do (anonymous: 401 once authentication is on)
            if httpx.get(
                f"https://127.0.0.1:{port}/v2/", verify=_trust(cert), timeout=1
            ).status_code:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"no TLS answer in 30 s: {log.read_text(errors='replace')}")


@pytest.fixture(params=["1.2", "1.3"], scope="module")
def tls_server(
    request: pytest.FixtureRequest,
    certificate: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    hamn_conftest: Any,
) -> Iterator[TlsServer]:
    """A TLS server: its port, minimum TLS version, certificate and owner's credentials."""
    cert, key = certificate
    minimum = str(request.param)
    data_dir = tmp_path_factory.mktemp("tls-data") / "data"
    env = hamn_conftest.bootstrap_env(data_dir)
    auth = (env["HAMN_BOOTSTRAP_USERNAME"], env["HAMN_BOOTSTRAP_PASSWORD"])
    proc, port, log = _start(
        data_dir,
        env,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--tls-min-version",
        minimum,
    )
    try:
        _wait_tls(proc, port, cert, log)
        yield port, minimum, cert, auth
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_handshakes_respect_the_minimum_version(tls_server: TlsServer) -> None:
    port, minimum, _, _ = tls_server
    assert handshake(port, "1.3")
    assert handshake(port, "1.2") is (minimum == "1.2")
    assert not handshake(port, "1.1")


def test_registry_api_over_tls(tls_server: TlsServer) -> None:
    port, _, cert, auth = tls_server
    r = httpx.get(f"https://127.0.0.1:{port}/v2/", verify=_trust(cert), auth=auth)
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=5)


@pytest.mark.skipif(shutil.which("skopeo") is None and not os.environ.get("CI"), reason="no skopeo")
def test_skopeo_verifies_the_certificate(tls_server: TlsServer, tmp_path: Path) -> None:
    """A real client pushes over TLS with verification on, trusting only our certificate."""
    port, _, cert, auth = tls_server
    creds = ":".join(auth)
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(cert, certs / "ca.crt")
    layout = tmp_path / "layout"
    blob = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    _write_layout(layout, blob)
    dest = f"docker://127.0.0.1:{port}/tls/check:v1"
    policy = tmp_path / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    run = subprocess.run(
        [
            "skopeo",
            "--policy",
            str(policy),
            "copy",
            "--dest-cert-dir",
            str(certs),
            "--dest-creds",
            creds,
            f"oci:{layout}:v1",
            dest,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--cert-dir", str(certs), "--creds", creds, dest],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert raw.returncode == 0, raw.stderr
    # Without our certificate, verification must fail: TLS is really checked.
    untrusted = subprocess.run(
        ["skopeo", "inspect", "--raw", "--creds", creds, dest],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr.lower()


def test_tls_needs_both_files(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = certificate
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "hamn",
            "serve",
            "--port",
            str(_free_port()),
            "--data-dir",
            str(tmp_path / "d"),
            "--tls-cert",
            str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0
    assert "tls_key" in run.stderr


def _write_layout(layout: Path, config: bytes) -> None:
    """A minimal OCI layout: one image with a config and no layers."""
    import hashlib
    import json

    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}"

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(config),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    digest = put(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": "v1"},
                    }
                ],
            }
        )
    )
