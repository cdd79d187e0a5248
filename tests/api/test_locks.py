"""Locks (SPEC §2, §5.4): ACR's changeable attributes ``writeEnabled``,
``deleteEnabled``, ``readEnabled`` and ``listEnabled`` on repositories, tags and
manifests, set with ``PATCH /acr/v1/...`` and enforced on ``/v2/`` and ``/acr/v1/``.

Every refusal is ``405 LOCKED`` with a message that names what is locked and the
``hamn repository update`` command that lifts it; unlocking restores the operation.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from api_support import (
    ALL_MANIFESTS,
    Image,
    all_tags,
    catalog,
    check_repository_consistent,
    connect,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    random_bytes,
    unique_repo,
)

#: The live server's default registry (its login server is "<name>.<domain>").
REGISTRY = os.environ.get("HAMN_TEST_LOGIN_SERVER", "local.localhost").split(".")[0]
ALL_ENABLED = {
    "deleteEnabled": True,
    "writeEnabled": True,
    "readEnabled": True,
    "listEnabled": True,
}
KEYS = {"delete": "deleteEnabled", "write": "writeEnabled", "read": "readEnabled"}


# ----------------------------------------------------------------------- helpers


def patch(client: httpx.Client, path: str, **attributes: bool) -> dict[str, Any]:
    """PATCH changeable attributes (ACR's keys), assert 200 JSON; return the body."""
    r = expect_status(client.patch(f"/acr/v1/{path}", json=attributes), 200)
    assert r.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def attributes_of(client: httpx.Client, path: str) -> dict[str, bool]:
    """The changeableAttributes ``GET /acr/v1/<path>`` shows."""
    body = expect_status(client.get(f"/acr/v1/{path}"), 200).json()
    found: dict[str, bool] = (body.get("tag") or body.get("manifest") or body)[
        "changeableAttributes"
    ]
    return found


def expect_locked(resp: httpx.Response, *names: str, unlock: str) -> dict[str, Any]:
    """405 LOCKED naming every one of ``names``, with the command that lifts the first."""
    entry = expect_error(resp, 405, "LOCKED")
    if resp.request.method == "HEAD":
        return entry
    message = entry["message"]
    for name in names:
        assert repr(name) in message, message
    assert f"`hamn repository update -n {REGISTRY} {unlock}`" in message, message
    locked = entry["detail"]["locked"]
    assert [lock["name"] for lock in locked] == list(names), locked
    return entry


def other_image(client: httpx.Client, repo: str) -> Image:
    """A second image in ``repo``, pushed by digest (so no tag moves)."""
    return push_image(client, repo, None)


def pull(client: httpx.Client, repo: str, reference: str, method: str = "GET") -> httpx.Response:
    return client.request(
        method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": ALL_MANIFESTS}
    )


def acr_tags(client: httpx.Client, repo: str) -> list[str]:
    body = expect_status(client.get(f"/acr/v1/{repo}/_tags"), 200).json()
    return [tag["name"] for tag in body["tags"]]


def acr_manifests(client: httpx.Client, repo: str) -> list[str]:
    body = expect_status(client.get(f"/acr/v1/{repo}/_manifests"), 200).json()
    return [m["digest"] for m in body["manifests"]]


def acr_catalog(client: httpx.Client) -> list[str]:
    names: list[str] = []
    url: str | None = "/acr/v1/_catalog?n=1000"
    while url:
        r = expect_status(client.get(url), 200)
        names += r.json()["repositories"]
        link = r.headers.get("Link")
        url = link.split(";", 1)[0].strip()[1:-1] if link else None
    return names


# ------------------------------------------------------------------ PATCH itself


@pytest.mark.parametrize("kind", ["repository", "tag", "manifest"])
def test_patch_answers_the_resource_as_get_shows_it(
    client: httpx.Client, repo: str, kind: str
) -> None:
    img = push_image(client, repo, "v1")
    path = {"repository": repo, "tag": f"{repo}/_tags/v1", "manifest": f"{repo}/_manifests/"}[kind]
    if kind == "manifest":
        path += img.digest
    assert attributes_of(client, path) == ALL_ENABLED
    body = patch(client, path, writeEnabled=False, listEnabled=False)
    assert body == expect_status(client.get(f"/acr/v1/{path}"), 200).json()
    want = {**ALL_ENABLED, "writeEnabled": False, "listEnabled": False}
    assert attributes_of(client, path) == want
    # A later PATCH changes only what it names.
    body = patch(client, path, listEnabled=True, readEnabled=False)
    assert attributes_of(client, path) == {**want, "listEnabled": True, "readEnabled": False}
    assert body == expect_status(client.get(f"/acr/v1/{path}"), 200).json()
    patch(client, path, **dict.fromkeys(ALL_ENABLED, True))
    assert attributes_of(client, path) == ALL_ENABLED


def test_flags_show_in_listings(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    patch(client, f"{repo}/_tags/v1", deleteEnabled=False)
    patch(client, f"{repo}/_manifests/{img.digest}", readEnabled=False)
    tags = expect_status(client.get(f"/acr/v1/{repo}/_tags"), 200).json()["tags"]
    assert tags[0]["changeableAttributes"] == {**ALL_ENABLED, "deleteEnabled": False}
    manifests = expect_status(client.get(f"/acr/v1/{repo}/_manifests"), 200).json()["manifests"]
    assert manifests[0]["changeableAttributes"] == {**ALL_ENABLED, "readEnabled": False}


def test_locks_are_per_repository(client: httpx.Client) -> None:
    a, b = unique_repo("a"), unique_repo("b")
    img = push_image(client, a, "v1")
    for data in (img.config, *img.layers):
        push_blob(client, b, data)
    expect_status(put_manifest(client, b, "v1", img.manifest), 201)
    patch(client, f"{a}/_manifests/{img.digest}", readEnabled=False)
    patch(client, f"{a}/_tags/v1", writeEnabled=False)
    expect_status(pull(client, b, "v1"), 200)
    expect_status(put_manifest(client, b, "v1", other_image(client, b).manifest), 201)
    assert attributes_of(client, f"{b}/_manifests/{img.digest}") == ALL_ENABLED


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{}", "changes nothing"),
        (b"[]", "JSON object"),
        (b'"writeEnabled"', "JSON object"),
        (b"not json", "not JSON"),
        (b'{"writeEnabled": "false"}', "writeEnabled must be true or false"),
        (b'{"writeEnabled": 0}', "writeEnabled must be true or false"),
        (b'{"readEnabled": null}', "readEnabled must be true or false"),
        (b'{"writeEnabled": false, "locked": true}', "unknown key(s) locked"),
        (b'{"changeableAttributes": {"writeEnabled": false}}', "at the top level"),
        (b'{"writeenabled": false}', "unknown key(s) writeenabled"),
    ],
)
def test_malformed_bodies_change_nothing(
    client: httpx.Client, repo: str, body: bytes, says: str
) -> None:
    img = push_image(client, repo, "v1")
    for path in (repo, f"{repo}/_tags/v1", f"{repo}/_manifests/{img.digest}"):
        r = client.patch(f"/acr/v1/{path}", content=body)
        entry = expect_error(r, 400, "BODY_INVALID")
        assert says in entry["message"], entry
        assert attributes_of(client, path) == ALL_ENABLED


