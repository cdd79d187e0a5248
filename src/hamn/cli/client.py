"""The CLI's one HTTP client: every request to a hamn server is built and sent here.

* **Addressing.** A registry's content lives under ``<server>/v2/<registry>/...``
  and ``<server>/acr/v1/<registry>/...`` (the server routes on the first path
  segment, SPEC §3.5). When ``--server`` is the registry's own login server
  (``https://<registry>.<domain>``) the server routes on the host instead, and
  paths carry no registry segment, exactly as ``az`` talks to ACR.
* **Credentials.** ``-u/-p`` (or the signed-in session's refresh token, under
  the null GUID) become a Basic ``Authorization`` header, sent only to the
  server's own origin. :meth:`RegistryClient.exchange` trades credentials for
  a refresh token at ``/oauth2/exchange``.
* **Retries.** Idempotent requests are retried when the server answers 429 or
  503 (waiting as ``Retry-After`` says, within bounds) or cannot be reached.
* **Paging.** Listings follow ``Link: <...>; rel="next"`` and honour ``--top``.
* **Logging.** ``--verbose`` logs one line per request; ``--debug`` logs headers
  and bodies with credentials and tokens redacted.

Errors come back as :class:`RegistryError` (the server's ``{"errors": [...]}``
envelope, parsed) or :class:`ServerUnreachable`; the command layer words them.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin

import httpx

from hamn import __version__

log = logging.getLogger("hamn.cli.http")

DEFAULT_SERVER = "http://127.0.0.1:5000"
#: The username under which a refresh token is presented as a password (ACR, docker).
NULL_GUID = "00000000-0000-0000-0000-000000000000"
#: Entries per page the CLI asks for (what az asks ACR for).
PAGE_SIZE = 100
#: Retries of one idempotent request (after the first attempt).
MAX_RETRIES = 3
#: The longest the client waits before one retry, whatever ``Retry-After`` asks.
MAX_RETRY_WAIT = 30.0
#: The most pages one listing follows (a guard against a server that loops).
MAX_PAGES = 100_000

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRY_STATUSES = frozenset({429, 503})
_RETRY_TRANSPORT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_JSON = re.compile(
    r'("(?:access_token|refresh_token|token|password|password2|value'
    r'|accessToken|refreshToken|identitytoken|secret|Secret)"\s*:\s*)"[^"]*"'
)
#: Form fields that carry secrets (the token endpoints' requests).
_SECRET_FORM_FIELDS = frozenset({"password", "refresh_token", "access_token", "client_secret"})
_FORM = "application/x-www-form-urlencoded"
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Bodies longer than this are cut short in ``--debug`` logs.
_DEBUG_BODY_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password, sent as HTTP Basic authentication."""

    username: str
    password: str

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


class RegistryError(Exception):
    """The server refused a request: its status and the first ``errors`` entry."""

    def __init__(
        self,
        status: int,
        method: str,
        url: str,
        *,
        code: str | None = None,
        message: str | None = None,
        detail: Any = None,
        reason: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.code = code
        self.message = message
        self.detail = detail
        self.reason = reason
        super().__init__(self.describe())

    @classmethod
    def from_response(cls, response: httpx.Response) -> RegistryError:
        """Parse ``{"errors": [{"code", "message", "detail"}]}`` when the body has it."""
        code = message = detail = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                first = errors[0]
                code = str(first["code"]) if first.get("code") else None
                message = str(first["message"]) if first.get("message") else None
                detail = first.get("detail")
        return cls(
            response.status_code,
            response.request.method,
            str(response.request.url),
            code=code,
            message=message,
            detail=detail,
            reason=response.reason_phrase,
        )

    def describe(self) -> str:
        """The server's words: ``message (CODE)``, or the bare HTTP status."""
        if self.message:
            return f"{self.message} ({self.code})" if self.code else self.message
        return f"the server answered HTTP {self.status} {self.reason}".rstrip()


class ServerUnreachable(Exception):
    """No answer from the server (connection refused, DNS, TLS, timeout)."""

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"Cannot reach the hamn server at {server} ({reason})")


def normalize_server(value: str) -> str:
    """``--server`` as a base URL: a bare ``host:port`` means http for this machine, else https."""
    value = value.strip().rstrip("/")
    if not value:
        return DEFAULT_SERVER
    if "://" not in value:
        host = value.split("/", 1)[0].rsplit(":", 1)[0] if not value.startswith("[") else "[::1]"
        scheme = "http" if host.lower() in _LOCAL_HOSTS else "https"
        value = f"{scheme}://{value}"
    return value


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) as seconds to wait; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_link(header: str | None) -> str | None:
    """The target of ``rel="next"`` in a ``Link`` header, or None."""
    if not header:
        return None
    m = _LINK_NEXT.search(header)
    return m.group(1) if m else None


