"""Authentication at the HTTP edge: who is calling, may they, and the token endpoints.

* :meth:`RequestAuth.authorize` is the one check of every ``/v2/`` and ``/acr/v1/``
  request: what the request needs comes from ``policy.required_access``, what the
  caller holds from ``AuthService.actions`` (narrowed by a bearer token's ``access``),
  and ``policy.decide`` compares them.
  - Anonymous and not allowed: 401 with ``WWW-Authenticate: Bearer realm=...,
    service=...,scope=...`` (the Docker token flow).
  - A bearer token whose identity holds more than the token carries: 401 with
    ``error="insufficient_scope"``, so the client fetches a wider token.
  - Otherwise 403 ``DENIED`` with a sentence that says exactly what is missing and
    which roles grant it.
  - A registry that does not exist answers exactly as one the caller may not use.
* ``/oauth2/token`` (GET with Basic, POST with a form) and ``/oauth2/exchange`` issue
  tokens: the grant is the intersection of what is asked and what is held.
* Failed credential checks are counted per client address and per (address, username),
  in the database so the limit holds across every process of a deployment; past it
  every attempt is refused with 429 ``TOOMANYREQUESTS`` and
  ``Retry-After`` before any password is checked.

The ``service`` (a token's audience) is the host the client reached: the login server
when routing is by host, the server's address when it is by path.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hamn.auth import tokens
from hamn.auth.policy import (
    Action,
    ManagementPermission,
    Requirement,
    RouteKind,
    decide,
    grant_scope,
    management_permissions,
    narrow,
    required_access,
)
from hamn.auth.scopes import (
    CATALOG,
    REGISTRY,
    REPOSITORY,
    Scope,
    ScopeError,
    format_scopes,
    merge_scopes,
    parse_scopes,
)
from hamn.errors import (
    DENIED,
    NAME_INVALID,
    NAME_UNKNOWN,
    PARAMETER_INVALID,
    UNAUTHORIZED,
    UNSUPPORTED,
    HamnError,
)
from hamn.http.errors import mark_body_complete
from hamn.http.observability import describe_request
from hamn.services.auth import NULL_GUID, AuthService, IssuedToken
from hamn.services.identity import ANONYMOUS, Identity, IdentityKind
from hamn.services.registry import RegistryService, Target
from hamn.services.sign_in_limits import SharedSignInLimits

log = logging.getLogger("hamn.auth")

#: The largest token request form read (a few scopes and a refresh token fit easily).
MAX_FORM_BYTES = 64 * 1024
_NO_REGISTRY = "access denied: no registry that this identity may use answers at this address"
_BAD_CREDENTIALS = "authentication failed: the username or password is not valid"
_TOKEN_REFUSED = "the bearer token is invalid or has expired; get a new one from the token endpoint"  # noqa: S105


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling; ``access`` is a bearer token's claim (None without a token)."""

    identity: Identity
    access: tuple[Scope, ...] | None = None


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _decode_basic(value: str) -> tuple[str, str] | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = raw.partition(":")
    return (username, password) if sep else None


