"""Soft delete against a live ``hamn serve``: with the registry's policy enabled, deletes
(by digest, untag, whole repository) go to the recycle bin: hidden from ``/v2/`` and
the listings, listed by ``/acr/v1/_deleted/...``, restorable, still counted in usage;
the server's collection purges them after ``retentionDays`` (aged here through the
database). The policy is set through the management API. AcrPull may not see or
restore them."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_support import Image, catalog, connect, expect_error, expect_status, push_image

POLICY = "/api/registries/local/policies/softdelete"
DELETED = "/acr/v1/_deleted"


def set_policy(client: httpx.Client, **changes: Any) -> None:
    """Change the soft-delete policy through the management API."""
    expect_status(client.patch(POLICY, json=changes), 200)


def age_deleted(reg: Any, days: float) -> None:
    """Move every deletion ``days`` into the past."""
    when = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None).isoformat(sep=" ")
    db = sqlite3.connect(reg.data_dir / "metadata.db", timeout=30)
    try:
        db.execute("UPDATE manifests SET deleted_at = ? WHERE deleted_at IS NOT NULL", (when,))
        db.execute("UPDATE deleted_tags SET deleted_at = ?", (when,))
        db.execute("UPDATE repositories SET deleted_at = ? WHERE deleted_at IS NOT NULL", (when,))
        db.commit()
    finally:
        db.close()


def put_again(client: httpx.Client, image: Image, reference: str) -> None:
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    url = f"/v2/{image.repo}/manifests/{reference}"
    expect_status(client.put(url, content=image.manifest, headers=headers), 201)


def size(client: httpx.Client) -> int:
    r = expect_status(client.get("/api/registries/local/usages"), 200)
    return int(next(u for u in r.json()["value"] if u["name"] == "Size")["currentValue"])


@pytest.fixture
def server(start_server: Any) -> Any:
    return start_server(env={"HAMN_GC_INTERVAL": "1"})


@pytest.fixture
def client(server: Any) -> Iterator[httpx.Client]:
    with connect(server) as c:
        set_policy(c, status="enabled", days=2)
        yield c


def test_delete_hides_lists_and_restores(client: httpx.Client) -> None:
    image = push_image(client, "app", "v1")
    put_again(client, image, "v2")
    usage = size(client)
    expect_status(client.delete(f"/v2/app/manifests/{image.digest}"), 202)
    expect_error(client.get(f"/v2/app/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get("/v2/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert expect_status(client.get("/v2/app/tags/list"), 200).json()["tags"] in ([], None)
    assert expect_status(client.get("/acr/v1/app/_manifests"), 200).json()["manifests"] == []
    assert size(client) == usage

    assert expect_status(client.get(f"{DELETED}/_catalog"), 200).json() == {"repositories": ["app"]}
    listed = expect_status(client.get(f"{DELETED}/app/_manifests"), 200).json()
    assert listed["imageName"] == "app"
    [entry] = listed["manifests"]
    assert entry["digest"] == image.digest and entry["tags"] == ["v1", "v2"]
    assert entry["deletedTime"].endswith("Z") and entry["expiresAfter"] > entry["deletedTime"]
    deleted_at = datetime.fromisoformat(entry["deletedTime"][:26] + "+00:00")
    expires = datetime.fromisoformat(entry["expiresAfter"][:26] + "+00:00")
    assert expires - deleted_at == timedelta(days=2)
    tags = expect_status(client.get(f"{DELETED}/app/_tags", params={"n": 1}), 200)
    assert [t["name"] for t in tags.json()["tags"]] == ["v1"]
    assert "last=v1" in tags.headers["Link"]

    restored = expect_status(client.post(f"{DELETED}/app/_manifests/{image.digest}"), 200).json()
    assert restored["manifest"]["digest"] == image.digest
    assert restored["manifest"]["tags"] == ["v1", "v2"]
    expect_status(client.get("/v2/app/manifests/v1"), 200)
    assert expect_status(client.get(f"{DELETED}/_catalog"), 200).json() == {"repositories": []}
    # Restored in full: nothing of it is left in the recycle bin.
    expect_error(client.post(f"{DELETED}/app/_manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
    missing = "sha256:" + "0" * 64
    expect_error(client.post(f"{DELETED}/app/_manifests/{missing}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get(f"{DELETED}/nosuch/_manifests"), 404, "NAME_UNKNOWN")


def test_untag_and_restore_one_tag(client: httpx.Client) -> None:
    image = push_image(client, "app", "v1")
    expect_status(client.delete("/acr/v1/app/_tags/v1"), 202)
    expect_status(client.get(f"/v2/app/manifests/{image.digest}"), 200)  # the manifest stays
    [tag] = expect_status(client.get(f"{DELETED}/app/_tags"), 200).json()["tags"]
    assert (tag["name"], tag["digest"]) == ("v1", image.digest)
    body = {"tag": "v1"}
    expect_status(client.post(f"{DELETED}/app/_manifests/{image.digest}", json=body), 200)
    expect_status(client.get("/v2/app/manifests/v1"), 200)
    expect_error(
        client.post(f"{DELETED}/app/_manifests/{image.digest}", json={"x": 1}), 400, "BODY_INVALID"
    )


def test_repository_delete_and_push_again(client: httpx.Client) -> None:
    image = push_image(client, "app", "v1")
    expect_status(client.delete("/acr/v1/app"), 202)
    assert "app" not in catalog(client)
    expect_error(client.get("/acr/v1/app"), 404, "NAME_UNKNOWN")
    assert expect_status(client.get(f"{DELETED}/_catalog"), 200).json()["repositories"] == ["app"]
    # Pushing the same digest again makes it live (and the repository with it).
    put_again(client, image, image.digest)
    assert "app" in catalog(client)
    expect_error(client.post(f"{DELETED}/app/_manifests/{image.digest}"), 409, "ALREADY_EXISTS")


@pytest.mark.sqlite_database  # age_deleted changes metadata.db
def test_the_collection_purges_after_the_days(server: Any, client: httpx.Client) -> None:
    image = push_image(client, "app", "v1")
    expect_status(client.delete(f"/v2/app/manifests/{image.digest}"), 202)
    usage = size(client)
    assert usage > 0
    time.sleep(2.5)  # a collection or two: nothing is old enough
    assert size(client) == usage
    age_deleted(server, 3)
    deadline = time.monotonic() + 30
    while size(client) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert size(client) == 0
    assert expect_status(client.get(f"{DELETED}/app/_manifests"), 200).json()["manifests"] == []
    expect_error(client.post(f"{DELETED}/app/_manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")


def test_disabled_policy_deletes_for_good(server: Any, client: httpx.Client) -> None:
    set_policy(client, status="disabled")
    image = push_image(client, "app", "v1")
    expect_status(client.delete(f"/v2/app/manifests/{image.digest}"), 202)
    assert size(client) == 0
    assert expect_status(client.get(f"{DELETED}/app/_manifests"), 200).json()["manifests"] == []


def test_acr_pull_may_not_see_or_restore(server: Any, client: httpx.Client) -> None:
    image = push_image(client, "app", "v1")
    expect_status(client.delete(f"/v2/app/manifests/{image.digest}"), 202)
    username, password = f"u-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    expect_status(client.post("/api/users", json={"name": username, "password": password}), 201)
    assignment = {"role": "AcrPull", "assignee": username, "scope": "/"}
    expect_status(client.post("/api/roleAssignments", json=assignment), 201)
    with httpx.Client(base_url=server.url, auth=(username, password), timeout=30) as puller:
        expect_error(puller.get(f"{DELETED}/app/_manifests"), 403, "DENIED")
        expect_error(puller.get(f"{DELETED}/app/_tags"), 403, "DENIED")
        expect_error(puller.post(f"{DELETED}/app/_manifests/{image.digest}"), 403, "DENIED")