def _redact_headers(headers: Mapping[str, str]) -> list[str]:
    return [
        f"    {k!r}: {'REDACTED' if k.lower() in _SECRET_HEADERS else v!r}"
        for k, v in headers.items()
    ]


def _redact_form(content: bytes) -> str:
    fields = parse_qsl(content.decode("utf-8", errors="replace"), keep_blank_values=True)
    return urlencode(
        [(k, "REDACTED" if k.lower() in _SECRET_FORM_FIELDS else v) for k, v in fields]
    )


def _redact_body(content: bytes, content_type: str) -> str:
    if not content:
        return ""
    if content_type.split(";", 1)[0].strip().lower() == _FORM:
        return _redact_form(content[:_DEBUG_BODY_LIMIT])
    if "json" not in content_type and not content_type.startswith("text/"):
        return f"<{len(content)} bytes of {content_type or 'unknown type'}>"
    text = content[:_DEBUG_BODY_LIMIT].decode("utf-8", errors="replace")
    text = _SECRET_JSON.sub(r'\1"REDACTED"', text)
    if len(content) > _DEBUG_BODY_LIMIT:
        text += f"... ({len(content)} bytes in all)"
    return text


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class RegistryClient:
    """Requests to one registry on one hamn server (see the module docstring)."""

    def __init__(
        self,
        server: str,
        registry: str,
        credentials: Credentials | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
    ) -> None:
        self.server = normalize_server(server)
        self.registry = registry
        self.credentials = credentials
        self._sleep = sleep
        self._base = httpx.URL(self.server + "/")
        host = self._base.host.lower()
        #: True when the server URL is the registry's login server: no registry segment.
        self.host_routed = "." in host and host.split(".", 1)[0] == registry.lower()
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": f"hamn-cli/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # ------------------------------------------------------------------ paths

    def _scoped(self, api: str, repository: str, parts: tuple[str, ...]) -> str:
        segments = [] if self.host_routed else [quote(self.registry, safe="")]
        segments.append(quote(repository, safe="/"))
        segments.extend(quote(p, safe=":") for p in parts)
        return f"{api}/" + "/".join(segments)

    def v2_path(self, repository: str, *parts: str) -> str:
        """``/v2/[<registry>/]<repository>/<parts...>``."""
        return self._scoped("/v2", repository, parts)

    def acr_path(self, repository: str, *parts: str) -> str:
        """``/acr/v1/[<registry>/]<repository>/<parts...>``."""
        return self._scoped("/acr/v1", repository, parts)

    def url(self, path: str) -> httpx.URL:
        """An absolute URL on the server for ``path`` (a path, or a same-origin URL)."""
        if path.startswith(("http://", "https://")):
            url = httpx.URL(path)
        else:
            url = httpx.URL(urljoin(str(self._base), path.lstrip("/")))
        if _origin(url) != _origin(self._base):
            # Credentials go to the server the user named and nowhere else.
            raise ValueError(f"{url.scheme}://{url.netloc.decode()} is not {self.server}")
        return url

    # --------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (retrying when safe); raise :class:`RegistryError` on 4xx/5xx.

        ``form`` sends an ``application/x-www-form-urlencoded`` body (the token
        endpoints); ``--debug`` logs it with its secret fields redacted.
        """
        url = self.url(path)
        all_headers = dict(headers or {})
        if self.credentials is not None:
            all_headers["Authorization"] = self.credentials.authorization()
        retries = MAX_RETRIES if method.upper() in _IDEMPOTENT else 0
        attempt = 0
        while True:
            request = self._http.build_request(
                method, url, params=params, json=json_body, data=form, headers=all_headers
            )
            started = time.monotonic()
            try:
                self._log_request(request)
                response = self._http.send(request)
            except httpx.TransportError as exc:
                # Only failures before the server saw the request are retried: a
                # read timeout would retry a slow request for minutes.
                if attempt < retries and isinstance(exc, _RETRY_TRANSPORT_ERRORS):
                    attempt += 1
                    wait = 0.25 * 2 ** (attempt - 1)
                    log.info(
                        "%s %s failed (%s); retry %d in %.2g s", method, url, exc, attempt, wait
                    )
                    self._sleep(wait)
                    continue
                raise ServerUnreachable(self.server, str(exc) or type(exc).__name__) from None
            elapsed = (time.monotonic() - started) * 1000
            self._log_response(response, elapsed)
            if response.status_code in _RETRY_STATUSES and attempt < retries:
                attempt += 1
                asked = retry_after_seconds(response.headers.get("Retry-After"))
                wait = min(MAX_RETRY_WAIT, asked if asked is not None else 2.0 ** (attempt - 1))
                log.info(
                    "server answered %d; retry %d of %d in %.3g s",
                    response.status_code,
                    attempt,
                    retries,
                    wait,
                )
                self._sleep(wait)
                continue
            if response.status_code >= 400:
                raise RegistryError.from_response(response)
            return response

    def exchange(self, credentials: Credentials) -> str:
        """A refresh token for ``credentials`` from ``POST /oauth2/exchange``.

        A username of :data:`NULL_GUID` means the password is a refresh token,
        which the server trades for a fresh one (``grant_type=refresh_token``);
        anything else is a password grant. ``service`` is the host the client
        reaches, the tokens' audience.
        """
        form = {"service": self._base.netloc.decode("ascii")}
        if credentials.username == NULL_GUID:
            form |= {"grant_type": "refresh_token", "refresh_token": credentials.password}
        else:
            form |= {
                "grant_type": "password",
                "username": credentials.username,
                "password": credentials.password,
            }
        response = self.request("POST", "/oauth2/exchange", form=form)
        body = self._json(response)
        token = body.get("refresh_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(
                response.status_code,
                "POST",
                str(response.request.url),
                message="the server's answer to the token exchange has no refresh_token",
            )
        return token

    def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET a JSON document."""
        return self._json(self.request("GET", path, params=params))

    def delete(self, path: str) -> Any:
        """DELETE; the JSON body if the server sent one, else None."""
        return self._json(self.request("DELETE", path), optional=True)

    @staticmethod
    def _json(response: httpx.Response, *, optional: bool = False) -> Any:
        if optional and not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            if optional:
                return None
            raise RegistryError(
                response.status_code,
                response.request.method,
                str(response.request.url),
                message="the server's answer is not JSON; is --server a hamn server?",
            ) from None

    def list_all(
        self,
        path: str,
        key: str,
        *,
        top: int | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Every entry of ``key`` across pages (at most ``top``), following ``Link``;
        ``headers`` go with every page."""
        items: list[Any] = []
        query: dict[str, str | int] = {**(params or {})}
        remaining = top
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            if remaining is not None:
                if remaining <= 0:
                    break
                query["n"] = min(PAGE_SIZE, remaining)
            else:
                query.setdefault("n", PAGE_SIZE)
            response = self.request("GET", path, params=query, headers=headers)
            body = self._json(response)
            page = body.get(key) if isinstance(body, dict) else None
            if page is None:
                page = []
            if not isinstance(page, list):
                raise RegistryError(
                    response.status_code,
                    "GET",
                    str(response.request.url),
                    message=f"the server's answer has no list {key!r}",
                )
            items.extend(page)
            if remaining is not None:
                remaining -= len(page)
            link = next_link(response.headers.get("Link"))
            if not link or not page:
                break
            try:
                target = self.url(link)
            except ValueError as exc:
                raise RegistryError(
                    response.status_code,
                    "GET",
                    str(response.request.url),
                    message=f"the server's next-page link leaves the server ({exc}); "
                    "not following it",
                ) from None
            if str(target) in seen:
                break
            seen.add(str(target))
            path = target.copy_with(query=None).raw_path.decode()
            query = dict(target.params.multi_items())
        return items if top is None else items[:top]

    # ---------------------------------------------------------------- logging

    @staticmethod
    def _log_request(request: httpx.Request) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug("Request URL: %r", str(request.url))
        log.debug("Request method: %r", request.method)
        log.debug("Request headers:")
        for line in _redact_headers(request.headers):
            log.debug("%s", line)
        body = _redact_body(request.content, request.headers.get("content-type", ""))
        if body:
            log.debug("Request body:")
            log.debug("%s", body)

    @staticmethod
    def _log_response(response: httpx.Response, elapsed_ms: float) -> None:
        request = response.request
        log.info(
            "%s %s -> %d (%.0f ms)", request.method, request.url, response.status_code, elapsed_ms
        )
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug("Response status: %d", response.status_code)
        log.debug("Response headers:")
        for line in _redact_headers(response.headers):
            log.debug("%s", line)
        response.read()
        body = _redact_body(response.content, response.headers.get("content-type", ""))
        if body:
            log.debug("Response content:")
            log.debug("%s", body)
