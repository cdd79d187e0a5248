"""Tags list and catalog with ``n``/``last`` and ``Link`` pagination, and the
referrers API with ``artifactType`` filtering (OCI Distribution Spec v1.1)."""

from __future__ import annotations

import httpx
import pytest
from api_support import (
    OCI_INDEX,
    OCI_MANIFEST,
    all_tags,
    digest_of,
    expect_error,
    expect_status,
    push_artifact,
    push_blob,
    push_image,
    push_manifest,
    random_bytes,
    unique_repo,
)


def walk(client: httpx.Client, url: str, key: str, prefix: str = "") -> tuple[list[str], list[str]]:
    """Follow Link headers from ``url``; return every entry under ``key`` and each page's URL.

    With ``prefix``, stop at the first page that goes past the entries starting with it
    (the shared server's catalog holds every other test's repositories too).
    """
    items: list[str] = []
    pages: list[str] = []
    next_url: str | None = url
    while next_url and not (prefix and items and not items[-1].startswith(prefix)):
        pages.append(next_url)
        assert len(pages) < 100, pages[-3:]
        r = expect_status(client.get(next_url), 200)
        assert r.headers["Content-Type"].startswith("application/json")
        items += r.json()[key] or []
        link = r.headers.get("Link")
        if link is None:
            next_url = None
        else:
            target, rel = (part.strip() for part in link.split(";", 1))
            assert rel == 'rel="next"', link
            assert target.startswith("<") and target.endswith(">"), link
            next_url = target[1:-1]
    return items, pages


@pytest.fixture
def tagged(client: httpx.Client, repo: str) -> list[str]:
    """A repository with seven tags on one image; returns them in lexical order."""
    img = push_image(client, repo, "latest")
    for tag in ("v1", "v10", "v2", "A", "_under", "1.0"):
        push_manifest(client, repo, tag, img.manifest, OCI_MANIFEST)
    return sorted(["latest", "v1", "v10", "v2", "A", "_under", "1.0"])


def test_tags_list(client: httpx.Client, repo: str, tagged: list[str]) -> None:
    r = expect_status(client.get(f"/v2/{repo}/tags/list"), 200)
    assert r.json() == {"name": repo, "tags": tagged}
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_tags_pagination_with_link(
    client: httpx.Client, repo: str, tagged: list[str], n: int
) -> None:
    tags, pages = walk(client, f"/v2/{repo}/tags/list?n={n}", "tags")
    assert tags == tagged
    # A Link only when more tags follow: no empty last page.
    assert len(pages) == -(-len(tagged) // n)
    for page in pages[1:]:
        assert page.startswith(f"/v2/{repo}/tags/list?")
        assert f"n={n}" in page


def test_tags_n_and_last(client: httpx.Client, repo: str, tagged: list[str]) -> None:
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "_under"}), 200)
    after = [t for t in tagged if t > "_under"]
    assert r.json()["tags"] == after[:2]
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"last": "v1"}), 200)
    assert r.json()["tags"] == [t for t in tagged if t > "v1"]
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"last": "zzz"}), 200)
    assert r.json()["tags"] == []


def test_no_link_when_the_page_ends_the_list(
    client: httpx.Client, repo: str, tagged: list[str]
) -> None:
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"n": len(tagged)}), 200)
    assert r.json()["tags"] == tagged
    assert "Link" not in r.headers
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": tagged[-3]}), 200)
    assert r.json()["tags"] == tagged[-2:]
    assert "Link" not in r.headers
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": tagged[-4]}), 200)
    assert r.json()["tags"] == tagged[-3:-1]
    assert "Link" in r.headers


def test_catalog_has_no_link_after_its_last_repository(client: httpx.Client) -> None:
    prefix = unique_repo("zzzzzzzz")  # sorts after every other test's repositories
    names = [f"{prefix}/{c}" for c in "abc"]
    for name in names:
        push_blob(client, name, random_bytes(8))
    r = expect_status(client.get("/v2/_catalog", params={"n": 3, "last": prefix}), 200)
    assert r.json()["repositories"] == names
    assert "Link" not in r.headers
    r = expect_status(client.get("/v2/_catalog", params={"n": 2, "last": prefix}), 200)
    assert r.json()["repositories"] == names[:2]
    assert "Link" in r.headers


def test_tags_n_zero_is_empty(client: httpx.Client, repo: str, tagged: list[str]) -> None:
    r = expect_status(client.get(f"/v2/{repo}/tags/list", params={"n": 0}), 200)
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


