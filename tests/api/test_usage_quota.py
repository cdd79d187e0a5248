"""Usage and quotas over HTTP (issue 4 points 1 and 3, SPEC §5.3).

Usage (``GET /api/registries/{r}/usages``, ``Size``) is the bytes of the distinct blobs
the registry's manifests reference: it rises when a push completes, falls at once when
an image is deleted, by what nothing else references. A push past the quota is refused
with QUOTA_EXCEEDED naming the limit and the usage, and stores nothing that counts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    connect,
    digest_of,
    encode,
    expect_error,
    expect_status,
    image_manifest,
    push_blob,
    put_manifest,
    random_bytes,
)

#: The Basic SKU's quota on the server these tests start (bytes).
QUOTA = 300_000


def size(client: httpx.Client, registry: str) -> tuple[int, int]:
    r = expect_status(client.get(f"/api/registries/{registry}/usages"), 200)
    entry = next(u for u in r.json()["value"] if u["name"] == "Size")
    assert entry["unit"] == "Bytes"
    return int(entry["currentValue"]), int(entry["limit"])


def new_registry(client: httpx.Client) -> str:
    name = f"usage{uuid.uuid4().hex[:10]}"
    expect_status(client.post("/api/registries", json={"name": name, "sku": "Basic"}), 201)
    return name


def push(client: httpx.Client, repo: str, config: bytes, layers: list[bytes], tag: str) -> str:
    for data in (config, *layers):
        push_blob(client, repo, data)
    body = encode(image_manifest(config, layers))
    expect_status(put_manifest(client, repo, tag, body), 201)
    return digest_of(body)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Any]:
    root: Any = pytestconfig.pluginmanager.get_plugin(
        str(Path(__file__).parent.parent / "conftest.py")
    )
    env = {"HAMN_STORAGE_QUOTAS": json.dumps({"Basic": QUOTA})}
    reg = root.start_hamn(tmp_path_factory.mktemp("quota") / "data", env=env)
    yield reg
    root.stop_hamn(reg)


def test_usage_follows_pushes_and_deletes_at_once(live_registry: Any) -> None:
    with connect(live_registry) as c:
        registry = new_registry(c)
        assert size(c, registry) == (0, 10 * 1024**3)
        shared, own_a, own_b = random_bytes(4000), random_bytes(3000), random_bytes(2000)
        config_a, config_b = encode({"a": uuid.uuid4().hex}), encode({"b": uuid.uuid4().hex})
        a = push(c, f"{registry}/app", config_a, [shared, own_a], "a")
        after_a = len(config_a) + len(shared) + len(own_a)
        assert size(c, registry)[0] == after_a
        # The same shared layer in another repository counts once.
        b = push(c, f"{registry}/other", config_b, [shared, own_b], "b")
        assert size(c, registry)[0] == after_a + len(config_b) + len(own_b)
        # Unreferenced uploads do not count.
        push_blob(c, f"{registry}/app", random_bytes(5000))
        assert size(c, registry)[0] == after_a + len(config_b) + len(own_b)
        # Deleting image a frees its own blobs at once; the shared layer stays counted.
        expect_status(c.delete(f"/v2/{registry}/app/manifests/{a}"), 202)
        assert size(c, registry)[0] == len(config_b) + len(shared) + len(own_b)
        expect_status(c.delete(f"/v2/{registry}/other/manifests/{b}"), 202)
        assert size(c, registry)[0] == 0


def test_a_blob_past_the_quota_is_refused_before_it_is_stored(small: Any) -> None:
    with connect(small) as c:
        registry = new_registry(c)
        assert size(c, registry) == (0, QUOTA)
        push(c, f"{registry}/app", encode({"n": 1}), [random_bytes(200_000)], "v1")
        used = size(c, registry)[0]
        big = random_bytes(150_000)
        loc = expect_status(c.post(f"/v2/{registry}/app/blobs/uploads/"), 202).headers["Location"]
        r = c.put(loc, params={"digest": digest_of(big)}, content=big)
        entry = expect_error(r, 403, "QUOTA_EXCEEDED")
        assert "quota" in entry["message"] and "--sku Standard" in entry["message"]
        assert entry["detail"] == {"usage": used, "adding": len(big), "quota": QUOTA}
        # Nothing was kept: the blob is unknown, usage is unchanged.
        expect_error(c.head(f"/v2/{registry}/app/blobs/{digest_of(big)}"), 404, "BLOB_UNKNOWN")
        assert size(c, registry)[0] == used


def test_a_manifest_past_the_quota_stores_nothing(small: Any) -> None:
    with connect(small) as c:
        registry = new_registry(c)
        repo = f"{registry}/app"
        # Each layer fits on its own; the two together do not.
        one, two = random_bytes(160_000), random_bytes(160_000)
        config = encode({"n": uuid.uuid4().hex})
        for data in (config, one, two):
            push_blob(c, repo, data)
        body = encode(image_manifest(config, [one, two]))
        r = put_manifest(c, repo, "v1", body)
        entry = expect_error(r, 403, "QUOTA_EXCEEDED")
        assert entry["detail"]["quota"] == QUOTA
        expect_error(c.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
        assert size(c, registry)[0] == 0
        # One layer fits: the refusal left nothing counted that would stop it.
        expect_status(put_manifest(c, repo, "v2", encode(image_manifest(config, [one]))), 201)
        assert size(c, registry)[0] == len(config) + len(one)