def test_oversize_bodies_are_refused(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    padded = b'{"writeEnabled": false' + b" " * 5000 + b"}"
    entry = expect_error(client.patch(f"/acr/v1/{repo}", content=padded), 400, "BODY_INVALID")
    assert "at most 4096 bytes" in entry["message"]

    def chunks() -> Any:  # no Content-Length: the limit holds on the stream too
        yield padded[:3000]
        yield padded[3000:]

    r = client.patch(f"/acr/v1/{repo}", content=chunks())
    assert "at most 4096 bytes" in expect_error(r, 400, "BODY_INVALID")["message"]
    assert attributes_of(client, repo) == ALL_ENABLED


@pytest.mark.parametrize(
    "body", [{"quarantineState": "Passed"}, {"quarantineDetails": "{}", "writeEnabled": False}]
)
def test_quarantine_is_not_available_yet(
    client: httpx.Client, repo: str, body: dict[str, Any]
) -> None:
    img = push_image(client, repo, "v1")
    r = client.patch(f"/acr/v1/{repo}/_manifests/{img.digest}", json=body)
    assert "quarantine is not available yet" in expect_error(r, 405, "UNSUPPORTED")["message"]
    assert attributes_of(client, f"{repo}/_manifests/{img.digest}") == ALL_ENABLED


def test_patch_of_missing_things(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    off = {"writeEnabled": False}
    expect_error(client.patch(f"/acr/v1/{unique_repo()}", json=off), 404, "NAME_UNKNOWN")
    expect_error(client.patch(f"/acr/v1/{repo}/_tags/nope", json=off), 404, "TAG_UNKNOWN")
    missing = "sha256:" + "0" * 64
    r = client.patch(f"/acr/v1/{repo}/_manifests/{missing}", json=off)
    expect_error(r, 404, "MANIFEST_UNKNOWN")
    r = client.patch(f"/acr/v1/{repo}/_manifests/sha256:nothex", json=off)
    expect_error(r, 400, "DIGEST_INVALID")
    expect_error(client.patch(f"/acr/v1/{repo}/_tags/-bad", json=off), 400, "TAG_INVALID")
    assert attributes_of(client, f"{repo}/_manifests/{img.digest}") == ALL_ENABLED


# ------------------------------------------------------------------ writeEnabled


def test_write_locked_tag(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    new = other_image(client, repo)
    patch(client, f"{repo}/_tags/v1", writeEnabled=False)
    unlock = f"--image {repo}:v1 --write-enabled true"
    entry = expect_locked(
        put_manifest(client, repo, "v1", new.manifest), f"{repo}:v1", unlock=unlock
    )
    assert (
        "cannot push a manifest to" in entry["message"] and "writeEnabled=false" in entry["message"]
    )
    expect_locked(put_manifest(client, repo, "v1", img.manifest), f"{repo}:v1", unlock=unlock)
    expect_locked(client.delete(f"/v2/{repo}/manifests/v1"), f"{repo}:v1", unlock=unlock)
    expect_locked(client.delete(f"/acr/v1/{repo}/_tags/v1"), f"{repo}:v1", unlock=unlock)
    # Its manifest goes only with its tags, so it stays too.
    for path in (f"/v2/{repo}/manifests/{img.digest}", f"/acr/v1/{repo}/_manifests/{img.digest}"):
        expect_locked(client.delete(path), f"{repo}:v1", unlock=unlock)
    expect_locked(client.delete(f"/acr/v1/{repo}"), f"{repo}:v1", unlock=unlock)
    assert pull(client, repo, "v1").headers["Docker-Content-Digest"] == img.digest
    # Other tags move freely, and the image under the lock is still pulled.
    expect_status(put_manifest(client, repo, "v2", new.manifest), 201)
    expect_status(put_manifest(client, repo, "v2", img.manifest), 201)
    patch(client, f"{repo}/_tags/v1", writeEnabled=True)
    expect_status(put_manifest(client, repo, "v1", new.manifest), 201)
    assert pull(client, repo, "v1").headers["Docker-Content-Digest"] == new.digest
    expect_status(client.delete(f"/v2/{repo}/manifests/v1"), 202)


def test_write_locked_manifest(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    new = other_image(client, repo)
    patch(client, f"{repo}/_manifests/{img.digest}", writeEnabled=False)
    ref = f"{repo}@{img.digest}"
    unlock = f"--image {ref} --write-enabled true"
    for path in (f"/v2/{repo}/manifests/{img.digest}", f"/acr/v1/{repo}/_manifests/{img.digest}"):
        expect_locked(client.delete(path), ref, unlock=unlock)
    expect_locked(client.delete(f"/acr/v1/{repo}"), ref, unlock=unlock)
    # Its tags are resources of their own (ACR): they move and go as their own locks say.
    expect_status(put_manifest(client, repo, "v1", new.manifest), 201)
    expect_status(put_manifest(client, repo, "v2", img.manifest), 201)
    expect_status(client.delete(f"/acr/v1/{repo}/_tags/v2"), 202)
    expect_status(pull(client, repo, img.digest), 200)
    patch(client, f"{repo}/_manifests/{img.digest}", writeEnabled=True)
    expect_status(client.delete(f"/v2/{repo}/manifests/{img.digest}"), 202)


def test_write_locked_repository(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    new = push_image_blobs_only(client, repo)
    layer = push_blob(client, repo, img.layers[0])
    patch(client, repo, writeEnabled=False)
    unlock = f"--repository {repo} --write-enabled true"
    for reference in ("v1", "v2", new.digest):
        expect_locked(put_manifest(client, repo, reference, new.manifest), repo, unlock=unlock)
    for path in (
        f"/v2/{repo}/manifests/v1",
        f"/v2/{repo}/manifests/{img.digest}",
        f"/v2/{repo}/blobs/{layer}",
        f"/acr/v1/{repo}/_tags/v1",
        f"/acr/v1/{repo}/_manifests/{img.digest}",
        f"/acr/v1/{repo}",
    ):
        expect_locked(client.delete(path), repo, unlock=unlock)
    # Reading is untouched, and so are blob uploads (a manifest push is what lands content).
    expect_status(pull(client, repo, "v1"), 200)
    assert get_blob(client, repo, push_blob(client, repo, random_bytes(32)))
    patch(client, repo, writeEnabled=True)
    expect_status(put_manifest(client, repo, "v2", new.manifest), 201)
    expect_status(client.delete(f"/acr/v1/{repo}"), 202)


def push_image_blobs_only(client: httpx.Client, repo: str) -> Image:
    """An image whose blobs are in ``repo`` but whose manifest is not pushed yet."""
    config, layer = random_bytes(64), random_bytes(256)
    for data in (config, layer):
        push_blob(client, repo, data)
    body = encode(image_manifest(config, [layer]))
    return Image(repo, body, digest_of(body), config, (layer,))


# ----------------------------------------------------------------- deleteEnabled


def test_delete_locked_tag(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    new = other_image(client, repo)
    patch(client, f"{repo}/_tags/v1", deleteEnabled=False)
    unlock = f"--image {repo}:v1 --delete-enabled true"
    expect_locked(client.delete(f"/v2/{repo}/manifests/v1"), f"{repo}:v1", unlock=unlock)
    expect_locked(client.delete(f"/acr/v1/{repo}/_tags/v1"), f"{repo}:v1", unlock=unlock)
    entry = expect_locked(
        client.delete(f"/v2/{repo}/manifests/{img.digest}"), f"{repo}:v1", unlock=unlock
    )
    assert entry["message"].startswith(f"cannot delete manifest '{repo}@{img.digest}'")
    expect_locked(client.delete(f"/acr/v1/{repo}"), f"{repo}:v1", unlock=unlock)
    # Still writable: the tag moves (and the old manifest may then go).
    expect_status(put_manifest(client, repo, "v1", new.manifest), 201)
    expect_status(client.delete(f"/v2/{repo}/manifests/{img.digest}"), 202)
    patch(client, f"{repo}/_tags/v1", deleteEnabled=True)
    expect_status(client.delete(f"/acr/v1/{repo}/_tags/v1"), 202)


def test_delete_locked_manifest(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    patch(client, f"{repo}/_manifests/{img.digest}", deleteEnabled=False)
    ref = f"{repo}@{img.digest}"
    unlock = f"--image {ref} --delete-enabled true"
    expect_locked(client.delete(f"/v2/{repo}/manifests/{img.digest}"), ref, unlock=unlock)
    expect_locked(client.delete(f"/acr/v1/{repo}/_manifests/{img.digest}"), ref, unlock=unlock)
    expect_locked(client.delete(f"/acr/v1/{repo}"), ref, unlock=unlock)
    expect_status(client.delete(f"/acr/v1/{repo}/_tags/v1"), 202)  # untag: the manifest stays
    patch(client, f"{repo}/_manifests/{img.digest}", deleteEnabled=True)
    expect_status(client.delete(f"/acr/v1/{repo}/_manifests/{img.digest}"), 202)


def test_delete_locked_repository(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    patch(client, repo, deleteEnabled=False)
    unlock = f"--repository {repo} --delete-enabled true"
    expect_locked(client.delete(f"/acr/v1/{repo}"), repo, unlock=unlock)
    expect_locked(client.delete(f"/v2/{repo}/manifests/v1"), repo, unlock=unlock)
    expect_locked(client.delete(f"/v2/{repo}/manifests/{img.digest}"), repo, unlock=unlock)
    # Pushing is still allowed.
    expect_status(put_manifest(client, repo, "v2", other_image(client, repo).manifest), 201)
    patch(client, repo, deleteEnabled=True)
    expect_status(client.delete(f"/acr/v1/{repo}"), 202)
    expect_error(client.get(f"/acr/v1/{repo}"), 404, "NAME_UNKNOWN")


def test_repository_delete_names_every_lock(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "a")
    expect_status(put_manifest(client, repo, "b", img.manifest), 201)
    patch(client, f"{repo}/_tags/a", deleteEnabled=False, writeEnabled=False)
    patch(client, f"{repo}/_tags/b", writeEnabled=False)
    patch(client, f"{repo}/_manifests/{img.digest}", deleteEnabled=False)
    entry = expect_locked(
        client.delete(f"/acr/v1/{repo}"),
        f"{repo}@{img.digest}",
        f"{repo}:a",
        f"{repo}:b",
        unlock=f"--image {repo}@{img.digest} --delete-enabled true",
    )
    assert entry["message"].startswith(f"cannot delete repository '{repo}'")
    assert "deleteEnabled=false and writeEnabled=false" in entry["message"]
    assert "likewise for each lock named" in entry["message"]
    assert entry["detail"]["locked"][1] == {
        "kind": "tag",
        "name": f"{repo}:a",
        "attributes": ["deleteEnabled", "writeEnabled"],
    }
    assert all_tags(client, repo) == ["a", "b"]


# ------------------------------------------------------------------- readEnabled


def test_read_locked_tag(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    expect_status(put_manifest(client, repo, "v2", img.manifest), 201)
    patch(client, f"{repo}/_tags/v1", readEnabled=False)
    unlock = f"--image {repo}:v1 --read-enabled true"
    entry = expect_locked(pull(client, repo, "v1"), f"{repo}:v1", unlock=unlock)
    assert entry["message"].startswith(f"cannot pull '{repo}:v1'")
    expect_locked(pull(client, repo, "v1", "HEAD"), unlock=unlock)
    # The same manifest by digest or by another tag, and its blobs, are still pulled.
    expect_status(pull(client, repo, img.digest), 200)
    expect_status(pull(client, repo, "v2"), 200)
    assert get_blob(client, repo, push_blob(client, repo, img.config)) == img.config
    # Its metadata is still readable.
    assert attributes_of(client, f"{repo}/_tags/v1")["readEnabled"] is False
    patch(client, f"{repo}/_tags/v1", readEnabled=True)
    expect_status(pull(client, repo, "v1"), 200)


def test_read_locked_manifest(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    patch(client, f"{repo}/_manifests/{img.digest}", readEnabled=False)
    ref = f"{repo}@{img.digest}"
    unlock = f"--image {ref} --read-enabled true"
    expect_locked(pull(client, repo, img.digest), ref, unlock=unlock)
    expect_locked(pull(client, repo, "v1"), ref, unlock=unlock)
    expect_locked(pull(client, repo, img.digest, "HEAD"), unlock=unlock)
    patch(client, f"{repo}/_manifests/{img.digest}", readEnabled=True)
    expect_status(pull(client, repo, "v1"), 200)


def test_read_locked_repository(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    patch(client, repo, readEnabled=False)
    patch(client, f"{repo}/_tags/v1", readEnabled=False)
    unlock = f"--repository {repo} --read-enabled true"
    # Every lock on the way is named; the command lifts the repository's first.
    expect_locked(pull(client, repo, "v1"), repo, f"{repo}:v1", unlock=unlock)
    expect_locked(pull(client, repo, img.digest), repo, unlock=unlock)
    assert get_blob(client, repo, push_blob(client, repo, img.config)) == img.config
    assert all_tags(client, repo) == ["v1"]
    patch(client, repo, readEnabled=True)
    expect_status(pull(client, repo, img.digest), 200)
    patch(client, f"{repo}/_tags/v1", readEnabled=True)
    expect_status(pull(client, repo, "v1"), 200)


# ------------------------------------------------------------------- listEnabled


def test_list_disabled_tag_and_manifest(client: httpx.Client, repo: str) -> None:
    shown = push_image(client, repo, "shown")
    hidden = push_image(client, repo, "hidden")
    patch(client, f"{repo}/_tags/hidden", listEnabled=False)
    assert all_tags(client, repo) == ["shown"]
    assert acr_tags(client, repo) == ["shown"]
    # Addressed directly it is all there.
    expect_status(pull(client, repo, "hidden"), 200)
    assert attributes_of(client, f"{repo}/_tags/hidden")["listEnabled"] is False
    assert sorted(acr_manifests(client, repo)) == sorted([shown.digest, hidden.digest])
    patch(client, f"{repo}/_manifests/{hidden.digest}", listEnabled=False)
    assert acr_manifests(client, repo) == [shown.digest]
    # Paging over hidden entries still walks every shown one.
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"n": 1, "last": "a"}), 200)
    assert r.json()["tags"] == ["shown"]
    patch(client, f"{repo}/_tags/hidden", listEnabled=True)
    patch(client, f"{repo}/_manifests/{hidden.digest}", listEnabled=True)
    assert all_tags(client, repo) == ["hidden", "shown"]
    assert len(acr_manifests(client, repo)) == 2


def test_list_disabled_repository_leaves_the_catalogs(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    assert repo in catalog(client) and repo in acr_catalog(client)
    patch(client, repo, listEnabled=False)
    assert repo not in catalog(client)
    assert repo not in acr_catalog(client)
    # The repository itself still answers.
    assert all_tags(client, repo) == ["v1"]
    expect_status(pull(client, repo, "v1"), 200)
    patch(client, repo, listEnabled=True)
    assert repo in catalog(client) and repo in acr_catalog(client)


# --------------------------------------------------------------------- concurrency


def test_concurrent_lock_and_pushes_end_consistent(live_registry: Any, repo: str) -> None:
    """Pushes under one tag race a PATCH that write-locks it: each push either lands or
    is refused with LOCKED; every push that starts after the PATCH answered is refused;
    the tag ends on a push that landed, intact."""
    with connect(live_registry) as client:
        images = [push_image_blobs_only(client, repo) for _ in range(12)]
        push_image(client, repo, "race")
    locked_at: list[float] = []
    outcomes: list[tuple[float, int, str]] = []  # (start, status, digest)
    lock = threading.Lock()

    def push(image: Image) -> None:
        with connect(live_registry) as http:
            for _ in range(3):
                start = time.monotonic()
                r = put_manifest(http, repo, "race", image.manifest)
                with lock:
                    outcomes.append((start, r.status_code, image.digest))
                if r.status_code == 405:
                    expect_error(r, 405, "LOCKED")

    def lock_it() -> None:
        time.sleep(0.05)
        with connect(live_registry) as http:
            patch(http, f"{repo}/_tags/race", writeEnabled=False)
        locked_at.append(time.monotonic())

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(push, image) for image in images]
        futures.append(pool.submit(lock_it))
        for future in futures:
            future.result()
    assert {status for _, status, _ in outcomes} <= {201, 405}, outcomes
    after = [o for o in outcomes if o[0] > locked_at[0]]
    assert all(status == 405 for _, status, _ in after), after
    landed = {digest for _, status, digest in outcomes if status == 201}
    with connect(live_registry) as client:
        final = pull(client, repo, "race").headers["Docker-Content-Digest"]
        assert attributes_of(client, f"{repo}/_tags/race")["writeEnabled"] is False
        if landed:
            assert final in landed
        check_repository_consistent(client, repo)
        # Still locked for everyone.
        expect_locked(
            put_manifest(client, repo, "race", images[0].manifest),
            f"{repo}:race",
            unlock=f"--image {repo}:race --write-enabled true",
        )
