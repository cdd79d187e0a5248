"""``hamn check-health`` against real servers: plain HTTP, TLS with a self-signed
certificate (TLS 1.3 only), and a port where nothing listens.

The CLI runs as a subprocess with HOME, the XDG dirs and docker's and podman's
settings in temp dirs, so the user's own files are never read or written.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REGISTRY = "local"  # the default registry every test server has


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with no hamn settings and private config, runtime and docker dirs."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HAMN_", "SSL_CERT_"))
        and k not in ("REGISTRY_AUTH_FILE", "DOCKER_HOST")
    }
    return clean | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(runtime),
        "DOCKER_CONFIG": str(home / ".docker"),
    }


def hamn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hamn", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def lines_of(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The report's check lines by label: ``{"Catalog of local": "OK", ...}``."""
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        label, sep, outcome = line.partition(" : ")
        if sep and not line.startswith(" "):
            found[label] = outcome
    return found


def test_plain_http_server(start_server: Callable[..., Any], env: dict[str, str]) -> None:
    reg = start_server()
    creds = ("--server", reg.url, "-u", reg.username, "-p", reg.password)

    good = hamn(env, "check-health", "-n", REGISTRY, *creds)
    assert good.returncode == 0, good.stdout + good.stderr
    checks = lines_of(good)
    for label in (
        "DNS lookup of 127.0.0.1",
        f"Connection to {reg.host}",
        f"Challenge endpoint {reg.url}/v2/",
        "Server readiness /readyz",
        f"Fetch refresh token for {REGISTRY}",
        f"Registry '{REGISTRY}'",
        f"Fetch access token for {REGISTRY}",
        "Access token on /v2/",
        f"Catalog of {REGISTRY}",
    ):
        assert checks[label].startswith("OK"), f"{label}: {checks.get(label)}\n{good.stdout}"
    assert checks["TLS"].startswith("not used (plain HTTP)")
    assert checks["hamn CLI version"]
    # Nobody ran `hamn login` yet: warnings that name the command, and still exit 0.
    assert checks["docker credentials"] == "WARNING: CREDENTIAL_FILE_ERROR"
    assert f"hamn login -n {REGISTRY} --server {reg.url}" in good.stdout
    assert reg.password not in good.stdout + good.stderr

    login = hamn(env, "login", "-n", REGISTRY, *creds)
    assert login.returncode == 0, login.stderr
    after = lines_of(hamn(env, "check-health", "-n", REGISTRY, *creds))
    assert after["docker credentials"].startswith("OK")
    assert after["podman/buildah/skopeo credentials"].startswith("OK")

    # A wrong password: the refresh token check fails, and the run stops there.
    wrong = hamn(env, "check-health", "-n", REGISTRY, "--server", reg.url, "-u", reg.username,
                 "-p", "not-the-password")  # fmt: skip
    assert wrong.returncode == 1
    assert (
        lines_of(wrong)[f"Fetch refresh token for {REGISTRY}"]
        == "An error occurred: CONNECTIVITY_REFRESH_TOKEN_ERROR"
    )
    assert "What to do:" in wrong.stdout
    assert "Stopped at the first error" in wrong.stdout
    assert "docker credentials" not in lines_of(wrong)
    assert "CONNECTIVITY_REFRESH_TOKEN_ERROR" in wrong.stderr
    assert "not-the-password" not in wrong.stdout + wrong.stderr

    # The same with --ignore-errors: every check after it runs too.
    wrong_all = hamn(env, "check-health", "-n", REGISTRY, "--ignore-errors", "--server", reg.url,
                     "-u", reg.username, "-p", "not-the-password")  # fmt: skip
    assert wrong_all.returncode == 1
    assert "Stopped at the first error" not in wrong_all.stdout
    assert lines_of(wrong_all)["docker credentials"].startswith("OK")

    # A registry that does not exist.
    unknown = hamn(env, "check-health", "-n", "nosuchregistry", *creds)
    assert unknown.returncode == 1
    assert lines_of(unknown)["Registry 'nosuchregistry'"] == "An error occurred: LOGIN_SERVER_ERROR"

    # No credentials at all: no refresh token can be asked for.
    anonymous = hamn(env, "check-health", "-n", REGISTRY, "--server", reg.url)
    assert anonymous.returncode == 1
    assert "CONNECTIVITY_AAD_LOGIN_ERROR" in anonymous.stdout