class RequestAuth:
    """Authenticates requests and authorises data-plane routes (see the module docstring)."""

    def __init__(
        self,
        auth: AuthService,
        registry: RegistryService,
        *,
        scheme: str,
        limits: SharedSignInLimits,
    ) -> None:
        self.auth = auth
        self.registry = registry
        self.scheme = scheme
        self.limits = limits

    # -- who is calling --------------------------------------------------------------------
    @staticmethod
    def service(request: Request) -> str:
        """The service name of this request: the host the client reached."""
        return request.headers.get("host") or "localhost"

    def challenge(self, request: Request, scope: str = "", error: str = "") -> str:
        """A ``WWW-Authenticate: Bearer`` value that points at this server's token endpoint."""
        host = self.service(request)
        value = (
            f'Bearer realm="{self.scheme}://{_quote(host)}/oauth2/token",service="{_quote(host)}"'
        )
        if scope:
            value += f',scope="{_quote(scope)}"'
        if error:
            value += f',error="{error}"'
        return value

    def unauthorized(
        self,
        request: Request,
        message: str,
        *,
        scope: str = "",
        error: str = "",
        detail: object = None,
    ) -> HamnError:
        """401 with the Bearer challenge (the token flow every client speaks)."""
        return HamnError(
            UNAUTHORIZED,
            message,
            detail=detail,
            headers={"WWW-Authenticate": self.challenge(request, scope, error)},
        )

    async def check_password(
        self, request: Request, username: str, password: str, version: int
    ) -> Identity:
        """Basic credentials to an identity, rate limited; 401 or 429 otherwise."""
        address = _client_address(request)
        await self.limits.check(address, username)
        identity = await self.auth.authenticate_basic(username, password, version)
        if identity is None:
            await self.limits.failed(address, username)
            log.info("failed sign-in for %r from %s", username[:100], address)
            raise self.unauthorized(request, _BAD_CREDENTIALS)
        return identity

    async def caller(self, request: Request, version: int) -> Caller:
        """The caller of a data-plane request: Basic, a bearer access token, or anonymous."""
        header = request.headers.get("authorization")
        if not header:
            return Caller(ANONYMOUS)
        kind, _, value = header.partition(" ")
        if kind.lower() == "basic":
            pair = _decode_basic(value)
            if pair is None:
                raise self.unauthorized(
                    request, "the Basic credentials are not base64 of user:password"
                )
            return Caller(await self.check_password(request, *pair, version))
        if kind.lower() == "bearer":
            try:
                claims = await self.auth.verify(
                    value.strip(), tokens.GrantType.ACCESS, audience=self.service(request)
                )
            except tokens.TokenError as exc:
                log.info("bearer token refused: %s", exc.reason)
                raise self.unauthorized(request, _TOKEN_REFUSED, error="invalid_token") from None
            identity = await self.auth.identity_for_subject(claims.subject, version)
            if identity is None:
                raise self.unauthorized(request, _TOKEN_REFUSED, error="invalid_token")
            return Caller(identity, claims.access)
        raise self.unauthorized(
            request, f"the {kind[:20]!r} authorization scheme is not supported; use Basic or Bearer"
        )

    async def identity(self, request: Request) -> Identity:
        """The caller of a management request: Basic, or a refresh token as Bearer.

        Anonymous callers get 401. Used by ``/api`` (and ``/metrics``).
        """
        version = await self.auth.version()
        header = request.headers.get("authorization")
        kind, _, value = (header or "").partition(" ")
        if kind.lower() == "bearer":
            identity = await self.auth.authenticate_basic(NULL_GUID, value.strip(), version)
            if identity is None:
                raise self.unauthorized(request, _TOKEN_REFUSED, error="invalid_token")
        else:
            identity = (await self.caller(request, version)).identity
        if identity.kind is IdentityKind.ANONYMOUS:
            raise self.unauthorized(
                request,
                "authentication required: sign in with 'hamn auth login' or send Basic credentials",
            )
        describe_request(identity=identity.name)
        return identity

    # -- may they ------------------------------------------------------------------------
    async def target(
        self, request: Request, name: str | None, *, registry: str | None = None
    ) -> Target | None:
        """Where ``name`` (None: the registry itself) routes, or None when no registry
        answers: the caller must then be answered as denied, so nothing leaks.

        ``registry`` names the registry outright (``/v2/<registry>/_catalog``)
        instead of routing by host or the default.
        """
        host = request.headers.get("host")
        try:
            if registry is not None:
                found = await self.registry.registry(registry)
                if found is None:
                    raise HamnError(
                        NAME_UNKNOWN,
                        f"registry {registry[:60]!r} does not exist",
                        detail={"registry": registry[:60]},
                    )
                return Target(found, "")
            if name is None:
                return Target(await self.registry.resolve_registry(host), "")
            return await self.registry.resolve(host, name)
        except HamnError as exc:
            if exc.code is NAME_UNKNOWN:
                # Said only to callers who may see every registry (see authorize).
                request.state.hamn_unknown_registry = exc
                return None
            raise

    async def authorize(
        self,
        request: Request,
        kind: RouteKind,
        name: str | None,
        target: Target | None,
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Allow the request or raise 401/403. ``name`` is the repository as addressed (it
        may begin with a registry name); ``target`` None means no registry answers here.

        Returns False when only the pull on ``mount_from`` is missing: the caller then
        starts a plain upload instead of mounting, as the OCI spec prefers to refusing.
        """
        version = await self.auth.version()
        caller = await self.caller(request, version)
        identity = caller.identity
        describe_request(identity=identity.name)
        if kind is RouteKind.BASE:  # any identity may log in; no registry is needed
            if identity.kind is IdentityKind.ANONYMOUS:
                raise self.unauthorized(request, "authentication required")
            return True
        required = required_access(request.method, kind, name, mount_from)
        info = None
        if target is not None:
            info = await self.auth.registry_settings(target.registry.name, version)
        if info is None or not (
            info.anonymous_pull_enabled or self.auth.knows_registry(identity, info)
        ):
            if identity.kind is IdentityKind.ANONYMOUS:
                raise self.unauthorized(
                    request, "authentication required", scope=_scope_text(required)
                )
            if ManagementPermission.READ in management_permissions(identity.assignments, None):
                # Whoever may see every registry learns nothing by hearing it is missing.
                unknown = getattr(request.state, "hamn_unknown_registry", None)
                raise unknown or HamnError(NAME_UNKNOWN, "no registry answers at this address")
            raise HamnError(DENIED, _NO_REGISTRY)
        assert target is not None
        full: dict[str | None, frozenset[Action]] = {}
        for requirement in required:
            resource = _resource(requirement)
            if resource in full:
                continue
            if resource is None:
                full[resource] = self.auth.actions(identity, info, None)
            elif resource == name:
                full[resource] = self.auth.actions(identity, info, target.repository)
            else:  # a mount's from=: only within the same registry
                origin = await self.registry.mount_source(request.headers.get("host"), resource)
                same = origin is not None and origin.registry.id == target.registry.id
                held = (
                    self.auth.actions(identity, info, origin.repository)
                    if origin and same
                    else frozenset()
                )
                full[resource] = held
        access = caller.access
        held_now = full if access is None else {r: narrow(a, access, r) for r, a in full.items()}
        decision = decide(lambda r: held_now.get(r, frozenset()), required)
        if decision.allowed:
            return True
        if mount_from is not None and all(_resource(m) == mount_from for m in decision.missing):
            return False
        if identity.kind is IdentityKind.ANONYMOUS:
            raise self.unauthorized(
                request,
                "authentication required",
                scope=decision.challenge_scope,
                detail=decision.detail(),
            )
        if access is not None and decide(lambda r: full.get(r, frozenset()), required).allowed:
            raise self.unauthorized(
                request,
                "the bearer token does not carry the access this request needs; get one for "
                + decision.challenge_scope,
                scope=decision.challenge_scope,
                error="insufficient_scope",
                detail=decision.detail(),
            )
        raise HamnError(DENIED, decision.message, detail=decision.detail())

    # -- token endpoints -------------------------------------------------------------------
    async def token_get(self, request: Request) -> Response:
        """``GET /oauth2/token?service=&scope=...``: Basic (or nothing) for an access token."""
        params = request.query_params
        service = self._check_service(request, params.get("service"))
        version = await self.auth.version()
        if request.headers.get("authorization", "").lower().startswith("bearer"):
            raise self.unauthorized(request, "the token endpoint takes Basic credentials")
        identity = (await self.caller(request, version)).identity
        scopes = _parse_scopes(params.getlist("scope"))
        offline = params.get("offline_token", "").lower() == "true"
        return await self._token_response(request, identity, service, scopes, version, offline)

    async def token_post(self, request: Request) -> Response:
        """``POST /oauth2/token``: ``grant_type=password|refresh_token`` in a form."""
        form = await _read_form(request)
        service = self._check_service(request, form.get("service"))
        version = await self.auth.version()
        identity, offline = await self._grant(request, form, version)
        scopes = _parse_scopes(form.get("scope", "").split())
        return await self._token_response(request, identity, service, scopes, version, offline)

    async def exchange(self, request: Request) -> Response:
        """``POST /oauth2/exchange``: credentials (or a refresh token) for a refresh token."""
        form = await _read_form(request)
        service = self._check_service(request, form.get("service"))
        version = await self.auth.version()
        identity, _ = await self._grant(request, form, version)
        refresh = await self._refresh(identity, service, version)
        return _json({"refresh_token": refresh.token, "expires_in": refresh.expires_in})

    async def _grant(
        self, request: Request, form: dict[str, str], version: int
    ) -> tuple[Identity, bool]:
        grant = form.get("grant_type", "")
        if grant == "password":
            identity = await self.check_password(
                request, form.get("username", ""), form.get("password", ""), version
            )
            return identity, True
        if grant in ("refresh_token", "access_token"):
            token = form.get(grant, "")
            if not token:
                raise self.unauthorized(request, _TOKEN_REFUSED)
            identity = await self.check_password(request, NULL_GUID, token, version)
            return identity, grant == "refresh_token" and form.get("access_type") == "offline"
        raise HamnError(
            UNSUPPORTED,
            f"grant_type {grant[:40]!r} is not supported; use password or refresh_token",
        )

    def _check_service(self, request: Request, service: str | None) -> str:
        mine = self.service(request)
        if service and service.lower() != mine.lower():
            raise HamnError(
                PARAMETER_INVALID,
                f"service {service[:100]!r} is not this registry service ({mine})",
                detail={"service": service[:100]},
            )
        return mine

    async def _refresh(self, identity: Identity, service: str, version: int) -> IssuedToken:
        # Callers hold an authenticated identity: _grant demands credentials, and the
        # token endpoint asks for one only for a signed-in caller.
        return await self.auth.issue(
            identity, tokens.GrantType.REFRESH, audience=service, registry="*", version=version
        )

    async def _token_response(
        self,
        request: Request,
        identity: Identity,
        service: str,
        scopes: tuple[Scope, ...],
        version: int,
        offline: bool,
    ) -> Response:
        granted = [g for s in scopes if (g := await self._grant_one(request, identity, s, version))]
        issued = await self.auth.issue(
            identity,
            tokens.GrantType.ACCESS,
            audience=service,
            registry="*",
            version=version,
            access=granted,
        )
        body: dict[str, object] = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if offline and identity.kind is not IdentityKind.ANONYMOUS:
            body["refresh_token"] = (await self._refresh(identity, service, version)).token
        return _json(body)

    async def _grant_one(
        self, request: Request, identity: Identity, scope: Scope, version: int
    ) -> Scope | None:
        host = request.headers.get("host")
        try:
            if scope.type == REGISTRY and scope.name == CATALOG:
                registry = await self.registry.resolve_registry(host)
                repository = None
            elif scope.type == REPOSITORY:
                target = await self.registry.resolve(host, scope.name)
                registry, repository = target.registry, target.repository
            else:
                return None
        except HamnError as exc:
            if exc.code in (NAME_UNKNOWN, NAME_INVALID):
                return None  # no such registry: grant nothing, say nothing
            raise
        info = await self.auth.registry_settings(registry.name, version)
        if info is None:
            return None
        return grant_scope(self.auth.actions(identity, info, repository), scope)

    # -- management ------------------------------------------------------------------------
    async def require_root_read(self, request: Request) -> Identity:
        """An identity with management READ at ``/`` (for ``/metrics``), or 401/403."""
        identity = await self.identity(request)
        if ManagementPermission.READ not in management_permissions(identity.assignments, None):
            raise HamnError(DENIED, "access denied: this needs Reader, Contributor or Owner at '/'")
        return identity


def _resource(requirement: Requirement) -> str | None:
    return requirement.name if requirement.type == REPOSITORY else None


def _scope_text(required: list[Requirement]) -> str:
    return format_scopes(merge_scopes(r.scope for r in required))


def _parse_scopes(values: list[str]) -> tuple[Scope, ...]:
    try:
        return parse_scopes(v for v in values if v)
    except ScopeError as exc:
        raise HamnError(PARAMETER_INVALID, exc.message, detail=exc.detail) from None


async def _read_form(request: Request) -> dict[str, str]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise HamnError(PARAMETER_INVALID, f"the form must be at most {MAX_FORM_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HamnError(PARAMETER_INVALID, f"the form must be at most {MAX_FORM_BYTES} bytes")
    mark_body_complete(request)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HamnError(
            PARAMETER_INVALID, "the body must be an application/x-www-form-urlencoded form"
        ) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form[key] = f"{form[key]} {value}" if key == "scope" and key in form else value
    return form


def _json(body: dict[str, object]) -> Response:
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
