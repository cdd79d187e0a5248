"""ACR's metadata API beside /v2/ (SPEC §3.7): ``/acr/v1/_catalog``, repository,
tag and manifest attributes, paging with ``n``/``last``/``orderby`` and ``Link``,
deletes and their effect on /v2/, and bad input.

The JSON shapes are ACR's (data-plane API 2021-07-01): the tests check key sets
exactly, so a script written for ACR finds every key it reads.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jmespath
import pytest
from api_support import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    all_tags,
    catalog,
    connect,
    descriptor,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    image_manifest,
    push_artifact,
    push_blob,
    push_image,
    push_manifest,
    random_bytes,
    unique_repo,
)

#: The live server's default registry ("local") at its login server ("<name>.<domain>").
LOGIN_SERVER = os.environ.get("HAMN_TEST_LOGIN_SERVER", "local.localhost")
ALL_ENABLED = {
    "deleteEnabled": True,
    "writeEnabled": True,
    "readEnabled": True,
    "listEnabled": True,
}
#: ACR's timestamps: UTC, seven fractional digits, "Z".
ACR_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z\Z")

REPOSITORY_KEYS = {
    "registry",
    "imageName",
    "createdTime",
    "lastUpdateTime",
    "manifestCount",
    "tagCount",
    "changeableAttributes",
}
TAG_KEYS = {"name", "digest", "createdTime", "lastUpdateTime", "signed", "changeableAttributes"}
MANIFEST_KEYS = {
    "digest",
    "imageSize",
    "createdTime",
    "lastUpdateTime",
    "architecture",
    "os",
    "mediaType",
    "configMediaType",
    "tags",
    "changeableAttributes",
}

Server = Callable[[], Any]


# ----------------------------------------------------------------------- helpers


def next_link(resp: httpx.Response) -> str | None:
    """The target of a ``Link: <...>; rel="next"`` header, checked for shape."""
    link = resp.headers.get("Link")
    if link is None:
        return None
    target, rel = (part.strip() for part in link.split(";", 1))
    assert rel == 'rel="next"', link
    assert target.startswith("<") and target.endswith(">"), link
    return target[1:-1]


def walk(client: httpx.Client, url: str, key: str) -> tuple[list[Any], list[str]]:
    """Follow Link headers from ``url``; every entry under ``key`` and every page URL."""
    items: list[Any] = []
    pages: list[str] = []
    next_url: str | None = url
    while next_url:
        pages.append(next_url)
        assert len(pages) < 500, pages[-3:]
        r = expect_status(client.get(next_url), 200)
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        items += body[key]
        next_url = next_link(r)
        if next_url is not None:
            assert body[key], "a Link after an empty page"
    return items, pages


def query_of(url: str) -> dict[str, str]:
    """A URL's query parameters (single values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def time_key(tag: dict[str, Any]) -> tuple[str, str]:
    # ACR's fixed-width timestamps sort as text in time order.
    return tag["lastUpdateTime"], tag["name"]


def push_tags(
    client: httpx.Client, repo: str, count: int, prefix: str = "t"
) -> tuple[Image, list[str]]:
    """One image tagged ``count`` times, names shuffled (so time order is not name order)."""
    img = push_image(client, repo, None)
    names = [f"{prefix}{(i * 7919) % count:04d}" for i in range(count)]
    for name in names:
        push_manifest(client, repo, name, img.manifest, OCI_MANIFEST)
    return img, names


def push_platform_image(
    client: httpx.Client,
    repo: str,
    architecture: str,
    os_name: str,
    *,
    media_type: str = OCI_MANIFEST,
    tag: str | None = None,
) -> tuple[str, bytes, int]:
    """Push an image whose config names a platform; return its digest, bytes and imageSize."""
    config = encode(
        {
            "architecture": architecture,
            "os": os_name,
            "rootfs": {"type": "layers"},
            "nonce": random_bytes(8).hex(),
        }
    )
    layers = [random_bytes(300), random_bytes(700)]
    for data in (config, *layers):
        push_blob(client, repo, data)
    body = encode(image_manifest(config, layers, media_type=media_type))
    digest = push_manifest(client, repo, tag or digest_of(body), body, media_type)
    return digest, body, len(config) + sum(len(layer) for layer in layers)