def test_nothing_listening_is_reported_quickly(env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        started = time.monotonic()
        result = hamn(env, "check-health", "-n", REGISTRY, "--ignore-errors",
                      "--server", f"http://127.0.0.1:{port}", "-u", "u", "-p", "p")  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    checks = lines_of(result)
    assert checks[f"Connection to 127.0.0.1:{port}"] == (
        "An error occurred: CONNECTIVITY_CONNECT_ERROR"
    )
    assert checks["Registry API checks"].startswith("SKIPPED")
    assert checks["Sign-in checks"].startswith("SKIPPED")
    assert "docker credentials" in checks  # --ignore-errors: the local checks still run
    assert elapsed < 15, f"took {elapsed:.1f} s"


def test_environment_only_without_a_registry(env: dict[str, str]) -> None:
    result = hamn(env, "check-health", "--yes")
    checks = lines_of(result)
    assert checks["Registry checks"].startswith("not run")
    assert not any(label.startswith("DNS lookup") for label in checks)
    assert "Container clients" in checks
    # Exit status follows the container clients: 0 when one is usable here.
    assert result.returncode == (0 if checks["Container clients"].startswith("OK") else 1)


# ------------------------------------------------------------------ TLS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str, str]]:
    """A TLS 1.3-only server with a self-signed certificate: URL, certificate, owner."""
    d = tmp_path_factory.mktemp("check-health-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "90",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    username, password = "owner", secrets.token_urlsafe(16)
    port = _free_port()
    log = open(d / "server.log", "wb")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamn", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(d / "data"), "--tls-cert", str(cert), "--tls-key", str(key),
         "--tls-min-version", "1.3"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "HAMN_BOOTSTRAP_USERNAME": username,
             "HAMN_BOOTSTRAP_PASSWORD": password},
    )  # fmt: skip
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    trust.wrap_socket(sock, server_hostname="127.0.0.1").close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((d / "server.log").read_text(errors="replace")) from None
                time.sleep(0.1)
        yield f"https://127.0.0.1:{port}", cert, username, password
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_self_signed_certificate(
    tls_server: tuple[str, Path, str, str], env: dict[str, str]
) -> None:
    url, cert, username, password = tls_server
    creds = ("--server", url, "-u", username, "-p", password)
    address = url.removeprefix("https://")

    untrusted = hamn(env, "check-health", "-n", REGISTRY, *creds)
    assert untrusted.returncode == 1
    checks = lines_of(untrusted)
    assert checks[f"TLS to {address}"] == "An error occurred: CONNECTIVITY_SSL_ERROR"
    assert "self-signed" in untrusted.stdout
    assert "--ca-file" in untrusted.stdout  # the hint says how to trust it
    assert f"/etc/containers/certs.d/{address}/ca.crt" in untrusted.stdout
    assert f"Fetch refresh token for {REGISTRY}" not in checks

    # --ignore-errors: the anonymous checks still run, the credentials are never sent.
    rest = lines_of(hamn(env, "check-health", "-n", REGISTRY, "--ignore-errors", *creds))
    assert rest[f"Challenge endpoint {url}/v2/"].startswith("OK")
    assert rest["Sign-in checks"].startswith("SKIPPED")

    trusted = hamn(env, "check-health", "-n", REGISTRY, "--ca-file", str(cert), *creds)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    checks = lines_of(trusted)
    assert checks[f"TLS to {address}"].startswith("OK (TLSv1.3 only, ")
    assert checks[f"Certificate of {address}"].startswith(f"OK (trusted by --ca-file {cert}")
    assert "CN=127.0.0.1, self-signed" in checks[f"Certificate of {address}"]
    assert checks["System trust store"] == "WARNING"  # podman & co. do not trust it
    assert checks["Access token on /v2/"].startswith("OK")
    assert checks[f"Catalog of {REGISTRY}"].startswith("OK")

    insecure = hamn(env, "check-health", "-n", REGISTRY, "--insecure", *creds)
    assert insecure.returncode == 0, insecure.stdout + insecure.stderr
    assert lines_of(insecure)[f"Certificate of {address}"] == "WARNING"
    assert "not verified (--insecure)" in insecure.stdout
