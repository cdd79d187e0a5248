"""What ``hamn check-health`` finds, the error codes it names, and how a finding is printed.

Each check ends in a :class:`Finding`. Errors carry one of ``az acr check-health``'s
error codes where one fits (with the meaning it has for hamn) and a sentence on what
to do; :data:`HINTS` holds that sentence per code, in one place, as ACR's health
check error reference does. A few codes are hamn's own (no ACR code fits them):
``CONNECTIVITY_CONNECT_ERROR`` and ``SERVER_READINESS_ERROR``.

:class:`Report` prints findings as they come, counts the errors, and stops the run at
the first error unless ``--ignore-errors`` asked to keep going.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

#: What to do about each error code (az's "potential solutions", for hamn).
HINTS: dict[str, str] = {
    "DOCKER_COMMAND_ERROR": "Install a container client (podman, buildah and skopeo need no "
    "daemon; docker needs dockerd) and make sure it is on PATH.",
    "DOCKER_DAEMON_ERROR": "Start the docker daemon (or point DOCKER_HOST at one), or use podman, "
    "buildah or skopeo, which push and pull without a daemon.",
    "DOCKER_VERSION_ERROR": "Run the client's --version by hand and read its error; reinstall "
    "it if it cannot run.",
    "HELM_VERSION_ERROR": "Run 'helm version' by hand and read its error; helm 3.8 or newer "
    "pushes charts to OCI registries.",
    "NOTARY_VERSION_ERROR": "Run 'notation version' or 'cosign version' by hand and read "
    "its error.",
    "CONNECTIVITY_DNS_ERROR": "Check the host name in --server (or HAMN_SERVER, or the "
    "'hamn auth login' session) and this machine's DNS settings (/etc/resolv.conf, /etc/hosts). "
    "A login server <registry>.<domain> needs a DNS entry of its own; without one, give the "
    "server's address in --server and reach the registry by path (host:port/<registry>/...).",
    "CONNECTIVITY_CONNECT_ERROR": "Start the server ('hamn serve'), check its --host and --port, "
    "and any firewall between here and there; then point --server at it.",
    "CONNECTIVITY_SSL_ERROR": "See the reason above: trust the server's certificate with "
    "--ca-file, or fix the certificate the server presents (hamn serve --tls-cert).",
    "CONNECTIVITY_CHALLENGE_ERROR": "Make sure --server is a hamn server (or a proxy that passes "
    "/v2/ and its WWW-Authenticate header through unchanged); its log tells more.",
    "CONNECTIVITY_FORBIDDEN_ERROR": "Your identity may not use this registry: ask an Owner of it "
    "for a role (hamn role assignment create), or check a proxy in between.",
    "CONNECTIVITY_TOOMANYREQUESTS_ERROR": "Too many failed sign-ins came from this address; wait "
    "for the time Retry-After names, then try again with the right credentials.",
    "SERVER_READINESS_ERROR": "The server answers but is not ready (its database or storage is "
    "down or busy); read the server's log.",
    "CONNECTIVITY_AAD_LOGIN_ERROR": "Sign in with 'hamn auth login --server URL', or pass "
    "-u/--username and -p/--password (or set HAMN_USERNAME and HAMN_PASSWORD).",
    "CONNECTIVITY_REFRESH_TOKEN_ERROR": "Check the username and password (or run "
    "'hamn auth login' again: a session's token lasts a day); a disabled user or an expired "
    "token password is refused too.",
    "CONNECTIVITY_ACCESS_TOKEN_ERROR": "The server signs in but issues no usable access token; "
    "its log tells why (a clock far off on either side makes tokens look expired).",
    "LOGIN_SERVER_ERROR": "Check the registry name; 'hamn list' shows the registries you can "
    "see, and an Owner can give you Reader on one you cannot.",
    "CREDENTIAL_FILE_ERROR": "Run 'hamn login -n NAME' to write the credentials docker, podman, "
    "buildah and skopeo read.",
}


class Status(Enum):
    """How a check came out."""

    OK = "OK"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: what was checked, how it came out, and what to do."""

    label: str
    status: Status
    detail: str = ""
    code: str | None = None
    hint: str | None = None

    def render(self) -> str:
        """The finding as the report prints it (one line, plus indented lines for problems)."""
        if self.status is Status.OK:
            return f"{self.label} : OK" + (f" ({self.detail})" if self.detail else "")
        if self.status is Status.INFO:
            return f"{self.label} : {self.detail}"
        if self.status is Status.SKIPPED:
            return f"{self.label} : SKIPPED ({self.detail})"
        head = "An error occurred" if self.status is Status.ERROR else "WARNING"
        lines = [f"{self.label} : {head}" + (f": {self.code}" if self.code else "")]
        lines += [f"    {self.detail}"] if self.detail else []
        lines += [f"    What to do: {self.hint}"] if self.hint else []
        return "\n".join(lines)


def ok(label: str, detail: str = "") -> Finding:
    """A check that passed."""
    return Finding(label, Status.OK, detail)


def info(label: str, detail: str) -> Finding:
    """A fact worth showing that is neither good nor bad."""
    return Finding(label, Status.INFO, detail)


def skipped(label: str, reason: str) -> Finding:
    """A check not run because one it needs failed."""
    return Finding(label, Status.SKIPPED, reason)


def warning(label: str, detail: str, code: str | None = None, hint: str | None = None) -> Finding:
    """A problem that does not fail the run; ``hint`` defaults to the code's."""
    return Finding(label, Status.WARNING, detail, code, hint or (HINTS.get(code) if code else None))


def error(label: str, code: str, detail: str, hint: str | None = None) -> Finding:
    """A failed check; ``hint`` defaults to the code's entry in :data:`HINTS`."""
    return Finding(label, Status.ERROR, detail, code, hint or HINTS[code])


class StopChecks(Exception):
    """Raised by :meth:`Report.add` at the first error, unless errors are ignored."""


class Report:
    """Prints findings in order and remembers the errors."""

    def __init__(self, echo: Callable[[str], None], *, ignore_errors: bool) -> None:
        self._echo = echo
        self.ignore_errors = ignore_errors
        self.errors: list[Finding] = []

    def add(self, finding: Finding) -> Finding:
        """Print ``finding``; at an error, stop the run (:class:`StopChecks`) unless ignoring."""
        self._echo(finding.render())
        if finding.status is Status.ERROR:
            self.errors.append(finding)
            if not self.ignore_errors:
                raise StopChecks
        return finding
