"""Checks of the registry service over HTTP: the ``/v2/`` challenge, readiness, and
signing in the way ``hamn login`` and the container tools do.

1. ``GET /v2/`` without credentials must answer 401 with ``WWW-Authenticate: Bearer
   realm=...,service=...`` (the start of the Docker token flow every client speaks).
2. ``GET /readyz``: the server can reach its database.
3. ``POST /oauth2/exchange`` trades the caller's credentials for a refresh token
   (what ``hamn login`` hands to the tools).
4. ``GET /api/registries/<name>``: the registry exists and the caller may see it.
5. ``POST /oauth2/token`` trades the refresh token for an access token for
   ``registry:catalog:*``, which must open ``/v2/`` (200) and the registry's catalog.

No token or password is ever printed; requests go through :class:`RegistryClient`,
whose ``--debug`` log redacts them.
"""

from __future__ import annotations

import re
import ssl
import time
from typing import Any
from urllib.parse import quote

import httpx

from hamn.cli.client import NULL_GUID, Credentials, RegistryClient, RegistryError, ServerUnreachable
from hamn.cli.health import Report, error, info, ok, warning
from hamn.cli.health.network import NETWORK_TIMEOUT, Target
from hamn.cli.session import service_of

#: The scope of the access token the check asks for: listing the registry proves it is usable.
CATALOG_SCOPE = "registry:catalog:*"
#: Seconds an HTTP request of the report may take.
HTTP_TIMEOUT = 10.0
_PARAM = re.compile(r'(\w+)="([^"]*)"')

Verify = ssl.SSLContext | bool


def _short_sleep(seconds: float) -> None:
    # The client retries 429/503 waiting as Retry-After asks (up to 30 s); a health
    # report should say "busy" quickly instead of waiting that long.
    time.sleep(min(seconds, 1.0))


def registry_client(
    target: Target, registry: str, credentials: Credentials | None, verify: Verify
) -> RegistryClient:
    """A client of the server that verifies TLS as the TLS check decided."""
    return RegistryClient(
        target.url,
        registry,
        credentials,
        transport=httpx.HTTPTransport(verify=verify),
        sleep=_short_sleep,
        timeout=HTTP_TIMEOUT,
    )


def bearer_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a ``Bearer`` challenge; None when the header is not one."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return {k.lower(): v for k, v in _PARAM.findall(params)}


def check_challenge(report: Report, target: Target, verify: Verify) -> bool:
    """``GET /v2/`` anonymously: 401 with a Bearer challenge naming realm and service."""
    label = f"Challenge endpoint {target.url}/v2/"
    with httpx.Client(verify=verify, timeout=NETWORK_TIMEOUT) as http:
        # Timed from here: making the client loads a CA bundle, which is not the server's time.
        started = time.monotonic()
        try:
            response = http.get(f"{target.url}/v2/")
        except httpx.HTTPError as exc:
            report.add(error(label, "CONNECTIVITY_CHALLENGE_ERROR", f"no answer: {exc}"))
            return False
    elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
    status = response.status_code
    if status == 403:
        report.add(error(label, "CONNECTIVITY_FORBIDDEN_ERROR", "the server answered 403"))
        return False
    if status == 429:
        report.add(error(label, "CONNECTIVITY_TOOMANYREQUESTS_ERROR", "the server answered 429"))
        return False
    if response.headers.get("Docker-Distribution-API-Version") != "registry/2.0":
        report.add(
            error(
                label,
                "CONNECTIVITY_CHALLENGE_ERROR",
                f"HTTP {status} without 'Docker-Distribution-API-Version: registry/2.0': "
                "this is not a registry",
            )
        )
        return False
    if status == 200:
        report.add(
            warning(
                label,
                "200 without credentials: the server does not ask anyone to sign in",
                hint="Check that authentication is on.",
            )
        )
        return True
    challenge = bearer_challenge(response.headers.get("WWW-Authenticate", ""))
    if status != 401 or not challenge or "realm" not in challenge or "service" not in challenge:
        report.add(
            error(
                label,
                "CONNECTIVITY_CHALLENGE_ERROR",
                f"HTTP {status}, WWW-Authenticate {response.headers.get('WWW-Authenticate')!r}; "
                'expected 401 with Bearer realm="...",service="..."',
            )
        )
        return False
    realm = httpx.URL(challenge["realm"])
    ours = httpx.URL(target.url)
    if (realm.scheme, realm.host, realm.port) != (ours.scheme, ours.host, ours.port):
        report.add(
            warning(
                label,
                f"the token realm {challenge['realm']} is not on {target.url}; clients fetch "
                "tokens there",
                hint="Behind a proxy, make it pass the Host header and the scheme through "
                "(X-Forwarded-Proto) so the realm names the address clients use.",
            )
        )
        return True
    report.add(
        ok(
            label,
            f"401 Bearer realm {challenge['realm']}, service {challenge['service']}, {elapsed}",
        )
    )
    return True