def test_tags_of_unknown_repository(client: httpx.Client) -> None:
    name = unique_repo()
    expect_error(client.get(f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")
    expect_error(client.get(f"/v2/{name}/tags/list?n=0"), 404, "NAME_UNKNOWN")


def test_tags_of_nested_repository_link(client: httpx.Client) -> None:
    name = f"{unique_repo()}/sub/image"
    img = push_image(client, name, "a")
    push_manifest(client, name, "b", img.manifest, OCI_MANIFEST)
    tags, pages = walk(client, f"/v2/{name}/tags/list?n=1", "tags")
    assert tags == ["a", "b"]
    assert pages[1].startswith(f"/v2/{name}/tags/list?")


def test_catalog_pagination(client: httpx.Client) -> None:
    prefix = unique_repo("cat")
    names = sorted(f"{prefix}/{suffix}" for suffix in ("b", "a", "c/d", "c", "e"))
    for name in names:
        push_blob(client, name, random_bytes(8))
    everything = expect_status(client.get("/v2/_catalog"), 200).json()["repositories"]
    assert everything == sorted(everything)
    assert [n for n in everything if n.startswith(prefix)] == names
    # Start just before our names; the shared server may hold others after them.
    for n in (1, 2, 5):
        seen, pages = walk(client, f"/v2/_catalog?n={n}&last={prefix}", "repositories", prefix)
        assert [s for s in seen if s.startswith(prefix + "/")] == names
        assert all(p.startswith("/v2/_catalog?") for p in pages)
    r = expect_status(client.get("/v2/_catalog", params={"n": 2, "last": names[1]}), 200)
    assert r.json()["repositories"] == names[2:4]
    assert "Link" in r.headers
    r = expect_status(client.get("/v2/_catalog", params={"n": 0}), 200)
    assert r.json()["repositories"] == []


def test_repository_from_a_tag_push_appears_in_catalog(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "x")
    r = expect_status(client.get("/v2/_catalog", params={"n": 1, "last": repo[:-1]}), 200)
    assert r.json()["repositories"] == [repo]
    assert all_tags(client, repo) == ["x"]


# -- referrers ---------------------------------------------------------------------


def test_referrers_of_a_manifest_without_any(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    r = expect_status(client.get(f"/v2/{repo}/referrers/{img.digest}"), 200)
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    assert "OCI-Filters-Applied" not in r.headers


def test_referrers_of_an_unknown_subject_is_an_empty_index(client: httpx.Client) -> None:
    r = expect_status(client.get(f"/v2/{unique_repo()}/referrers/{digest_of(b'x')}"), 200)
    assert r.json()["manifests"] == []


def test_referrers_list_and_artifact_type_filter(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    other = push_image(client, repo, "v2")
    sig = push_artifact(
        client, repo, img, "application/vnd.example.sig", annotations={"org.example.k": "v"}
    )
    sbom1 = push_artifact(client, repo, img, "application/vnd.example.sbom")
    sbom2 = push_artifact(client, repo, img, "application/vnd.example.sbom")
    push_artifact(client, repo, other, "application/vnd.example.sig")

    r = expect_status(client.get(f"/v2/{repo}/referrers/{img.digest}"), 200)
    body = r.json()
    assert body["mediaType"] == OCI_INDEX and body["schemaVersion"] == 2
    by_digest = {m["digest"]: m for m in body["manifests"]}
    assert set(by_digest) == {sig, sbom1, sbom2}
    for digest, entry in by_digest.items():
        assert entry["mediaType"] == OCI_MANIFEST
        got = expect_status(client.get(f"/v2/{repo}/manifests/{digest}"), 200)
        assert entry["size"] == len(got.content)
    assert by_digest[sig]["artifactType"] == "application/vnd.example.sig"
    assert by_digest[sig]["annotations"] == {"org.example.k": "v"}

    r = expect_status(
        client.get(
            f"/v2/{repo}/referrers/{img.digest}",
            params={"artifactType": "application/vnd.example.sbom"},
        ),
        200,
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert {m["digest"] for m in r.json()["manifests"]} == {sbom1, sbom2}

    r = expect_status(
        client.get(
            f"/v2/{repo}/referrers/{img.digest}",
            params={"artifactType": "application/vnd.example.none"},
        ),
        200,
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert r.json()["manifests"] == []


def test_referrer_artifact_type_falls_back_to_config_media_type(
    client: httpx.Client, repo: str
) -> None:
    subject = push_image(client, repo, "v1")
    ref = push_image(
        client,
        repo,
        None,
        subject={
            "mediaType": OCI_MANIFEST,
            "digest": subject.digest,
            "size": len(subject.manifest),
        },
    )
    r = expect_status(client.get(f"/v2/{repo}/referrers/{subject.digest}"), 200)
    [entry] = r.json()["manifests"]
    assert entry["digest"] == ref.digest
    assert entry["artifactType"] == "application/vnd.oci.image.config.v1+json"


def test_deleted_referrer_disappears(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "v1")
    sig = push_artifact(client, repo, img, "application/vnd.example.sig")
    expect_status(client.delete(f"/v2/{repo}/manifests/{sig}"), 202)
    r = expect_status(client.get(f"/v2/{repo}/referrers/{img.digest}"), 200)
    assert r.json()["manifests"] == []


def test_referrers_with_a_bad_digest(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    expect_error(client.get(f"/v2/{repo}/referrers/sha256:nothex"), 400, "DIGEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/referrers/latest"), 400, "DIGEST_INVALID")
