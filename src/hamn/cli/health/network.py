"""Checks of the way to the server: DNS, a TCP connection, and TLS.

Each is bounded in time (a few seconds), so an unreachable server is reported
quickly instead of hanging the report. TLS is checked with :mod:`ssl` directly,
not through an HTTP client, to see what a client sees: the protocol and cipher
agreed, the certificate's subject, issuer and expiry, and why it is not trusted
when it is not.

The certificate is verified against what the other ``hamn`` commands trust
(``--ca-file`` here; otherwise ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or the certifi
bundle, as httpx chooses) and, separately, against the system trust store, which
podman, buildah, skopeo and docker use.
"""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from hamn.cli.health import Report, error, info, ok, warning

#: Seconds a DNS lookup, a TCP connection or a TLS handshake may take.
NETWORK_TIMEOUT = 4.0
#: A certificate expiring within this many days is a warning.
EXPIRY_WARNING_DAYS = 30
#: OpenSSL's verification results that mean "nobody here vouches for this certificate".
_UNTRUSTED = frozenset({18, 19, 20, 21})  # self-signed (leaf, chain), no local issuer, no chain
_EXPIRED = 10
_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True, slots=True)
class Target:
    """The server being checked: where to connect, and how it is named."""

    url: str
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, server: str) -> Target:
        """The target of a normalized server URL."""
        url = httpx.URL(server)
        port = url.port or (443 if url.scheme == "https" else 80)
        return cls(server, url.scheme, url.host, port)

    @property
    def address(self) -> str:
        """``host:port`` (brackets around an IPv6 address)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def check_dns(report: Report, target: Target) -> list[str] | None:
    """Resolve the server's host; its addresses, or None after reporting the error."""
    label = f"DNS lookup of {target.host}"
    started = time.monotonic()
    # getaddrinfo has no timeout of its own; a thread bounds the wait.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        infos = pool.submit(
            socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM
        ).result(timeout=NETWORK_TIMEOUT)
    except concurrent.futures.TimeoutError:
        report.add(error(label, "CONNECTIVITY_DNS_ERROR", f"no answer in {NETWORK_TIMEOUT:g} s"))
        return None
    except OSError as exc:
        report.add(error(label, "CONNECTIVITY_DNS_ERROR", f"{target.host} does not resolve: {exc}"))
        return None
    finally:
        pool.shutdown(wait=False)
    addresses = list(dict.fromkeys(str(i[4][0]) for i in infos))
    report.add(ok(label, f"{', '.join(addresses)} in {_ms(started)}"))
    return addresses


def check_connect(report: Report, target: Target, addresses: list[str]) -> bool:
    """Open (and close) a TCP connection to the server; False after reporting the error."""
    label = f"Connection to {target.address}"
    reasons: list[str] = []
    for address in addresses:
        started = time.monotonic()
        try:
            with socket.create_connection((address, target.port), timeout=NETWORK_TIMEOUT):
                report.add(ok(label, f"{address} in {_ms(started)}"))
                return True
        except TimeoutError:
            reasons.append(f"{address}: no answer in {NETWORK_TIMEOUT:g} s")
        except OSError as exc:
            reasons.append(f"{address}: {exc.strerror or exc}")
    report.add(error(label, "CONNECTIVITY_CONNECT_ERROR", "; ".join(reasons)))
    return False


# ------------------------------------------------------------------ TLS