def check_readiness(report: Report, target: Target, verify: Verify) -> None:
    """``GET /readyz``: the server reaches its database. Then what is known of its version."""
    label = "Server readiness /readyz"
    try:
        response = httpx.get(f"{target.url}/readyz", verify=verify, timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        report.add(error(label, "SERVER_READINESS_ERROR", f"no answer: {exc}"))
        return
    if response.status_code == 200:
        report.add(ok(label))
    elif response.status_code == 404:
        report.add(warning(label, "the server has no /readyz: is it a hamn server?"))
    else:
        report.add(
            error(
                label,
                "SERVER_READINESS_ERROR",
                f"HTTP {response.status_code}: {response.text[:200].strip()}",
            )
        )
    # hamn servers do not publish their version (a version helps attackers more than
    # users); say so rather than guess it from a Server header.
    report.add(info("Server version", "not reported by the server"))


def _who(credentials: Credentials) -> str:
    if credentials.username == NULL_GUID:
        return "the refresh token (the 'hamn auth login' session, or -p with the null GUID)"
    return f"user '{credentials.username}'"


def _refusal(exc: RegistryError, default_code: str) -> tuple[str, str]:
    code = {
        403: "CONNECTIVITY_FORBIDDEN_ERROR",
        429: "CONNECTIVITY_TOOMANYREQUESTS_ERROR",
        503: "SERVER_READINESS_ERROR",
    }.get(exc.status, default_code)
    return code, f"HTTP {exc.status}: {exc.describe()}"


def check_refresh_token(
    report: Report, client: RegistryClient, credentials: Credentials | None
) -> Credentials | None:
    """Trade the credentials for a refresh token as ``hamn login`` does; None on failure."""
    label = f"Fetch refresh token for {client.registry}"
    if credentials is None:
        report.add(
            error(
                label,
                "CONNECTIVITY_AAD_LOGIN_ERROR",
                f"no credentials for {client.server}: no -u/-p, no HAMN_USERNAME/HAMN_PASSWORD, "
                "and no 'hamn auth login' session for this server",
            )
        )
        return None
    try:
        token = client.exchange(credentials)
    except RegistryError as exc:
        code, text = _refusal(exc, "CONNECTIVITY_REFRESH_TOKEN_ERROR")
        report.add(error(label, code, f"{_who(credentials)} was refused: {text}"))
        return None
    except ServerUnreachable as exc:
        report.add(error(label, "CONNECTIVITY_CONNECT_ERROR", str(exc)))
        return None
    report.add(ok(label, f"as {_who(credentials)}"))
    return Credentials(NULL_GUID, token)


def check_registry(report: Report, client: RegistryClient) -> bool | None:
    """Whether the registry exists and the caller may see it (None: could not tell)."""
    label = f"Registry '{client.registry}'"
    try:
        body: Any = client.get_json(f"/api/registries/{quote(client.registry, safe='')}")
    except RegistryError as exc:
        if exc.status == 404:
            report.add(error(label, "LOGIN_SERVER_ERROR", f"the server says: {exc.describe()}"))
            return False
        if exc.status in (401, 403):
            # A repository token may pull and push without seeing the registry's settings.
            report.add(
                warning(
                    label,
                    f"its settings are hidden from you ({exc.describe()}); "
                    "the token checks below tell whether you may use it",
                )
            )
            return None
        code, text = _refusal(exc, "LOGIN_SERVER_ERROR")
        report.add(error(label, code, text))
        return None
    except ServerUnreachable as exc:
        report.add(error(label, "CONNECTIVITY_CONNECT_ERROR", str(exc)))
        return None
    login_server = str(body.get("loginServer", "")) if isinstance(body, dict) else ""
    prefix = service_of(client.server) + ("" if client.host_routed else f"/{client.registry}")
    report.add(ok(label, f"login server {login_server}; images are {prefix}/<repository>"))
    return True


def check_access_token(report: Report, client: RegistryClient) -> str | None:
    """An access token for :data:`CATALOG_SCOPE` from the refresh token; None on failure."""
    label = f"Fetch access token for {client.registry}"
    refresh = client.credentials
    assert refresh is not None  # the caller passes the refresh token's client
    form = {
        "grant_type": "refresh_token",
        "service": client.url("/").netloc.decode("ascii"),
        "scope": CATALOG_SCOPE,
        "refresh_token": refresh.password,
    }
    try:
        response = client.request("POST", "/oauth2/token", form=form)
        body = response.json()
    except RegistryError as exc:
        code, text = _refusal(exc, "CONNECTIVITY_ACCESS_TOKEN_ERROR")
        report.add(error(label, code, text))
        return None
    except ServerUnreachable as exc:
        report.add(error(label, "CONNECTIVITY_CONNECT_ERROR", str(exc)))
        return None
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        report.add(
            error(label, "CONNECTIVITY_ACCESS_TOKEN_ERROR", "the answer has no access_token")
        )
        return None
    report.add(ok(label, f"scope {CATALOG_SCOPE}"))
    return token


def check_token_use(
    report: Report, client: RegistryClient, token: str, exists: bool | None
) -> None:
    """The access token opens ``/v2/`` and the registry's catalog; ``exists`` is what the
    registry check found (None: it could not tell)."""
    label = "Access token on /v2/"
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        client.request("GET", "/v2/", headers=bearer)
    except RegistryError as exc:
        report.add(error(label, "CONNECTIVITY_ACCESS_TOKEN_ERROR", f"refused: {exc.describe()}"))
        return
    except ServerUnreachable as exc:
        report.add(error(label, "CONNECTIVITY_CONNECT_ERROR", str(exc)))
        return
    report.add(ok(label))
    label = f"Catalog of {client.registry}"
    try:
        client.request("GET", client.v2_path("_catalog"), params={"n": 1}, headers=bearer)
    except RegistryError as exc:
        if exc.status == 404 and exists is False:
            report.add(info(label, "not found (as above)"))
        elif exc.status == 404:
            report.add(error(label, "LOGIN_SERVER_ERROR", f"not found ({exc.describe()})"))
        elif exc.status in (401, 403):
            report.add(
                info(
                    label,
                    "you may not list its repositories (a repository token "
                    "may still pull and push)",
                )
            )
        else:
            report.add(error(label, "CONNECTIVITY_ACCESS_TOKEN_ERROR", exc.describe()))
        return
    except ServerUnreachable as exc:
        report.add(error(label, "CONNECTIVITY_CONNECT_ERROR", str(exc)))
        return
    report.add(ok(label))