def acr_get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    """GET an /acr/v1 path, assert 200 JSON; return the body."""
    r = expect_status(client.get(path, params=params), 200)
    assert r.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def check_tag(tag: dict[str, Any], name: str, digest: str) -> None:
    assert set(tag) == TAG_KEYS, tag
    assert tag["name"] == name
    assert tag["digest"] == digest
    assert ACR_TIME.match(tag["createdTime"]), tag
    assert ACR_TIME.match(tag["lastUpdateTime"]), tag
    assert tag["createdTime"] <= tag["lastUpdateTime"]
    assert tag["signed"] is False
    assert tag["changeableAttributes"] == ALL_ENABLED


# -------------------------------------------------------------------- repository


def test_repository_attributes(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    push_manifest(client, repo, "v2", img.manifest)
    push_image(client, repo, None)  # untagged
    body = acr_get(client, f"/acr/v1/{repo}")
    assert set(body) == REPOSITORY_KEYS, body
    assert body["registry"] == LOGIN_SERVER
    assert body["imageName"] == repo
    assert body["manifestCount"] == 2
    assert body["tagCount"] == 2
    assert body["changeableAttributes"] == ALL_ENABLED
    assert ACR_TIME.match(body["createdTime"]) and ACR_TIME.match(body["lastUpdateTime"])
    assert body["createdTime"] <= body["lastUpdateTime"]


def test_repository_of_blobs_only_has_zero_counts(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, random_bytes(10))
    body = acr_get(client, f"/acr/v1/{repo}")
    assert (body["manifestCount"], body["tagCount"]) == (0, 0)
    assert acr_get(client, f"/acr/v1/{repo}/_tags")["tags"] == []
    assert acr_get(client, f"/acr/v1/{repo}/_manifests")["manifests"] == []


def test_routing_by_path_segment_and_login_server(
    client: httpx.Client, live_registry: Any, repo: str
) -> None:
    push_image(client, repo, "v1")
    by_path = acr_get(client, f"/acr/v1/local/{repo}/_tags/v1")
    assert by_path["imageName"] == repo
    assert by_path["registry"] == LOGIN_SERVER
    port = live_registry.host.rsplit(":", 1)[1]
    r = client.get(f"/acr/v1/{repo}", headers={"Host": f"{LOGIN_SERVER}:{port}"})
    assert expect_status(r, 200).json()["imageName"] == repo


def test_head_answers_like_get_without_a_body(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    for path in (f"/acr/v1/{repo}", f"/acr/v1/{repo}/_tags", f"/acr/v1/{repo}/_tags/v1"):
        r = expect_status(client.head(path), 200)
        assert r.content == b""
    expect_error(client.head(f"/acr/v1/{repo}/_tags/nope"), 404, "TAG_UNKNOWN")


# -------------------------------------------------------------------------- tags


def test_tag_attributes(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    body = acr_get(client, f"/acr/v1/{repo}/_tags/v1")
    assert set(body) == {"registry", "imageName", "tag"}
    assert (body["registry"], body["imageName"]) == (LOGIN_SERVER, repo)
    check_tag(body["tag"], "v1", img.digest)


def test_repush_moves_last_update_time_not_created_time(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    before = acr_get(client, f"/acr/v1/{repo}/_tags/v1")["tag"]
    other = push_image(client, repo, "v1")
    after = acr_get(client, f"/acr/v1/{repo}/_tags/v1")["tag"]
    check_tag(after, "v1", other.digest)
    assert after["createdTime"] == before["createdTime"]
    assert after["lastUpdateTime"] > before["lastUpdateTime"]


def test_tags_list_shape_and_default_order(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "b")
    for tag in ("a", "C", "_x", "1.0"):
        push_manifest(client, repo, tag, img.manifest)
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags"), 200)
    assert "Link" not in r.headers
    body = r.json()
    assert set(body) == {"registry", "imageName", "tags"}
    assert (body["registry"], body["imageName"]) == (LOGIN_SERVER, repo)
    names = [t["name"] for t in body["tags"]]
    assert names == sorted(["a", "b", "C", "_x", "1.0"])  # bytewise, like /v2/ tags/list
    for tag in body["tags"]:
        check_tag(tag, tag["name"], img.digest)


@pytest.fixture(scope="module")
def many_tags(live_registry: Any) -> tuple[str, list[str]]:
    """A repository with 250 tags pushed in an order unrelated to their names."""
    with connect(live_registry) as c:
        repo = unique_repo("many")
        _, names = push_tags(c, repo, 250)
    return repo, names


@pytest.mark.parametrize("orderby", ["", "timeasc", "timedesc"])
@pytest.mark.parametrize("n", [100, 7])
def test_tag_paging_sees_every_tag_once_in_order(
    client: httpx.Client, many_tags: tuple[str, list[str]], orderby: str, n: int
) -> None:
    repo, names = many_tags
    url = f"/acr/v1/{repo}/_tags?n={n}" + (f"&orderby={orderby}" if orderby else "")
    tags, pages = walk(client, url, "tags")
    assert sorted(t["name"] for t in tags) == sorted(names)  # all, each once
    assert len(pages) == math.ceil(len(names) / n)  # no empty last page
    if orderby == "":
        assert [t["name"] for t in tags] == sorted(names)
    elif orderby == "timeasc":
        assert [t["name"] for t in tags] == names  # pushed in this order
        assert tags == sorted(tags, key=time_key)
    else:
        assert [t["name"] for t in tags] == names[::-1]
        assert tags == sorted(tags, key=time_key, reverse=True)
    for page in pages[1:]:
        assert page.startswith(f"/acr/v1/{repo}/_tags?last=")
        params = query_of(page)
        assert params["n"] == str(n)
        assert params["orderby"] == orderby  # kept, empty when by name (as ACR does)


def test_tag_link_is_acr_shaped(client: httpx.Client, many_tags: tuple[str, list[str]]) -> None:
    repo, names = many_tags
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags", params={"n": 2}), 200)
    first_two = sorted(names)[:2]
    assert [t["name"] for t in r.json()["tags"]] == first_two
    assert (
        r.headers["Link"] == f'</acr/v1/{repo}/_tags?last={first_two[1]}&n=2&orderby=>; rel="next"'
    )
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags?n=2&orderby=timedesc"), 200)
    tail = r.json()["tags"][-1]
    link = next_link(r)
    assert link is not None
    assert link.startswith(f"/acr/v1/{repo}/_tags?last={tail['name']}&n=2&orderby=timedesc&")
    assert query_of(link)["lastUpdateTime"] == tail["lastUpdateTime"]


def test_default_page_is_100(client: httpx.Client, many_tags: tuple[str, list[str]]) -> None:
    repo, _ = many_tags
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags"), 200)
    assert len(r.json()["tags"]) == 100
    link = next_link(r)
    assert link is not None and query_of(link)["n"] == "100"


@pytest.mark.parametrize("orderby", ["timeasc", "timedesc"])
def test_time_paging_with_last_alone_as_acr_clients_send_it(
    client: httpx.Client, many_tags: tuple[str, list[str]], orderby: str
) -> None:
    """ACR's clients may send only ``last``: hamn looks the tag's time up."""
    repo, _ = many_tags
    first = acr_get(client, f"/acr/v1/{repo}/_tags", n=40, orderby=orderby)["tags"]
    via_last = acr_get(
        client, f"/acr/v1/{repo}/_tags", n=40, orderby=orderby, last=first[-1]["name"]
    )["tags"]
    everything = acr_get(client, f"/acr/v1/{repo}/_tags", n=80, orderby=orderby)["tags"]
    assert first + via_last == everything


def test_page_size_is_capped_at_1000(client: httpx.Client, repo: str) -> None:
    _, names = push_tags(client, repo, 1001)
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags", params={"n": 5000}), 200)
    assert len(r.json()["tags"]) == 1000
    link = next_link(r)
    assert link is not None and query_of(link)["n"] == "1000"
    rest = expect_status(client.get(link), 200)
    assert [t["name"] for t in rest.json()["tags"]] == [sorted(names)[-1]]
    assert "Link" not in rest.headers


def test_n_zero_is_an_empty_page(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags", params={"n": 0}), 200)
    assert r.json()["tags"] == [] and "Link" not in r.headers
    expect_error(client.get(f"/acr/v1/{repo}x/_tags", params={"n": 0}), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("orderby", ["timeasc", "timedesc"])
def test_time_paging_survives_a_repush_and_a_delete_between_pages(
    client: httpx.Client, repo: str, orderby: str
) -> None:
    """hamn's Link carries the boundary tag's time, so when that tag moves or goes
    between two pages, the walk neither skips nor restarts."""
    img, names = push_tags(client, repo, 30)
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags?n=10&orderby={orderby}"), 200)
    page1 = [t["name"] for t in r.json()["tags"]]
    link = next_link(r)
    assert link is not None
    push_manifest(client, repo, page1[-1], img.manifest)  # re-push: its time moves to now
    rest, _ = walk(client, link, "tags")
    walked = page1 + [t["name"] for t in rest]
    expected = names if orderby == "timeasc" else names[::-1]
    if orderby == "timeasc":
        # The re-pushed tag is seen again at the end, where it now stands.
        assert walked == [*expected, page1[-1]]
    else:
        assert walked == expected

    r = expect_status(client.get(f"/acr/v1/{repo}/_tags?n=10&orderby={orderby}"), 200)
    page1 = [t["name"] for t in r.json()["tags"]]
    link = next_link(r)
    assert link is not None
    expect_status(client.delete(f"/acr/v1/{repo}/_tags/{page1[-1]}"), 202)
    rest, _ = walk(client, link, "tags")
    full = acr_get(client, f"/acr/v1/{repo}/_tags", n=100, orderby=orderby)["tags"]
    assert page1[:-1] + [t["name"] for t in rest] == [t["name"] for t in full]


@pytest.mark.sqlite_database  # gives the tags one timestamp in metadata.db
def test_time_order_ties_break_on_name(own_server: Server, stop_server: Any) -> None:
    """Tags sharing one timestamp page stably: by name, descending in timedesc."""
    reg = own_server()
    with connect(reg) as c:
        repo = unique_repo()
        _, names = push_tags(c, repo, 23)
    stop_server(reg)
    with sqlite3.connect(reg.data_dir / "metadata.db") as db:
        db.execute("UPDATE tags SET updated_at = (SELECT min(updated_at) FROM tags)")
    reg = own_server()
    with connect(reg) as c:
        for orderby, expected in (("timeasc", sorted(names)), ("timedesc", sorted(names)[::-1])):
            tags, pages = walk(c, f"/acr/v1/{repo}/_tags?n=4&orderby={orderby}", "tags")
            assert [t["name"] for t in tags] == expected
            assert len({t["lastUpdateTime"] for t in tags}) == 1
            assert len(pages) == 6
            # ACR clients that send only last= page the same way.
            second = acr_get(c, f"/acr/v1/{repo}/_tags", n=4, orderby=orderby, last=expected[3])
            assert [t["name"] for t in second["tags"]] == expected[4:8]


def test_tags_filtered_by_digest(client: httpx.Client, repo: str) -> None:
    a = push_image(client, repo, "a1")
    push_manifest(client, repo, "a2", a.manifest)
    b = push_image(client, repo, "b1")
    body = acr_get(client, f"/acr/v1/{repo}/_tags", digest=a.digest)
    assert [t["name"] for t in body["tags"]] == ["a1", "a2"]
    r = expect_status(client.get(f"/acr/v1/{repo}/_tags", params={"digest": a.digest, "n": 1}), 200)
    link = next_link(r)
    assert link is not None and query_of(link)["digest"] == a.digest
    assert [t["name"] for t in walk(client, link, "tags")[0]] == ["a2"]
    assert [
        t["name"] for t in acr_get(client, f"/acr/v1/{repo}/_tags", digest=b.digest)["tags"]
    ] == ["b1"]
    assert acr_get(client, f"/acr/v1/{repo}/_tags", digest=digest_of(b"none"))["tags"] == []


def test_untag_keeps_manifest_and_layers(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    push_manifest(client, repo, "v2", img.manifest)
    r = expect_status(client.delete(f"/acr/v1/{repo}/_tags/v1"), 202)
    assert r.content == b""
    expect_error(client.get(f"/acr/v1/{repo}/_tags/v1"), 404, "TAG_UNKNOWN")
    expect_error(client.delete(f"/acr/v1/{repo}/_tags/v1"), 404, "TAG_UNKNOWN")
    assert all_tags(client, repo) == ["v2"]
    expect_error(client.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    expect_status(client.get(f"/v2/{repo}/manifests/{img.digest}"), 200)
    assert get_blob(client, repo, digest_of(img.layers[0])) == img.layers[0]
    manifest = acr_get(client, f"/acr/v1/{repo}/_manifests/{img.digest}")["manifest"]
    assert manifest["tags"] == ["v2"]


# --------------------------------------------------------------------- manifests


def test_manifest_attributes_of_an_image(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v2", layers=3, layer_size=1000)
    push_manifest(client, repo, "v1", img.manifest)
    body = acr_get(client, f"/acr/v1/{repo}/_manifests/{img.digest}")
    assert set(body) == {"registry", "imageName", "manifest"}
    assert (body["registry"], body["imageName"]) == (LOGIN_SERVER, repo)
    m = body["manifest"]
    assert set(m) == MANIFEST_KEYS, m  # no "references" on an image
    assert m["digest"] == img.digest
    assert m["imageSize"] == len(img.config) + 3 * 1000
    assert (m["architecture"], m["os"]) == ("amd64", "linux")
    assert m["mediaType"] == OCI_MANIFEST
    assert m["configMediaType"] == OCI_CONFIG
    assert m["tags"] == ["v1", "v2"]
    assert m["changeableAttributes"] == ALL_ENABLED
    assert ACR_TIME.match(m["createdTime"]) and m["lastUpdateTime"] == m["createdTime"]
    # The listing shows the same entry.
    listed = acr_get(client, f"/acr/v1/{repo}/_manifests")["manifests"]
    assert listed == [m]


@pytest.mark.parametrize(
    ("index_type", "image_type", "config_type"),
    [(OCI_INDEX, OCI_MANIFEST, OCI_CONFIG), (DOCKER_LIST, DOCKER_MANIFEST, DOCKER_CONFIG)],
)
def test_manifest_attributes_of_an_index(
    client: httpx.Client, repo: str, index_type: str, image_type: str, config_type: str
) -> None:
    arm, arm_body, arm_size = push_platform_image(
        client, repo, "arm64", "linux", media_type=image_type
    )
    win, win_body, win_size = push_platform_image(
        client, repo, "amd64", "windows", media_type=image_type
    )
    index = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [
            {
                **descriptor(image_type, arm_body),
                "platform": {"architecture": "arm64", "os": "linux"},
            },
            {
                **descriptor(image_type, win_body),
                "platform": {"architecture": "amd64", "os": "windows"},
            },
        ],
    }
    index_digest = push_manifest(client, repo, "multi", index)
    m = acr_get(client, f"/acr/v1/{repo}/_manifests/{index_digest}")["manifest"]
    assert set(m) == MANIFEST_KEYS | {"references"}, m
    assert m["mediaType"] == index_type
    assert m["references"] == [
        {"digest": arm, "architecture": "arm64", "os": "linux"},
        {"digest": win, "architecture": "amd64", "os": "windows"},
    ]
    # An index has no single platform or config; its size is what it lists.
    assert (m["architecture"], m["os"], m["configMediaType"]) == (None, None, None)
    assert m["imageSize"] == len(arm_body) + len(win_body)
    assert m["tags"] == ["multi"]
    children = {c["digest"]: c for c in acr_get(client, f"/acr/v1/{repo}/_manifests")["manifests"]}
    assert (children[arm]["architecture"], children[arm]["os"]) == ("arm64", "linux")
    assert (children[win]["architecture"], children[win]["os"]) == ("amd64", "windows")
    assert children[arm]["imageSize"] == arm_size and children[win]["imageSize"] == win_size
    assert children[arm]["configMediaType"] == config_type
    assert children[arm]["tags"] == [] and "references" not in children[arm]


def test_manifest_attributes_of_an_artifact(client: httpx.Client, repo: str) -> None:
    subject = push_image(client, repo, "v1")
    artifact = push_artifact(client, repo, subject, "application/vnd.example.sbom")
    m = acr_get(client, f"/acr/v1/{repo}/_manifests/{artifact}")["manifest"]
    assert set(m) == MANIFEST_KEYS
    assert m["configMediaType"] == OCI_EMPTY
    assert (m["architecture"], m["os"]) == (None, None)  # the config names no platform
    assert m["imageSize"] == 2 + 64  # "{}" and the 64-byte layer
    assert m["tags"] == []


@pytest.mark.parametrize("orderby", ["", "timeasc", "timedesc"])
def test_manifest_paging(client: httpx.Client, repo: str, orderby: str) -> None:
    pushed = [
        push_image(client, repo, f"v{i}" if i % 3 else None, layer_size=16).digest
        for i in range(23)
    ]
    url = f"/acr/v1/{repo}/_manifests?n=5" + (f"&orderby={orderby}" if orderby else "")
    manifests, pages = walk(client, url, "manifests")
    digests = [m["digest"] for m in manifests]
    assert len(pages) == 5
    if orderby == "":
        assert digests == sorted(pushed)
    elif orderby == "timeasc":
        assert digests == pushed
    else:
        assert digests == pushed[::-1]
    for page in pages[1:]:
        assert page.startswith(f"/acr/v1/{repo}/_manifests?last=sha256%3A")
        assert query_of(page)["orderby"] == orderby
    untagged = {d for i, d in enumerate(pushed) if i % 3 == 0}
    assert {m["digest"] for m in manifests if not m["tags"]} == untagged
    if orderby:
        # An ACR client's last= alone (a digest) continues where the Link would.
        second = acr_get(
            client, f"/acr/v1/{repo}/_manifests", n=5, orderby=orderby, last=digests[4]
        )
        assert [m["digest"] for m in second["manifests"]] == digests[5:10]


def test_delete_untagged_manifests_like_the_seed(client: httpx.Client, repo: str) -> None:
    """The seed's pipeline: list manifests, pick those without tags
    (``[?tags[0]==null].digest``), delete each; the tagged ones stay."""
    tagged = [push_image(client, repo, tag).digest for tag in ("v1", "v2", "v3")]
    untagged = [push_image(client, repo, None).digest for _ in range(3)]
    push_image(client, repo, "v1")  # moves v1: its old manifest is untagged now
    untagged.append(tagged.pop(0))
    manifests, _ = walk(client, f"/acr/v1/{repo}/_manifests?n=2", "manifests")
    picked = jmespath.search("[?tags[0]==null].digest", manifests)
    assert sorted(picked) == sorted(untagged)
    for digest in picked:
        expect_status(client.delete(f"/acr/v1/{repo}/_manifests/{digest}"), 202)
    left, _ = walk(client, f"/acr/v1/{repo}/_manifests", "manifests")
    assert jmespath.search("[?tags[0]==null].digest", left) == []
    assert {m["digest"] for m in left} >= set(tagged)
    assert sorted(all_tags(client, repo)) == ["v1", "v2", "v3"]


def test_delete_manifest_deletes_its_tags(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    push_manifest(client, repo, "v2", img.manifest)
    keep = push_image(client, repo, "keep")
    r = expect_status(client.delete(f"/acr/v1/{repo}/_manifests/{img.digest}"), 202)
    assert r.content == b""
    expect_error(client.get(f"/v2/{repo}/manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert all_tags(client, repo) == ["keep"]
    expect_error(client.get(f"/acr/v1/{repo}/_manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.delete(f"/acr/v1/{repo}/_manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get(f"/acr/v1/{repo}/_tags/v2"), 404, "TAG_UNKNOWN")
    body = acr_get(client, f"/acr/v1/{repo}")
    assert (body["manifestCount"], body["tagCount"]) == (1, 1)
    assert [m["digest"] for m in acr_get(client, f"/acr/v1/{repo}/_manifests")["manifests"]] == [
        keep.digest
    ]


# ---------------------------------------------------------- repository delete


def test_delete_repository(client: httpx.Client, repo: str) -> None:
    a = push_image(client, repo, "v1")
    push_manifest(client, repo, "v2", a.manifest)
    b = push_image(client, repo, None)
    r = expect_status(client.delete(f"/acr/v1/{repo}"), 202)
    assert r.json() == {
        "manifestsDeleted": sorted([a.digest, b.digest]),
        "tagsDeleted": ["v1", "v2"],
    }
    expect_error(client.get(f"/acr/v1/{repo}"), 404, "NAME_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/manifests/{a.digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/blobs/{digest_of(a.config)}"), 404, "BLOB_UNKNOWN")
    assert repo not in catalog(client)
    expect_error(client.delete(f"/acr/v1/{repo}"), 404, "NAME_UNKNOWN")
    # The name can be pushed to again, from nothing.
    c = push_image(client, repo, "v1")
    body = acr_get(client, f"/acr/v1/{repo}")
    assert (body["manifestCount"], body["tagCount"]) == (1, 1)
    assert all_tags(client, repo) == ["v1"]
    assert acr_get(client, f"/acr/v1/{repo}/_tags/v1")["tag"]["digest"] == c.digest


def test_delete_repository_leaves_others_alone(client: httpx.Client) -> None:
    base = unique_repo()
    names = [base, f"{base}/sub", f"{base}x"]
    images = {name: push_image(client, name, "v1") for name in names}
    expect_status(client.delete(f"/acr/v1/{base}"), 202)
    for name in names[1:]:
        assert all_tags(client, name) == ["v1"]
        assert get_blob(client, name, digest_of(images[name].layers[0])) == images[name].layers[0]


# ------------------------------------------------------------------------- catalog


def test_catalog(client: httpx.Client) -> None:
    prefix = unique_repo("acrcat")
    names = sorted(f"{prefix}-{i}" for i in range(5))
    for name in names:
        push_blob(client, name, random_bytes(4))
    r = expect_status(client.get("/acr/v1/_catalog", params={"n": 2, "last": prefix}), 200)
    assert set(r.json()) == {"repositories"}
    assert r.json()["repositories"] == names[:2]
    assert r.headers["Link"] == f'</acr/v1/_catalog?last={names[1]}&n=2>; rel="next"'
    seen: list[str] = []
    url: str | None = f"/acr/v1/_catalog?n=2&last={prefix}"
    while url and not (seen and not seen[-1].startswith(prefix)):
        r = expect_status(client.get(url), 200)
        seen += r.json()["repositories"]
        url = next_link(r)
    assert [s for s in seen if s.startswith(prefix)] == names
    assert len(acr_get(client, "/acr/v1/_catalog")["repositories"]) <= 100
    assert names[0] in catalog(client)  # /v2/ agrees


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "path",
    ["", "/_tags", "/_tags/v1", "/_manifests", "/_manifests/" + digest_of(b"x")],
)
def test_unknown_repository(client: httpx.Client, path: str) -> None:
    expect_error(client.get(f"/acr/v1/{unique_repo()}{path}"), 404, "NAME_UNKNOWN")


def test_unknown_tag_and_manifest(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    expect_error(client.get(f"/acr/v1/{repo}/_tags/v2"), 404, "TAG_UNKNOWN")
    expect_error(client.delete(f"/acr/v1/{repo}/_tags/v2"), 404, "TAG_UNKNOWN")
    missing = digest_of(b"missing")
    expect_error(client.get(f"/acr/v1/{repo}/_manifests/{missing}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.delete(f"/acr/v1/{repo}/_manifests/{missing}"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("name", ["UPPER", "a//b", "-lead", "a..b", "_tags", "x" * 256])
def test_bad_repository_name(client: httpx.Client, name: str) -> None:
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/_tags"), ("GET", "/_manifests")]:
        r = client.request(method, f"/acr/v1/{name}{suffix}")
        expect_error(r, 400, "NAME_INVALID")


def test_bad_tag_and_digest_in_path(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    expect_error(client.get(f"/acr/v1/{repo}/_tags/-bad"), 400, "TAG_INVALID")
    expect_error(client.delete(f"/acr/v1/{repo}/_tags/{'x' * 129}"), 400, "TAG_INVALID")
    for ref in ("v1", "sha256:xyz", "sha256:" + "A" * 64):
        expect_error(client.get(f"/acr/v1/{repo}/_manifests/{ref}"), 400, "DIGEST_INVALID")
        expect_error(client.delete(f"/acr/v1/{repo}/_manifests/{ref}"), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "1e3"])
@pytest.mark.parametrize("path", ["/_tags", "/_manifests", None])
def test_bad_page_size(client: httpx.Client, repo: str, n: str, path: str | None) -> None:
    push_image(client, repo, "v1")
    url = "/acr/v1/_catalog" if path is None else f"/acr/v1/{repo}{path}"
    expect_error(client.get(url, params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("path", ["/_tags", "/_manifests"])
def test_bad_orderby_and_position(client: httpx.Client, repo: str, path: str) -> None:
    push_image(client, repo, "v1")
    url = f"/acr/v1/{repo}{path}"
    for orderby in ("time", "name", "timedesc,timeasc"):
        expect_error(client.get(url, params={"orderby": orderby}), 400, "PARAMETER_INVALID")
    # Case does not matter, and "none" is the default order.
    expect_status(client.get(url, params={"orderby": "TimeDesc"}), 200)
    expect_status(client.get(url, params={"orderby": "none"}), 200)
    for stamp in ("yesterday", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00"):
        r = client.get(url, params={"orderby": "timeasc", "last": "v1", "lastUpdateTime": stamp})
        expect_error(r, 400, "PARAMETER_INVALID")
    # In a time order, last= alone must name something that exists (its time is looked up).
    r = client.get(url, params={"orderby": "timedesc", "last": "gone"})
    expect_error(r, 400, "PARAMETER_INVALID")
    # By name it need not: the page starts after it lexically, as on /v2/.
    expect_status(client.get(url, params={"last": "gone"}), 200)


def test_bad_digest_filter(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    expect_error(
        client.get(f"/acr/v1/{repo}/_tags", params={"digest": "nope"}), 400, "DIGEST_INVALID"
    )


@pytest.mark.parametrize(
    ("path", "keys"),
    [("", REPOSITORY_KEYS), ("/_tags/v1", TAG_KEYS), ("/_manifests/{digest}", MANIFEST_KEYS)],
)
def test_patch_answers_with_acr_keys_and_every_get_shows_the_flags(
    client: httpx.Client, repo: str, path: str, keys: set[str]
) -> None:
    """The PATCH answer has GET's shape and keys; GETs and listings show the real
    flags (tests/api/test_locks.py checks what the locks do)."""
    img = push_image(client, repo, "v1")
    url = f"/acr/v1/{repo}{path.format(digest=img.digest)}"
    r = expect_status(client.patch(url, json={"writeEnabled": False}), 200)
    body = r.json()
    assert body == acr_get(client, url)
    resource = body.get("tag") or body.get("manifest") or body
    assert set(resource) == keys, resource
    assert resource["changeableAttributes"] == {**ALL_ENABLED, "writeEnabled": False}
    listing = {
        "/_tags/v1": (f"/acr/v1/{repo}/_tags", "tags"),
        "/_manifests/{digest}": (f"/acr/v1/{repo}/_manifests", "manifests"),
    }.get(path)
    if listing is not None:
        (entry,) = acr_get(client, listing[0])[listing[1]]
        assert entry["changeableAttributes"] == resource["changeableAttributes"]
    expect_status(client.patch(url, json={"writeEnabled": True}), 200)
    assert acr_get(client, f"/acr/v1/{repo}/_tags/v1")["tag"]["changeableAttributes"] == ALL_ENABLED


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/_tags"),
        ("DELETE", "/_tags"),
        ("PUT", ""),
        ("DELETE", "/_manifests"),
        ("POST", "/_manifests/sha256:" + "a" * 64),
    ],
)
def test_unsupported_method(client: httpx.Client, repo: str, method: str, path: str) -> None:
    expect_error(client.request(method, f"/acr/v1/{repo}{path}"), 405, "UNSUPPORTED")


def test_unknown_endpoints(client: httpx.Client, repo: str) -> None:
    expect_error(client.get("/acr/v1/"), 404, "NOT_FOUND")
    expect_error(client.get(f"/acr/v1/{repo}/_tags/v1/extra"), 400, "NAME_INVALID")
    # The recycle bin's routes (tests/api/test_soft_delete.py) answer their own errors.
    expect_error(client.get(f"/acr/v1/_deleted/{repo}/_manifests"), 404, "NAME_UNKNOWN")
    expect_error(client.delete(f"/acr/v1/_deleted/{repo}/_manifests"), 405, "UNSUPPORTED")
    expect_error(client.get(f"/acr/v1/_deleted/{repo}"), 404, "NOT_FOUND")
    expect_error(client.post("/acr/v1/_catalog"), 405, "UNSUPPORTED")


def test_error_bodies_are_the_acr_envelope(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/acr/v1/{repo}")
    body = json.loads(r.content)
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    assert {"code", "message"} <= set(body["errors"][0])
