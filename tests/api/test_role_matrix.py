"""Every built-in role at every scope against every action (issue 3 point 3, SPEC §2).

One user per (role, scope) is made through the management API; each then tries
every data-plane action (pull, push, delete, catalog, referrers, metadata read)
and every management action (show, list, update, role assignment) against the
registry ``local``. What is allowed is written out below from SPEC §2's table,
not computed from hamn's own policy code, so the test checks the code against
the specification.

Scopes: ``/``; ``/registries/local``; ``/registries/local/repositories/<repo>``
(the repository under test; another repository in the same registry must then be
untouchable); and ``/registries/<another registry>`` (nothing at all in ``local``).

Then: removing a role assignment denies the very next request, even one carrying a
bearer token issued before the removal.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_support import (
    OCI_MANIFEST,
    digest_of,
    encode,
    expect_status,
    image_manifest,
    push_blob,
    push_image,
    random_bytes,
    token_claims,
)

ROLES = (
    "Owner",
    "Contributor",
    "Reader",
    "AcrPush",
    "AcrPull",
    "AcrDelete",
    "AcrImageSigner",
    "AcrQuarantineReader",
    "AcrQuarantineWriter",
)
SCOPES = ("root", "registry", "repository", "other-registry")

# SPEC §2, data plane. "metadata" is ACR's /acr/v1 read (a pull-level right in ACR's
# non-ABAC roles; the quarantine writer reads the quarantine state it sets).
_DATA: dict[str, set[str]] = {
    "Owner": {"pull", "push", "delete", "catalog", "referrers", "metadata"},
    "Contributor": {"pull", "push", "delete", "catalog", "referrers", "metadata"},
    "Reader": {"pull", "catalog", "referrers", "metadata"},
    "AcrPush": {"pull", "push", "catalog", "referrers", "metadata"},
    "AcrPull": {"pull", "catalog", "referrers", "metadata"},
    "AcrDelete": {"delete"},
    "AcrImageSigner": set(),  # signatures only: an ordinary image push is refused
    "AcrQuarantineReader": set(),  # quarantined content only
    "AcrQuarantineWriter": {"metadata"},
}
# SPEC §2, management plane.
_MANAGEMENT: dict[str, set[str]] = {
    "Owner": {"show", "list", "update", "assign"},
    "Contributor": {"show", "list", "update"},
    "Reader": {"show", "list"},
}
DATA_ACTIONS = ("pull", "push", "delete", "catalog", "referrers", "metadata")
MANAGEMENT_ACTIONS = ("show", "list", "update", "assign")


def expected(role: str, scope: str, action: str, *, same_repository: bool = True) -> bool:
    """Whether SPEC §2 allows ``action`` to ``role`` assigned at ``scope``."""
    if scope == "other-registry":
        return False
    if action in MANAGEMENT_ACTIONS:
        # Management rights come from `/` and registry scope only; "list" shows the
        # registry to whoever may read it.
        return scope in ("root", "registry") and action in _MANAGEMENT.get(role, set())
    if scope == "repository" and (not same_repository or action == "catalog"):
        return False
    return action in _DATA[role]


@dataclass
class World:
    reg: Any
    owner: httpx.Client
    repo: str
    other_repo: str
    other_registry: str
    users: dict[tuple[str, str], tuple[str, str]]


def _api(client: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    r = client.request(method, path, **kw)
    assert r.status_code < 300, f"{method} {path} -> {r.status_code}: {r.text[:500]}"
    return r.json() if r.content else None


@pytest.fixture(scope="module")
def world(live_registry: Any) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    owner = httpx.Client(base_url=live_registry.url, auth=live_registry.auth, timeout=60)
    other_registry = f"matrix{tag}"
    _api(owner, "POST", "/api/registries", json={"name": other_registry, "sku": "Basic"})
    repo, other_repo = f"matrix-{tag}/target", f"matrix-{tag}/other"
    push_image(owner, repo)
    push_image(owner, other_repo)
    scope_text = {
        "root": "/",
        "registry": "/registries/local",
        "repository": f"/registries/local/repositories/{repo}",
        "other-registry": f"/registries/{other_registry}",
    }
    users: dict[tuple[str, str], tuple[str, str]] = {}
    for role, scope in itertools.product(ROLES, SCOPES):
        name, password = f"m-{tag}-{role.lower()}-{scope}", f"pw-{uuid.uuid4().hex}"
        _api(owner, "POST", "/api/users", json={"name": name, "password": password})
        _api(
            owner,
            "POST",
            "/api/roleAssignments",
            json={"role": role, "assignee": name, "scope": scope_text[scope]},
        )
        users[(role, scope)] = (name, password)
    yield World(live_registry, owner, repo, other_repo, other_registry, users)
    owner.close()


def _try(world: World, client: httpx.Client, action: str, repo: str) -> bool:
    """Attempt ``action`` on ``repo``; True if allowed, False if refused (401/403)."""
    owner = world.owner
    if action == "pull":
        r = client.get(f"/v2/{repo}/manifests/latest")
    elif action == "referrers":
        r = client.get(f"/v2/{repo}/referrers/sha256:{'0' * 64}")
    elif action == "metadata":
        r = client.get(f"/acr/v1/{repo}/_tags")
    elif action == "catalog":
        r = client.get("/v2/_catalog")
    elif action == "push":
        config = encode({"nonce": uuid.uuid4().hex})
        layer = random_bytes(64)
        r = client.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": digest_of(config)},
            content=config,
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code == 201:
            push_blob(owner, repo, layer)  # the layer, by the owner: only the manifest is tested
            body = encode(image_manifest(config, (layer,)))
            r = client.put(
                f"/v2/{repo}/manifests/{uuid.uuid4().hex[:10]}",
                content=body,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert r.status_code in (201, 401, 403), r.text
    elif action == "delete":
        victim = push_image(owner, repo, tag=None)
        r = client.delete(f"/v2/{repo}/manifests/{victim.digest}")
    else:
        raise AssertionError(action)
    assert r.status_code not in (400, 404, 500), f"{action} {repo}: {r.status_code} {r.text[:300]}"
    if r.status_code in (401, 403):
        if r.status_code == 403:
            assert r.json()["errors"][0]["code"] == "DENIED"
            message = r.json()["errors"][0]["message"]
            # What is missing is said to whoever holds something in the registry;
            # to anyone else the registry looks as if it did not exist.
            assert "not granted" in message or "no registry that this identity" in message
        return False
    return True


def _try_management(world: World, client: httpx.Client, action: str) -> bool:
    if action == "show":
        r = client.get("/api/registries/local")
        return r.status_code == 200
    if action == "list":
        r = client.get("/api/registries")
        assert r.status_code == 200, r.text
        return "local" in [x["name"] for x in r.json()["value"]]
    if action == "update":
        r = client.patch("/api/registries/local", json={"adminUserEnabled": False})
        return r.status_code == 200
    if action == "assign":
        r = client.post(
            "/api/roleAssignments",
            json={
                "role": "AcrPull",
                "assignee": world.users[("AcrPull", "root")][0],
                "scope": "/registries/local",
            },
        )
        if r.status_code == 201:
            _api(world.owner, "DELETE", f"/api/roleAssignments/{r.json()['id']}")
            return True
        return False
    raise AssertionError(action)


@pytest.mark.parametrize(("role", "scope"), list(itertools.product(ROLES, SCOPES)))
def test_role_at_scope_allows_exactly_what_the_table_says(
    world: World, role: str, scope: str
) -> None:
    name, password = world.users[(role, scope)]
    outcome: dict[str, bool] = {}
    want: dict[str, bool] = {}
    with httpx.Client(base_url=world.reg.url, auth=(name, password), timeout=60) as client:
        expect_status(client.get("/v2/"), 200)  # every identity can log in
        for action in DATA_ACTIONS:
            outcome[action] = _try(world, client, action, world.repo)
            want[action] = expected(role, scope, action)
            if action != "catalog":
                key = f"{action} (another repository)"
                outcome[key] = _try(world, client, action, world.other_repo)
                want[key] = expected(role, scope, action, same_repository=scope != "repository")
        for action in MANAGEMENT_ACTIONS:
            outcome[action] = _try_management(world, client, action)
            want[action] = expected(role, scope, action)
    wrong = {a: outcome[a] for a in outcome if outcome[a] != want[a]}
    assert not wrong, f"{role} at {scope}: got {wrong}, want the opposite"


def test_the_token_server_grants_the_intersection(world: World) -> None:
    name, password = world.users[("AcrPull", "registry")]
    with httpx.Client(base_url=world.reg.url, timeout=60) as c:
        r = c.get(
            "/oauth2/token",
            params=[
                ("service", world.reg.host),
                ("scope", f"repository:{world.repo}:pull,push,delete"),
                ("scope", "registry:catalog:*"),
                ("scope", f"repository:{world.other_registry}/x:pull"),
            ],
            auth=(name, password),
        )
        expect_status(r, 200)
        token = r.json()["token"]
        access = token_claims(token)["access"]
        assert access == [
            {"type": "repository", "name": world.repo, "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]
        # Asking for push did not give push: the push is refused with what is missing.
        push = c.post(
            f"/v2/{world.repo}/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}
        )
        assert push.status_code == 403, push.text
        message = push.json()["errors"][0]["message"]
        assert "push on repository" in message and "AcrPush" in message


def test_someone_with_only_acrpull_cannot_see_the_registry_but_can_pull(world: World) -> None:
    name, password = world.users[("AcrPull", "registry")]
    with httpx.Client(base_url=world.reg.url, auth=(name, password), timeout=60) as c:
        shown = c.get("/api/registries/local")
        missing = c.get("/api/registries/nosuchregistry")
        assert shown.status_code == missing.status_code == 404
        assert shown.json()["errors"][0]["code"] == missing.json()["errors"][0]["code"]
        assert c.get("/api/registries").json()["value"] == []
        expect_status(c.get(f"/v2/{world.repo}/manifests/latest"), 200)
        # On the data plane too: a registry it cannot use and one that does not exist
        # answer alike.
        hidden = c.get(f"/v2/{world.other_registry}/_catalog")
        absent = c.get("/v2/nosuchregistry/_catalog")
        assert hidden.status_code == absent.status_code == 403
        assert hidden.json() == absent.json()
        assert hidden.json()["errors"][0]["code"] == "DENIED"


def test_removing_a_role_denies_the_very_next_request_even_with_an_old_token(
    world: World,
) -> None:
    owner = world.owner
    name, password = f"revoke-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    _api(owner, "POST", "/api/users", json={"name": name, "password": password})
    assignment = _api(
        owner,
        "POST",
        "/api/roleAssignments",
        json={"role": "AcrPush", "assignee": name, "scope": "/registries/local"},
    )
    with httpx.Client(base_url=world.reg.url, timeout=60) as c:
        r = c.get(
            "/oauth2/token",
            params={"service": world.reg.host, "scope": f"repository:{world.repo}:pull,push"},
            auth=(name, password),
        )
        token = r.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        expect_status(c.get(f"/v2/{world.repo}/manifests/latest", headers=headers), 200)
        expect_status(c.get(f"/v2/{world.repo}/manifests/latest", auth=(name, password)), 200)
        _api(owner, "DELETE", f"/api/roleAssignments/{assignment['id']}")
        # No wait, no retry: the very next requests are refused.
        after = c.get(f"/v2/{world.repo}/manifests/latest", headers=headers)
        assert after.status_code == 403, after.text
        basic = c.get(f"/v2/{world.repo}/manifests/latest", auth=(name, password))
        assert basic.status_code == 403, basic.text
        up = c.post(f"/v2/{world.repo}/blobs/uploads/", headers=headers)
        assert up.status_code == 403, up.text
