"""``/v2/<registry>/_catalog``: the catalog of a registry named in the path (SPEC §3.5).

Path routing reaches any registry through ``<host>/<registry>/<repository>``; its
catalog is reached the same way, since a repository name can never contain a
``_catalog`` component. Plain ``/v2/_catalog`` stays the host's (or default) registry's.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from api_support import connect, expect_error, expect_status, push_image


def test_the_catalog_of_a_registry_named_in_the_path(live_registry: Any) -> None:
    name = f"cat{uuid.uuid4().hex[:10]}"
    with connect(live_registry) as c:
        expect_status(c.post("/api/registries", json={"name": name, "sku": "Basic"}), 201)
        for repo in ("b/app", "a/app"):
            push_image(c, f"{name}/{repo}")
        r = expect_status(c.get(f"/v2/{name}/_catalog"), 200)
        assert r.json() == {"repositories": ["a/app", "b/app"]}
        first = expect_status(c.get(f"/v2/{name}/_catalog", params={"n": 1}), 200)
        assert first.json() == {"repositories": ["a/app"]}
        assert first.headers["Link"] == f'</v2/{name}/_catalog?n=1&last=a%2Fapp>; rel="next"'
        # The default registry's catalog does not list them.
        default = c.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
        assert not [x for x in default if x.endswith("/app") and x.startswith(("a/", "b/"))]
        # The owner, who may see every registry, hears that it does not exist.
        missing = expect_error(c.get("/v2/nosuchregistry1/_catalog"), 404, "NAME_UNKNOWN")
        assert "nosuchregistry1" in missing["message"]
    with httpx.Client(base_url=live_registry.url, timeout=30) as anonymous:
        r = anonymous.get(f"/v2/{name}/_catalog")
        expect_error(r, 401, "UNAUTHORIZED")
        assert 'scope="registry:catalog:*"' in r.headers["WWW-Authenticate"]