def client_trust(ca_file: Path | None) -> ssl.SSLContext:
    """What the hamn CLI trusts: ``ca_file``, else what httpx trusts by default."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return httpx.create_ssl_context()


def _trust_source(ca_file: Path | None) -> str:
    if ca_file is not None:
        return f"--ca-file {ca_file}"
    return "the hamn CLI's trust store (SSL_CERT_FILE, SSL_CERT_DIR or certifi's bundle)"


def _handshake(context: ssl.SSLContext, target: Target) -> ssl.SSLSocket:
    sock = socket.create_connection((target.host, target.port), timeout=NETWORK_TIMEOUT)
    try:
        return context.wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class Certificate:
    """What the report says of a certificate."""

    subject: str
    issuer: str
    not_after: datetime

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        """Read a DER certificate (also one that did not verify)."""
        from cryptography import x509  # only TLS checks need it

        cert = x509.load_der_x509_certificate(der)
        return cls(
            cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.not_valid_after_utc
        )

    def describe(self, now: datetime) -> str:
        """Subject, issuer and expiry in words."""
        days = (self.not_after - now).days
        issuer = "self-signed" if self.issuer == self.subject else f"issuer {self.issuer}"
        return (
            f"subject {self.subject}, {issuer}, expires {self.not_after:%Y-%m-%d} "
            f"({days} days left)"
        )


def _peer(context: ssl.SSLContext, target: Target) -> tuple[str, str, Certificate | None]:
    with _handshake(context, target) as tls:
        der = tls.getpeercert(binary_form=True)
        cipher = tls.cipher()
        return (
            tls.version() or "?",
            cipher[0] if cipher else "?",
            Certificate.from_der(der) if der else None,
        )


def _accepts_tls12(target: Target) -> bool:
    context = _unverified()
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with _handshake(context, target):
            return True
    except (OSError, ssl.SSLError):
        return False


def _tools_trust_hint(target: Target) -> str:
    certs_d = f"{target.address}/ca.crt"
    return (
        f"podman, buildah and skopeo trust it in /etc/containers/certs.d/{certs_d}; "
        f"docker in /etc/docker/certs.d/{certs_d}."
    )


def _trust_hint(target: Target) -> str:
    return f"Other hamn commands trust it with SSL_CERT_FILE=PEM; {_tools_trust_hint(target)}"


def _verify_hint(code: int, target: Target, subject: str) -> str:
    if code in _UNTRUSTED:
        return (
            "Pass the server's certificate (or its CA's) with --ca-file PEM, or --insecure to "
            f"check the rest without verifying. {_trust_hint(target)}"
        )
    if code == _EXPIRED:
        return "Renew the certificate and restart the server with it (hamn serve --tls-cert)."
    if code == _HOSTNAME_MISMATCH:
        return (
            f"The certificate ({subject}) does not name {target.host}: use a name it carries "
            "in --server, or reissue it with that name in subjectAltName."
        )
    return "Check the certificate chain the server sends (hamn serve --tls-cert takes the chain)."


def check_tls(
    report: Report, target: Target, ca_file: Path | None, insecure: bool
) -> ssl.SSLContext | bool | None:
    """Handshake, certificate and protocol versions of an https server.

    Returns what later requests should verify with (a context, or False under
    ``--insecure``), or None when the certificate is not trusted (after reporting
    the error): nothing secret is then sent to the server.
    """
    label = f"TLS to {target.address}"
    now = datetime.now(UTC)
    trust = client_trust(ca_file)
    try:
        version, cipher, cert = _peer(_unverified() if insecure else trust, target)
    except ssl.SSLCertVerificationError as exc:
        try:
            _, _, cert = _peer(_unverified(), target)
        except (OSError, ssl.SSLError):
            cert = None
        shown = cert.describe(now) if cert else "certificate unreadable"
        report.add(
            error(
                label,
                "CONNECTIVITY_SSL_ERROR",
                f"the certificate is not trusted by {_trust_source(ca_file)}: "
                f"{exc.verify_message} ({shown})",
                _verify_hint(exc.verify_code, target, cert.subject if cert else "?"),
            )
        )
        return None
    except ssl.SSLError as exc:
        report.add(
            error(
                label,
                "CONNECTIVITY_SSL_ERROR",
                f"no TLS handshake: {exc.reason or exc}",
                "Is the server serving TLS on this port? For a plain-HTTP server use "
                f"--server http://{target.address}.",
            )
        )
        return None
    except OSError as exc:
        report.add(error(label, "CONNECTIVITY_SSL_ERROR", f"handshake failed: {exc}"))
        return None
    if version == "TLSv1.3":
        version += " (TLS 1.2 accepted too)" if _accepts_tls12(target) else " only"
    report.add(ok(label, f"{version}, {cipher}"))
    _report_certificate(report, target, cert, now, insecure, ca_file)
    return False if insecure else trust


def _report_certificate(
    report: Report,
    target: Target,
    cert: Certificate | None,
    now: datetime,
    insecure: bool,
    ca_file: Path | None,
) -> None:
    label = f"Certificate of {target.address}"
    if cert is None:
        report.add(error(label, "CONNECTIVITY_SSL_ERROR", "the server sent no certificate"))
        return
    shown = cert.describe(now)
    if cert.not_after <= now:
        report.add(
            error(
                label,
                "CONNECTIVITY_SSL_ERROR",
                f"expired: {shown}",
                _verify_hint(_EXPIRED, target, cert.subject),
            )
        )
        return
    if insecure:
        hint = f"Check it with --ca-file PEM instead. {_trust_hint(target)}"
        report.add(warning(label, f"not verified (--insecure): {shown}", hint=hint))
        return
    if (cert.not_after - now).days < EXPIRY_WARNING_DAYS:
        report.add(
            warning(
                label,
                f"trusted by {_trust_source(ca_file)}, but expires soon: {shown}",
                hint=_verify_hint(_EXPIRED, target, cert.subject),
            )
        )
    else:
        report.add(ok(label, f"trusted by {_trust_source(ca_file)}; {shown}"))
    try:
        _peer(ssl.create_default_context(), target)
    except ssl.SSLCertVerificationError as exc:
        report.add(
            warning(
                "System trust store",
                f"does not trust the certificate ({exc.verify_message}); podman, buildah, "
                "skopeo and docker use it",
                hint=f"Add it to the system store (update-ca-certificates), or: "
                f"{_tools_trust_hint(target)}",
            )
        )
    except (OSError, ssl.SSLError):
        pass  # the handshake itself worked a moment ago; nothing new to say
    else:
        report.add(info("System trust store", "trusts the certificate too"))
