"""Soft delete as a user runs it: ``hamn config soft-delete show|update``, then a delete
that is kept: ``repository list-deleted``, ``manifest list-deleted``,
``list-deleted-tags`` and ``manifest restore``, with usage unchanged meanwhile.

The real CLI (``python -m hamn``) against a live ``hamn serve``, on a registry of its
own (the policy changes what deletes do, so the shared registry is left alone).

The data-plane half (``/acr/v1/_deleted/...``) is the server side of issue 4 point 8;
on a server that answers it UNSUPPORTED the test is skipped, saying so. Any other answer
(including errors) runs the test, so it fails as soon as a supporting server is wrong.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from test_cli_repository import Hamn, assert_error, push_image

pytestmark = pytest.mark.usefixtures("auth_enforced")


@pytest.fixture
def hamn(live_registry: Any) -> Hamn:
    return Hamn.on(live_registry)


@pytest.fixture
def soft_delete_server(live_registry: Any) -> Any:
    """The live registry, if its server implements ``/acr/v1/_deleted``."""
    with httpx.Client(base_url=live_registry.url, auth=live_registry.auth, timeout=30) as http:
        r = http.get("/acr/v1/_deleted/_catalog")
    codes = {e.get("code") for e in r.json().get("errors", [])} if r.status_code >= 400 else set()
    if r.status_code == 405 and "UNSUPPORTED" in codes:
        pytest.skip(
            "the server answers /acr/v1/_deleted/_catalog UNSUPPORTED: soft delete's server "
            "side (store, /acr/v1/_deleted, collector) is not in this build"
        )
    return live_registry


def size(hamn: Hamn, registry: str) -> int:
    usage = hamn.json("show-usage", "-n", registry)["value"]
    return int(next(u["currentValue"] for u in usage if u["name"] == "Size"))


def test_policy_show_update_and_conflict_with_retention(hamn: Hamn) -> None:
    name = "soft" + uuid.uuid4().hex[:12]
    hamn.json("create", "-n", name, "--sku", "Premium")
    try:
        shown = hamn.json("config", "soft-delete", "show", "-r", name)
        assert set(shown) == {"retentionDays", "lastUpdatedTime", "status"}
        assert (shown["retentionDays"], shown["status"]) == (7, "disabled")
        updated = hamn.json(
            "config", "soft-delete", "update", "-r", name, "--status", "Enabled", "--days", "30"
        )
        assert (updated["retentionDays"], updated["status"]) == (30, "enabled")
        assert hamn.json("config", "soft-delete", "show", "-r", name) == updated
        assert hamn.json("show", "-n", name)["policies"]["softDeletePolicy"] == updated
        lines = hamn("config", "soft-delete", "show", "-r", name, "-o", "table").out.splitlines()
        assert lines[0].split() == ["STATUS", "RETENTION", "DAYS", "LAST", "UPDATED"]
        assert lines[2].split()[:2] == ["enabled", "30"]
        assert_error(
            hamn("config", "retention", "update", "-r", name, "--status", "enabled",
                 "--type", "UntaggedManifests"),
            "IN_USE", f"hamn config soft-delete update -r {name} --status disabled",
        )  # fmt: skip
        assert_error(
            hamn("config", "soft-delete", "update", "-r", name, "--days", "91"), "--days", code=2
        )
        assert_error(hamn("config", "soft-delete", "show", "-r", "nosuch123"), "was not found")
    finally:
        assert hamn("delete", "-n", name, "--yes").code == 0


def test_deleted_manifests_are_listed_restorable_and_still_counted(
    hamn: Hamn, soft_delete_server: Any
) -> None:
    name = "soft" + uuid.uuid4().hex[:12]
    hamn.json("create", "-n", name, "--sku", "Premium")
    try:
        repo = f"{name}/app"
        kept = push_image(soft_delete_server, repo, "v2")
        digest = push_image(soft_delete_server, repo, "v1")
        # Not enabled yet: nothing is kept, and the CLI says how to enable it.
        before = hamn("manifest", "list-deleted", "-r", name, "-n", "app")
        assert f"hamn config soft-delete update -r {name} --status enabled" in before.err, before

        hamn.json("config", "soft-delete", "update", "-r", name, "--status", "enabled")
        used = size(hamn, name)
        assert hamn("repository", "delete", "-n", name, "--image", f"app@{digest}", "-y").code == 0
        with httpx.Client(base_url=soft_delete_server.url, auth=soft_delete_server.auth) as http:
            assert http.get(f"/v2/{repo}/manifests/v1").status_code == 404
        assert hamn.json("repository", "list-deleted", "-n", name) == ["app"]
        deleted = hamn.json("manifest", "list-deleted", "-r", name, "-n", "app")
        assert [(m["digest"], m["tags"]) for m in deleted] == [(digest, ["v1"])]
        assert {"deletedTime", "expiresAfter", "imageSize", "mediaType"} <= set(deleted[0])
        tags = hamn.json("manifest", "list-deleted-tags", "-r", name, "-n", "app:v1")
        assert [(t["name"], t["digest"]) for t in tags] == [("v1", digest)]
        assert hamn.json("manifest", "list-deleted-tags", "-r", name, "-n", "app:v2") == []
        table = hamn("manifest", "list-deleted", "-r", name, "-n", "app", "-o", "table")
        assert table.out.splitlines()[2].split()[:2] == [digest, "v1"]
        assert size(hamn, name) == used  # deleted content counts until purged

        restored = hamn("manifest", "restore", "-r", name, "-n", "app:v1", "-y")
        assert restored.code == 0, restored
        with httpx.Client(base_url=soft_delete_server.url, auth=soft_delete_server.auth) as http:
            r = http.get(
                f"/v2/{repo}/manifests/v1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        assert hamn.json("manifest", "list-deleted", "-r", name, "-n", "app") == []
        assert sorted(hamn.json("repository", "show-tags", "-n", name, "--repository", "app")) == [
            "v1",
            "v2",
        ]
        assert_error(
            hamn("manifest", "restore", "-r", name, "-n", f"app@{kept}", "-y"),
            "is not among the deleted manifests",
        )
    finally:
        assert hamn("delete", "-n", name, "--yes").code == 0
