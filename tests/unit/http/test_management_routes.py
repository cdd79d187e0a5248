"""The /api routes in-process (Starlette's TestClient) over a real management service:
every endpoint's success path and shape, body validation (malformed, unknown keys, wrong
types, oversize), who may call, JSON 404/405, and the OpenAPI document."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
from management_world import ADMIN, ANONYMOUS, TOKEN, World, run

from hamn.errors import HamnError
from hamn.http.errors import handle_exception
from hamn.http.management import ManagementApi
from hamn.services.identity import Identity


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    """A client whose ``X-Caller`` header picks the identity the authenticator returns."""
    world = World(tmp_path)
    callers: dict[str, Identity] = {
        "admin": ADMIN,
        "token": TOKEN,
        "anonymous": ANONYMOUS,
        "owner": run(world.principal("owner", ("Owner", "/"))),
        "reader": run(world.principal("reader", ("Reader", "/"))),
        "puller": run(world.principal("puller", ("AcrPull", "/"))),
    }

    async def authenticate(request: Request) -> Identity:
        return callers[request.headers.get("x-caller", "owner")]

    app = Starlette(
        routes=ManagementApi(world.services, authenticate).routes(),
        exception_handlers={HamnError: handle_exception, Exception: handle_exception},
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    world.close()


def code(response: Any) -> str:
    return str(response.json()["errors"][0]["code"])


def as_(caller: str) -> dict[str, str]:
    return {"x-caller": caller}


def test_every_endpoint_answers_in_acr_shapes(api: TestClient) -> None:
    r = api.get("/api/me")
    assert r.status_code == 200 and r.json()["name"] == "owner" and r.json()["kind"] == "user"

    r = api.post(
        "/api/registries", json={"name": "Shapes1", "sku": "standard", "adminUserEnabled": True}
    )
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["id"] == "/registries/Shapes1" and reg["sku"] == {
        "name": "Standard",
        "tier": "Standard",
    }
    assert (
        reg["loginServer"] == "shapes1.example.test"
        and reg["type"] == "Microsoft.ContainerRegistry/registries"
    )
    assert reg["policies"]["trustPolicy"] == {"type": "Notary", "status": "disabled"}
    assert api.get("/api/registries").json()["value"][0]["name"] == "Shapes1"
    assert api.get("/api/registries/shapes1").json()["name"] == "Shapes1"
    r = api.patch("/api/registries/shapes1", json={"anonymousPullEnabled": True})
    assert r.json()["anonymousPullEnabled"] is True
    r = api.post(
        "/api/checkNameAvailability",
        json={"name": "shapes1", "type": "Microsoft.ContainerRegistry/registries"},
    )
    assert r.json() == {
        "nameAvailable": False,
        "reason": "AlreadyExists",
        "message": r.json()["message"],
    }

    creds = api.post("/api/registries/shapes1/listCredentials").json()
    assert creds["username"] == "Shapes1" and [p["name"] for p in creds["passwords"]] == [
        "password",
        "password2",
    ]
    renewed = api.post(
        "/api/registries/shapes1/regenerateCredential", json={"name": "password"}
    ).json()
    assert renewed["passwords"][0]["value"] != creds["passwords"][0]["value"]
    assert renewed["passwords"][1] == creds["passwords"][1]
    usages = api.get("/api/registries/shapes1/usages").json()["value"]
    assert {u["name"] for u in usages} == {
        "Size",
        "Webhooks",
        "Replications",
        "ScopeMaps",
        "Tokens",
    }
    assert set(usages[0]) == {"name", "limit", "currentValue", "unit"}

    base = "/api/registries/shapes1"
    r = api.post(
        f"{base}/scopeMaps", json={"name": "pullers", "actions": ["repositories/app/content/read"]}
    )
    assert r.status_code == 201 and r.json()["id"] == "/registries/Shapes1/scopeMaps/pullers"
    assert r.json()["scopeMapType"] == "UserDefined"
    assert api.get(f"{base}/scopeMaps").json()["value"][0]["name"] == "pullers"
    assert api.get(f"{base}/scopeMaps/pullers").json()["actions"] == [
        "repositories/app/content/read"
    ]
    r = api.patch(f"{base}/scopeMaps/pullers", json={"description": "pull app"})
    assert r.json()["description"] == "pull app"

    r = api.post(f"{base}/tokens", json={"name": "ci-token", "scopeMap": "pullers"})
    assert r.status_code == 201
    token = r.json()
    assert (
        token["scopeMapId"] == "/registries/Shapes1/scopeMaps/pullers"
        and token["status"] == "enabled"
    )
    assert [p["name"] for p in token["credentials"]["passwords"]] == ["password1", "password2"]
    assert all(p["value"] for p in token["credentials"]["passwords"])
    shown = api.get(f"{base}/tokens/ci-token").json()
    assert all("value" not in p for p in shown["credentials"]["passwords"])
    assert api.get(f"{base}/tokens").json()["value"][0]["name"] == "ci-token"
    assert (
        api.patch(f"{base}/tokens/ci-token", json={"status": "disabled"}).json()["status"]
        == "disabled"
    )
    r = api.post(
        f"{base}/tokens/ci-token/generateCredentials",
        json={"name": "password2", "expiry": "2099-01-01T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["username"] == "ci-token"
    new = [p for p in answer["passwords"] if "value" in p]
    assert [p["name"] for p in new] == ["password2"] and new[0]["expiry"].startswith("2099-01-01")
    assert api.delete(f"{base}/tokens/ci-token/passwords/password1").status_code == 204
    assert api.delete(f"{base}/tokens/ci-token").status_code == 204
    assert api.delete(f"{base}/scopeMaps/pullers").status_code == 204

    roles = api.get("/api/roleDefinitions").json()["value"]
    owner = next(d for d in roles if d["roleName"] == "Owner")
    assert (
        "roleAssignments/write" in owner["managementPermissions"] and "push" in owner["dataActions"]
    )

    r = api.post("/api/users", json={"name": "dave", "displayName": "Dave"})
    assert r.status_code == 201 and len(r.json()["password"]) >= 12
    assert "password" not in api.get("/api/users/dave").json()
    assert any(u["name"] == "dave" for u in api.get("/api/users").json()["value"])
    r = api.patch("/api/users/dave", json={"disabled": True, "password": "a-long-password"})
    assert r.json()["disabled"] is True and "password" not in r.json()

    r = api.post("/api/servicePrincipals", json={"displayName": "deployer"})
    assert r.status_code == 201
    sp = r.json()
    assert set(sp) == {"id", "appId", "displayName", "disabled", "createdOn", "password"}
    assert api.get(f"/api/servicePrincipals/{sp['appId']}").json()["displayName"] == "deployer"
    assert api.get("/api/servicePrincipals").json()["value"][0]["appId"] == sp["appId"]
    again = api.post(f"/api/servicePrincipals/{sp['appId']}/resetCredential").json()
    assert again["password"] != sp["password"]

    r = api.post(
        "/api/roleAssignments",
        json={"role": "acrpush", "assignee": sp["appId"], "scope": "/registries/shapes1"},
    )
    assert r.status_code == 201
    ra = r.json()
    assert (ra["roleDefinitionName"], ra["principalType"], ra["scope"]) == (
        "AcrPush",
        "ServicePrincipal",
        "/registries/shapes1",
    )
    listed = api.get("/api/roleAssignments", params={"assignee": sp["appId"]}).json()["value"]
    assert [a["id"] for a in listed] == [ra["id"]]
    assert (
        api.post(
            "/api/roleAssignments",
            json={"role": "AcrPush", "assignee": sp["appId"], "scope": "/registries/shapes1"},
        ).status_code
        == 409
    )
    assert api.delete(f"/api/roleAssignments/{ra['id']}").status_code == 204

    assert api.delete(f"/api/servicePrincipals/{sp['appId']}").status_code == 204
    assert api.delete("/api/users/dave").status_code == 204
    assert api.delete("/api/registries/shapes1").status_code == 204
    assert api.get("/api/registries/shapes1").status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"name": "abcde", "sku":', "not valid JSON"),
        (b"[1, 2]", "(body)"),
        (b'{"name": "abcdef", "sku": "Basic", "colour": "red"}', "colour"),
        (b'{"name": "abcdef", "sku": "Basic", "adminUserEnabled": "true"}', "adminUserEnabled"),
        (b'{"name": 12345, "sku": "Basic"}', "name"),
        (b'{"sku": "Basic"}', "name: Field required"),
        (b"", "needs a JSON object body"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"name": "ab\\u0000cdef", "sku": "Basic"}', "name"),
    ],
)
def test_bodies_are_validated(api: TestClient, body: bytes, fragment: str) -> None:
    r = api.post("/api/registries", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert code(r) == "BODY_INVALID"
    assert fragment in r.json()["errors"][0]["message"]


def test_a_bad_registry_name_states_the_rule(api: TestClient) -> None:
    r = api.post("/api/registries", json={"name": "no", "sku": "Basic"})
    assert (r.status_code, code(r)) == (400, "NAME_INVALID")
    assert "^[a-zA-Z0-9]{5,50}$" in r.json()["errors"][0]["message"]


def test_oversized_bodies_are_refused(api: TestClient) -> None:
    big = b'{"name": "' + b"a" * (70 * 1024) + b'", "sku": "Basic"}'
    r = api.post("/api/registries", content=big)
    assert (r.status_code, code(r)) == (400, "BODY_INVALID") and "64 KiB" in r.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"name": "'
        for _ in range(80):
            yield b"a" * 1024
        yield b'"}'

    r = api.post("/api/registries", content=chunks())
    assert (r.status_code, code(r)) == (400, "BODY_INVALID")


def test_passwords_never_appear_in_errors(api: TestClient) -> None:
    r = api.post("/api/users", json={"name": "erin", "password": "short-secret"[:11]})
    assert r.status_code == 400 and "short-secre" not in r.text
    r = api.post("/api/users", json={"name": "erin", "password": 12345678901234})
    assert r.status_code == 400 and "12345678901234" not in r.text


@pytest.mark.parametrize(
    ("caller", "status", "error"),
    [("anonymous", 401, "UNAUTHORIZED"), ("admin", 403, "DENIED"), ("token", 403, "DENIED")],
)
def test_only_principals_get_in(api: TestClient, caller: str, status: int, error: str) -> None:
    r = api.get("/api/registries", headers=as_(caller))
    assert (r.status_code, code(r)) == (status, error)
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")


def test_permissions_over_http(api: TestClient) -> None:
    assert api.post("/api/registries", json={"name": "permreg", "sku": "Basic"}).status_code == 201
    r = api.patch("/api/registries/permreg", json={"sku": "Premium"}, headers=as_("reader"))
    assert (r.status_code, code(r)) == (403, "DENIED")
    assert api.get("/api/registries/permreg", headers=as_("reader")).status_code == 200
    r = api.get("/api/registries/permreg", headers=as_("puller"))
    assert (r.status_code, code(r)) == (404, "NOT_FOUND")
    assert api.get("/api/registries", headers=as_("puller")).json() == {"value": []}


def test_unknown_paths_and_methods_answer_json(api: TestClient) -> None:
    r = api.get("/api/nothing/here")
    assert (r.status_code, code(r)) == (404, "NOT_FOUND")
    r = api.patch("/api/registries/%2Fx/tokens/a%0Ab")  # a decoded newline in the path
    assert (r.status_code, code(r)) == (404, "NOT_FOUND")
    r = api.put("/api/registries")
    assert (r.status_code, code(r)) == (405, "UNSUPPORTED")
    assert r.headers["allow"] == "GET, POST"


def test_the_openapi_document(api: TestClient) -> None:
    r = api.get("/api/openapi.json", headers=as_("anonymous"))
    assert r.status_code == 200
    doc = orjson.loads(r.content)
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    operations = [(p, m, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) == 41
    retention = doc["paths"]["/api/registries/{registry}/policies/retention"]
    assert retention["get"]["description"].startswith("Needs: read on the registry")
    assert retention["patch"]["description"].startswith("Needs: write on the registry")
    soft_delete = doc["paths"]["/api/registries/{registry}/policies/softdelete"]
    assert soft_delete["get"]["description"].startswith("Needs: read on the registry")
    assert soft_delete["patch"]["description"].startswith("Needs: write on the registry")
    update = soft_delete["patch"]["requestBody"]["content"]["application/json"]["schema"]
    days = schemas[update["$ref"].rsplit("/", 1)[1]]["properties"]["days"]["anyOf"][0]
    assert (days["minimum"], days["maximum"]) == (1, 90)
    text = r.text
    for ref in {part.split('"')[0] for part in text.split('"$ref":"#/components/schemas/')[1:]}:
        assert ref in schemas, ref
    create = doc["paths"]["/api/registries"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schemas[body]["additionalProperties"] is False
    assert "201" in create["responses"] and "409" in create["responses"]
    user = doc["paths"]["/api/users"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert schemas[user["$ref"].rsplit("/", 1)[1]]["properties"]["password"]["anyOf"][0][
        "writeOnly"
    ]
