"""The management API over real HTTP against a live ``hamn serve``, authenticated as the
bootstrap owner and as users it creates: the flows, who may do what, bad input and
concurrent creates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

LiveRegistry = Any


def name(prefix: str = "r") -> str:
    """A registry name no other test uses (5-50 letters and digits)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


@pytest.fixture
def user(client: httpx.Client, live_registry: LiveRegistry) -> Iterator[Any]:
    """Make users holding roles; returns a function (role, scope) -> client as that user."""
    made: list[tuple[str, httpx.Client]] = []

    def make(role: str | None = None, scope: str = "/") -> httpx.Client:
        username, password = f"u-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
        r = client.post("/api/users", json={"name": username, "password": password})
        assert r.status_code == 201, r.text
        if role:
            r = client.post(
                "/api/roleAssignments", json={"role": role, "assignee": username, "scope": scope}
            )
            assert r.status_code == 201, r.text
        c = httpx.Client(base_url=live_registry.url, auth=(username, password), timeout=30)
        made.append((username, c))
        return c

    yield make
    for username, c in made:
        c.close()
        client.delete(f"/api/users/{username}")


def test_registry_credentials_and_tokens_flow(
    client: httpx.Client, live_registry: LiveRegistry
) -> None:
    reg = name()
    r = client.post(
        "/api/registries", json={"name": reg, "sku": "Standard", "adminUserEnabled": True}
    )
    assert r.status_code == 201, r.text
    assert r.json()["loginServer"].startswith(reg.lower() + ".")
    assert reg in [x["name"] for x in client.get("/api/registries").json()["value"]]
    creds = client.post(f"/api/registries/{reg}/listCredentials").json()
    password = creds["passwords"][0]["value"]

    # The admin user reaches the data plane with the password shown, and never /api.
    with httpx.Client(base_url=live_registry.url, auth=(reg, password), timeout=30) as admin:
        assert admin.get(f"/v2/{reg}/nothing/tags/list").status_code in (200, 404)
        r = admin.get("/api/registries")
        assert (r.status_code, code(r)) == (403, "DENIED")

    base = f"/api/registries/{reg}"
    scope_map = {"name": "pullers", "actions": ["repositories/app/content/read"]}
    assert client.post(f"{base}/scopeMaps", json=scope_map).status_code == 201
    r = client.post(f"{base}/tokens", json={"name": "ci-token", "scopeMap": "pullers"})
    assert r.status_code == 201
    token_password = r.json()["credentials"]["passwords"][0]["value"]
    with httpx.Client(
        base_url=live_registry.url, auth=("ci-token", token_password), timeout=30
    ) as tok:
        r = tok.get("/api/me")
        assert r.status_code in (401, 403)  # a token is never a management identity

    r = client.delete(f"{base}/scopeMaps/pullers")
    assert (r.status_code, code(r)) == (409, "IN_USE") and "ci-token" in r.text
    usage = {u["name"]: u for u in client.get(f"{base}/usages").json()["value"]}
    assert usage["Tokens"]["currentValue"] == 1 and usage["Size"]["limit"] == 100 * 1024**3

    client.patch(base, json={"adminUserEnabled": False})
    r = client.post(f"{base}/listCredentials")
    assert (r.status_code, code(r)) == (409, "ADMIN_DISABLED")
    assert f"hamn update -n {reg} --admin-enabled true" in r.text
    assert client.delete(base).status_code == 204
    assert client.get(base).status_code == 404


def test_anonymous_callers_are_challenged(live_registry: LiveRegistry) -> None:
    r = httpx.get(f"{live_registry.url}/api/registries")
    assert (r.status_code, code(r)) == (401, "UNAUTHORIZED")
    assert "www-authenticate" in r.headers
    assert httpx.get(f"{live_registry.url}/api/openapi.json").status_code == 200


def test_roles_decide_what_users_see_and_do(
    client: httpx.Client, user: Any, live_registry: LiveRegistry
) -> None:
    mine, other = name(), name()
    for reg in (mine, other):
        assert client.post("/api/registries", json={"name": reg, "sku": "Basic"}).status_code == 201
    scope = f"/registries/{mine}"

    contributor = user("Contributor")
    assert (
        contributor.post("/api/registries", json={"name": name(), "sku": "Basic"}).status_code
        == 201
    )
    r = contributor.post(
        "/api/roleAssignments", json={"role": "Reader", "assignee": "x", "scope": "/"}
    )
    assert (r.status_code, code(r)) == (403, "DENIED")

    reader = user("Reader", scope)
    assert [x["name"] for x in reader.get("/api/registries").json()["value"]] == [mine]
    assert reader.get(f"/api/registries/{mine}/usages").status_code == 200
    r = reader.patch(f"/api/registries/{mine}", json={"sku": "Premium"})
    assert (r.status_code, code(r)) == (403, "DENIED")
    assert reader.get(f"/api/registries/{other}").status_code == 404

    puller = user("AcrPull", scope)
    assert puller.get("/api/registries").json() == {"value": []}
    r = puller.get(f"/api/registries/{mine}")
    assert (r.status_code, code(r)) == (404, "NOT_FOUND")

    owner = user("Owner", scope)
    assignment = {"role": "AcrPush", "assignee": live_registry.username, "scope": scope}
    r = owner.post("/api/roleAssignments", json=assignment)
    assert r.status_code == 201, r.text
    assert owner.delete(f"/api/roleAssignments/{r.json()['id']}").status_code == 204
    r = owner.post("/api/roleAssignments", json={"role": "AcrPush", "assignee": "x", "scope": "/"})
    assert (r.status_code, code(r)) == (403, "DENIED")

    # A user changes its own password, and nothing else about itself.
    me = user()
    whoami = me.get("/api/me").json()["name"]
    assert (
        me.patch(f"/api/users/{whoami}", json={"password": "a-brand-new-password"}).status_code
        == 200
    )
    with httpx.Client(base_url=str(me.base_url), auth=(whoami, "a-brand-new-password")) as again:
        assert again.get("/api/me").status_code == 200
        assert again.patch(f"/api/users/{whoami}", json={"disabled": True}).status_code == 403


def test_bad_input_never_fails_the_server(client: httpx.Client) -> None:
    cases: list[tuple[str, bytes]] = [
        ("/api/registries", b'{"name": "abcde", "sku": '),
        ("/api/registries", b'{"name": "abcdef", "sku": "Basic", "extra": 1}'),
        ("/api/registries", b'{"name": true, "sku": "Basic"}'),
        ("/api/users", b'{"name": "someone", "password": "short"}'),
        ("/api/roleAssignments", b'{"role": "Overlord", "assignee": "x", "scope": "/"}'),
        ("/api/registries", b"{" + b" " * (65 * 1024) + b"}"),
    ]
    for path, body in cases:
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.text)
        assert code(r) == "BODY_INVALID", r.text
    r = client.post("/api/registries", json={"name": "no", "sku": "Basic"})
    assert (r.status_code, code(r)) == (400, "NAME_INVALID")


def test_concurrent_creates_of_one_name(client: httpx.Client, live_registry: LiveRegistry) -> None:
    reg = name("race")
    auth = live_registry.auth

    def create(spelling: str) -> int:
        with httpx.Client(base_url=live_registry.url, auth=auth, timeout=30) as c:
            return c.post("/api/registries", json={"name": spelling, "sku": "Basic"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(create, [reg, reg.upper()] * 4))
    assert sorted(statuses) == [201] + [409] * 7
