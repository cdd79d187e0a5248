"""Token authentication over HTTP (SPEC §4.1, issue 3 points 4 and 8), as clients see it.

The challenge, the token endpoint (GET with Basic, POST with a form), the exchange,
Basic straight on ``/v2/``; and the bad input of point 8: wrong and empty passwords,
forged and misdirected tokens, brute force, unknown registries. Identities other than
the bootstrap owner are made through the management API in test_role_matrix.py.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from api_support import expect_error, expect_status, push_image, token_claims, unique_repo
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NULL_GUID = "00000000-0000-0000-0000-000000000000"
_CHALLENGE = re.compile(
    r'^Bearer realm="(?P<realm>[^"]+)",service="(?P<service>[^"]+)"(?P<rest>.*)$'
)


def challenge(resp: httpx.Response) -> dict[str, str]:
    """The parts of a ``WWW-Authenticate: Bearer`` header."""
    value = resp.headers.get("WWW-Authenticate", "")
    m = _CHALLENGE.match(value)
    assert m, f"not a Bearer challenge: {value!r}"
    parts = {"realm": m["realm"], "service": m["service"]}
    for key, val in re.findall(r',(\w+)="([^"]*)"', m["rest"]):
        parts[key] = val
    return parts


def anonymous(reg: Any, **kw: Any) -> httpx.Client:
    return httpx.Client(base_url=reg.url, timeout=30, **kw)


def token_for(reg: Any, *scopes: str, auth: Any = None, host: str | None = None) -> str:
    params = [("service", host or reg.host)] + [("scope", s) for s in scopes]
    headers = {"Host": host} if host else {}
    with anonymous(reg) as c:
        r = c.get("/oauth2/token", params=params, auth=auth or reg.auth, headers=headers)
    expect_status(r, 200)
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] >= 60
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body["issued_at"])
    return str(body["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def image(live_registry: Any) -> Any:
    with httpx.Client(base_url=live_registry.url, auth=live_registry.auth, timeout=30) as c:
        return push_image(c, unique_repo("auth"))


# -- the challenge -------------------------------------------------------------------


def test_base_without_credentials_is_challenged(live_registry: Any) -> None:
    with anonymous(live_registry) as c:
        r = c.get("/v2/")
    expect_error(r, 401, "UNAUTHORIZED")
    parts = challenge(r)
    assert parts["realm"] == f"http://{live_registry.host}/oauth2/token"
    assert parts["service"] == live_registry.host
    assert "scope" not in parts


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v2/{repo}/manifests/latest", "repository:{repo}:pull"),
        ("HEAD", "/v2/{repo}/manifests/latest", "repository:{repo}:pull"),
        ("GET", "/v2/{repo}/blobs/sha256:" + "0" * 64, "repository:{repo}:pull"),
        ("GET", "/v2/{repo}/tags/list", "repository:{repo}:pull"),
        ("POST", "/v2/{repo}/blobs/uploads/", "repository:{repo}:pull,push"),
        ("PUT", "/v2/{repo}/manifests/v1", "repository:{repo}:pull,push"),
        ("DELETE", "/v2/{repo}/manifests/sha256:" + "0" * 64, "repository:{repo}:delete"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
        ("GET", "/acr/v1/{repo}/_tags", "repository:{repo}:metadata_read"),
        ("GET", "/acr/v1/_catalog", "registry:catalog:*"),
    ],
)
def test_every_route_challenges_with_the_scope_it_needs(
    live_registry: Any, image: Any, method: str, path: str, scope: str
) -> None:
    with anonymous(live_registry) as c:
        r = c.request(method, path.format(repo=image.repo))
    expect_error(r, 401, "UNAUTHORIZED")
    assert challenge(r)["scope"] == scope.format(repo=image.repo)


def test_anonymous_pull_of_a_real_image_is_refused_without_leaking(
    live_registry: Any, image: Any
) -> None:
    with anonymous(live_registry) as c:
        exists = c.get(f"/v2/{image.repo}/manifests/latest")
        missing = c.get(f"/v2/{unique_repo('nope')}/manifests/latest")
    for r in (exists, missing):
        expect_error(r, 401, "UNAUTHORIZED")
    assert exists.json()["errors"][0]["message"] == missing.json()["errors"][0]["message"]


# -- Basic and the token flow ---------------------------------------------------------


def test_basic_works_straight_on_v2(live_registry: Any, image: Any) -> None:
    with anonymous(live_registry, auth=live_registry.auth) as c:
        expect_status(c.get("/v2/"), 200)
        r = c.get(f"/v2/{image.repo}/manifests/latest")
    expect_status(r, 200)
    assert r.content == image.manifest


def test_token_flow_grants_exactly_the_asked_repository(live_registry: Any, image: Any) -> None:
    token = token_for(live_registry, f"repository:{image.repo}:pull")
    access = token_claims(token)["access"]
    assert access == [{"type": "repository", "name": image.repo, "actions": ["pull"]}]
    with anonymous(live_registry) as c:
        expect_status(c.get(f"/v2/{image.repo}/manifests/latest", headers=bearer(token)), 200)
        # The owner may push, but this token does not carry push: fetch a wider one.
        r = c.post(f"/v2/{image.repo}/blobs/uploads/", headers=bearer(token))
        expect_error(r, 401, "UNAUTHORIZED")
        parts = challenge(r)
        assert parts["error"] == "insufficient_scope"
        assert parts["scope"] == f"repository:{image.repo}:pull,push"
        # Nor another repository.
        other = c.get(f"/v2/{unique_repo()}/tags/list", headers=bearer(token))
        expect_error(other, 401, "UNAUTHORIZED")


def test_token_post_password_and_refresh_grants_and_the_exchange(
    live_registry: Any, image: Any
) -> None:
    scope = f"repository:{image.repo}:pull"
    with anonymous(live_registry) as c:
        r = c.post(
            "/oauth2/token",
            data={
                "grant_type": "password",
                "username": live_registry.username,
                "password": live_registry.password,
                "service": live_registry.host,
                "scope": scope,
            },
        )
        expect_status(r, 200)
        body = r.json()
        assert body["refresh_token"] and body["access_token"]
        assert r.headers["Cache-Control"] == "no-store"
        r2 = c.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "service": live_registry.host,
                "scope": scope,
            },
        )
        expect_status(r2, 200)
        access = r2.json()["access_token"]
        expect_status(c.get(f"/v2/{image.repo}/manifests/latest", headers=bearer(access)), 200)
        ex = c.post(
            "/oauth2/exchange",
            data={
                "grant_type": "password",
                "username": live_registry.username,
                "password": live_registry.password,
                "service": live_registry.host,
            },
        )
        expect_status(ex, 200)
        refresh = ex.json()["refresh_token"]
        assert token_claims(refresh)["grant_type"] == "refresh_token"
        # docker and ACR: a refresh token is a password under the null GUID.
        r3 = c.get(f"/v2/{image.repo}/manifests/latest", auth=(NULL_GUID, refresh))
        expect_status(r3, 200)
        token = token_for(live_registry, scope, auth=(NULL_GUID, refresh))
        expect_status(c.get(f"/v2/{image.repo}/tags/list", headers=bearer(token)), 200)
        # A refresh token is not an access token.
        expect_error(c.get("/v2/", headers=bearer(refresh)), 401, "UNAUTHORIZED")


def test_unsupported_grants_and_bad_forms_are_clear_errors(live_registry: Any) -> None:
    with anonymous(live_registry) as c:
        r = c.post("/oauth2/token", data={"grant_type": "client_credentials"})
        expect_error(r, 405, "UNSUPPORTED")
        assert "password or refresh_token" in r.json()["errors"][0]["message"]
        r = c.post("/oauth2/token", data={"grant_type": "refresh_token"})
        expect_error(r, 401, "UNAUTHORIZED")
        big = c.post("/oauth2/token", content=b"a=" + b"x" * 70_000)
        expect_error(big, 400, "PARAMETER_INVALID")
        bad_scope = c.get("/oauth2/token", params={"scope": "no-colons-here"})
        expect_error(bad_scope, 400, "PARAMETER_INVALID")


def test_token_for_another_service_is_refused(live_registry: Any, image: Any) -> None:
    with anonymous(live_registry) as c:
        r = c.get(
            "/oauth2/token",
            params={"service": "elsewhere.example:443", "scope": f"repository:{image.repo}:pull"},
            auth=live_registry.auth,
        )
        expect_error(r, 400, "PARAMETER_INVALID")
        # A token issued to this address is refused when shown at another name of it.
        token = token_for(live_registry, f"repository:{image.repo}:pull")
        port = live_registry.host.rsplit(":", 1)[1]
        moved = c.get(
            f"/v2/{image.repo}/manifests/latest",
            headers={**bearer(token), "Host": f"local.localhost:{port}"},
        )
        expect_error(moved, 401, "UNAUTHORIZED")
        assert challenge(moved)["error"] == "invalid_token"


# -- bad credentials -------------------------------------------------------------------


def test_wrong_empty_and_unknown_credentials_get_one_answer(live_registry: Any) -> None:
    user = live_registry.username
    cases = [(user, "wrong-password"), (user, ""), (f"nobody-{uuid.uuid4().hex}", "x" * 20)]
    messages = set()
    with anonymous(live_registry) as c:
        for creds in cases:
            r = c.get("/v2/", auth=creds)
            expect_error(r, 401, "UNAUTHORIZED")
            messages.add(r.json()["errors"][0]["message"])
            t = c.get("/oauth2/token", params={"service": live_registry.host}, auth=creds)
            expect_error(t, 401, "UNAUTHORIZED")
        for header in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Digest x"):
            expect_error(c.get("/v2/", headers={"Authorization": header}), 401, "UNAUTHORIZED")
    assert len(messages) == 1, messages


def _forge(header: dict[str, Any], payload: dict[str, Any], sign: Any) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    head = f"{part(header)}.{part(payload)}"
    return f"{head}.{sign(head.encode())}"


def test_forged_tokens_are_refused(live_registry: Any, image: Any) -> None:
    real = token_for(live_registry, f"repository:{image.repo}:pull,push,delete")
    head = jwt.get_unverified_header(real)
    body = token_claims(real)
    wide = {**body, "access": [{"type": "repository", "name": "*", "actions": ["*"]}]}
    own_key = Ed25519PrivateKey.generate()
    forged = [
        # Signed by another key under the server's key id.
        jwt.encode(wide, own_key, algorithm="EdDSA", headers={"kid": head["kid"]}),
        # alg none, no signature.
        _forge({"alg": "none", "typ": "JWT", "kid": head["kid"]}, wide, lambda _: ""),
        # HMAC keyed with something public (algorithm confusion).
        jwt.encode(
            wide,
            "a-secret-from-nowhere-32-bytes-long",
            algorithm="HS256",
            headers={"kid": head["kid"]},
        ),
        # The real token's signature on a changed payload.
        ".".join(
            [real.split(".")[0], _forge({}, wide, lambda _: "").split(".")[1], real.split(".")[2]]
        ),
        # Expired, well-formed but unsigned by us.
        jwt.encode({**body, "exp": int(time.time()) - 3600}, own_key, algorithm="EdDSA"),
        "not-a-token",
        "a.b.c",
    ]
    with anonymous(live_registry) as c:
        for token in forged:
            r = c.get(f"/v2/{image.repo}/manifests/latest", headers=bearer(token))
            expect_error(r, 401, "UNAUTHORIZED")
            assert challenge(r).get("error") == "invalid_token"


@pytest.fixture
def shipped_limits(tmp_path: Path, pytestconfig: pytest.Config) -> Any:
    """A server with the sign-in limits as shipped (10 a minute per address and user)."""
    root = pytestconfig.pluginmanager.get_plugin(str(Path(__file__).parent.parent / "conftest.py"))
    env = {"HAMN_AUTH_FAILURES_PER_USER": "10", "HAMN_AUTH_FAILURES_PER_ADDRESS": "100"}
    reg = root.start_hamn(tmp_path / "data", env=env)
    yield reg
    root.stop_hamn(reg)


def test_brute_force_on_the_token_endpoint_is_rate_limited(shipped_limits: Any) -> None:
    live_registry = shipped_limits
    victim = live_registry.username
    with anonymous(live_registry) as c:
        statuses = []
        for i in range(12):
            r = c.get(
                "/oauth2/token", params={"service": live_registry.host}, auth=(victim, f"guess-{i}")
            )
            statuses.append(r.status_code)
        assert statuses[:10] == [401] * 10, statuses
        assert statuses[10:] == [429, 429], statuses
        expect_error(r, 429, "TOOMANYREQUESTS")
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # Basic on /v2/ counts the same way; even the right password is refused now,
        # so a guess cannot be confirmed while the lock lasts.
        expect_error(c.get("/v2/", auth=(victim, "another")), 429, "TOOMANYREQUESTS")
        expect_error(c.get("/v2/", auth=live_registry.auth), 429, "TOOMANYREQUESTS")
        # Another user from the same address is not locked out.
        other = c.get("/v2/", auth=(f"nobody-{uuid.uuid4().hex[:6]}", "x" * 16))
        expect_error(other, 401, "UNAUTHORIZED")


def test_the_sign_in_limit_holds_across_servers_on_one_database(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """Failures counted by one server lock the user out on another: the limit is the
    deployment's, not each process's (two servers, two workers each, one database)."""
    root = pytestconfig.pluginmanager.get_plugin(str(Path(__file__).parent.parent / "conftest.py"))
    env = {
        "HAMN_AUTH_FAILURES_PER_USER": "10",
        "HAMN_AUTH_FAILURES_PER_ADDRESS": "100",
        "HAMN_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
    }
    one = root.start_hamn(tmp_path / "one", env=env)
    key = (tmp_path / "one" / "server.key").read_text().strip()
    two = root.start_hamn(tmp_path / "two", env={**env, "HAMN_SECRET_KEY": key})
    try:
        statuses = []
        for i in range(10):
            reg = (one, two)[i % 2]
            with anonymous(reg) as c:
                statuses.append(c.get("/v2/", auth=(one.username, f"guess-{i}")).status_code)
        assert statuses == [401] * 10, statuses
        for reg in (one, two):
            with anonymous(reg) as c:
                expect_error(c.get("/v2/", auth=one.auth), 429, "TOOMANYREQUESTS")
    finally:
        root.stop_hamn(two)
        root.stop_hamn(one)


def test_metrics_need_a_reader_at_root(live_registry: Any) -> None:
    with anonymous(live_registry) as c:
        expect_error(c.get("/metrics"), 401, "UNAUTHORIZED")
        r = c.get("/metrics", auth=live_registry.auth)
    expect_status(r, 200)
    assert "hamn_http_requests_total" in r.text


def test_no_secret_reaches_the_log(live_registry: Any, image: Any) -> None:
    token = token_for(live_registry, f"repository:{image.repo}:pull")
    with anonymous(live_registry) as c:
        c.get("/v2/", auth=(live_registry.username, "a-wrong-password-xyz"))
        c.get(f"/v2/{image.repo}/manifests/latest", headers=bearer(token))
    log = live_registry.log()
    for secret in (live_registry.password, "a-wrong-password-xyz", token, token.split(".")[2]):
        assert secret not in log


# -- registries that do not exist ------------------------------------------------------


@pytest.fixture
def no_default_registry(tmp_path: Path, pytestconfig: pytest.Config) -> Any:
    root = pytestconfig.pluginmanager.get_plugin(str(Path(__file__).parent.parent / "conftest.py"))
    reg = root.start_hamn(tmp_path / "data", env={"HAMN_DEFAULT_REGISTRY": ""})
    yield reg
    root.stop_hamn(reg)


def test_unknown_registries_answer_like_denied_ones(no_default_registry: Any) -> None:
    reg = no_default_registry
    port = reg.host.rsplit(":", 1)[1]
    with anonymous(reg) as c:
        r = c.get("/v2/nosuchregistry/app/manifests/latest")
        expect_error(r, 401, "UNAUTHORIZED")
        assert challenge(r)["scope"] == "repository:nosuchregistry/app:pull"
        r = c.get("/v2/_catalog", headers={"Host": f"nosuchregistry.localhost:{port}"})
        expect_error(r, 401, "UNAUTHORIZED")
        # Logging in needs no registry.
        expect_status(c.get("/v2/", auth=reg.auth), 200)
        # The owner may see every registry, so it is told the truth.
        r = c.get("/v2/nosuchregistry/app/tags/list", auth=reg.auth)
        expect_error(r, 404, "NAME_UNKNOWN")
        t = c.get(
            "/oauth2/token",
            params={"service": reg.host, "scope": "repository:nosuchregistry/app:pull"},
            auth=reg.auth,
        )
        expect_status(t, 200)
        assert token_claims(t.json()["token"])["access"] == []
