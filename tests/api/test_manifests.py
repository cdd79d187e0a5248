"""Manifests over HTTP: every supported media type round-trips byte for byte,
references must exist, schema 1 is refused, tags and digests resolve, deletes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_support import (
    ALL_MANIFESTS,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    descriptor,
    digest_of,
    encode,
    expect_error,
    expect_status,
    image_manifest,
    push_blob,
    push_empty_config,
    push_image,
    push_manifest,
    put_manifest,
    random_bytes,
)

OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"


def index_of(media_type: str, *images: Image, **extra: Any) -> dict[str, Any]:
    """An index / manifest list naming ``images`` as linux/amd64 children."""
    child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": child_type,
                "digest": img.digest,
                "size": len(img.manifest),
                "platform": {"architecture": f"arch{i}", "os": "linux"},
            }
            for i, img in enumerate(images)
        ],
        **extra,
    }


def assert_pull(client: httpx.Client, repo: str, ref: str, body: bytes, media_type: str) -> None:
    """GET and HEAD by ``ref`` give back exactly ``body`` with its type and digest."""
    r = expect_status(
        client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ALL_MANIFESTS}), 200
    )
    assert r.content == body
    assert r.headers["Content-Type"] == media_type
    assert r.headers["Docker-Content-Digest"] == digest_of(body)
    h = expect_status(
        client.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ALL_MANIFESTS}), 200
    )
    assert h.content == b""
    assert h.headers["Content-Length"] == str(len(body))
    assert h.headers["Content-Type"] == media_type
    assert h.headers["Docker-Content-Digest"] == digest_of(body)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_image_manifest_round_trip(client: httpx.Client, repo: str, media_type: str) -> None:
    img = push_image(client, repo, "v1", layers=2, media_type=media_type)
    assert_pull(client, repo, "v1", img.manifest, media_type)
    assert_pull(client, repo, img.digest, img.manifest, media_type)


@pytest.mark.parametrize(
    ("index_type", "child_type"), [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)]
)
def test_index_round_trip(
    client: httpx.Client, repo: str, index_type: str, child_type: str
) -> None:
    children = [push_image(client, repo, None, media_type=child_type) for _ in range(2)]
    body = encode(index_of(index_type, *children))
    digest = push_manifest(client, repo, "multi", body, index_type)
    assert_pull(client, repo, "multi", body, index_type)
    assert_pull(client, repo, digest, body, index_type)


def test_index_without_media_type_field_uses_content_type(client: httpx.Client, repo: str) -> None:
    child = push_image(client, repo, None)
    doc = index_of(OCI_INDEX, child)
    del doc["mediaType"]
    body = encode(doc)
    push_manifest(client, repo, "bare", body, OCI_INDEX)
    assert_pull(client, repo, "bare", body, OCI_INDEX)


def test_manifest_pushed_by_digest_only(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, None)
    assert_pull(client, repo, img.digest, img.manifest, OCI_MANIFEST)
    r = expect_status(client.get(f"/v2/{repo}/tags/list"), 200)
    assert r.json()["tags"] == []


def test_manifest_pushed_by_sha512_digest(client: httpx.Client, repo: str) -> None:
    config, layer = random_bytes(50), random_bytes(50)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    body = encode(image_manifest(config, [layer]))
    digest = digest_of(body, "sha512")
    r = expect_status(put_manifest(client, repo, digest, body), 201)
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    r = expect_status(client.get(f"/v2/{repo}/manifests/{digest}"), 200)
    assert r.content == body
    assert r.headers["Docker-Content-Digest"] == digest


def test_manifest_naming_sha512_blobs(client: httpx.Client, repo: str) -> None:
    config, layer = random_bytes(60), random_bytes(6000)
    push_blob(client, repo, config, "sha512")
    push_blob(client, repo, layer, "sha512")
    doc = image_manifest(config, [layer])
    doc["config"]["digest"] = digest_of(config, "sha512")
    doc["layers"][0]["digest"] = digest_of(layer, "sha512")
    body = encode(doc)
    push_manifest(client, repo, "v512", body, OCI_MANIFEST)
    assert_pull(client, repo, "v512", body, OCI_MANIFEST)
    # The same bytes named by sha256 are not the blob the manifest references.
    doc["layers"][0]["digest"] = digest_of(layer)
    expect_error(put_manifest(client, repo, "v256", encode(doc)), 400, "MANIFEST_BLOB_UNKNOWN")


def test_artifact_with_artifact_type_and_subject(client: httpx.Client, repo: str) -> None:
    subject = push_image(client, repo, "v1")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": push_empty_config(client, repo),
        "layers": [descriptor("application/json", b"{}")],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": subject.digest,
            "size": len(subject.manifest),
        },
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    body = encode(doc)
    r = expect_status(put_manifest(client, repo, "sbom", body), 201)
    assert r.headers["OCI-Subject"] == subject.digest
    assert_pull(client, repo, "sbom", body, OCI_MANIFEST)


def test_artifact_manifest_media_type(client: httpx.Client, repo: str) -> None:
    subject = push_image(client, repo, "v1")
    blob = random_bytes(30)
    push_blob(client, repo, blob)
    doc = {
        "mediaType": OCI_ARTIFACT_MANIFEST,
        "schemaVersion": 2,
        "artifactType": "application/vnd.example.signature",
        "blobs": [descriptor("application/octet-stream", blob)],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": subject.digest,
            "size": len(subject.manifest),
        },
    }
    body = encode(doc)
    r = expect_status(put_manifest(client, repo, digest_of(body), body, OCI_ARTIFACT_MANIFEST), 201)
    assert r.headers["OCI-Subject"] == subject.digest
    assert_pull(client, repo, digest_of(body), body, OCI_ARTIFACT_MANIFEST)


def test_subject_may_be_pushed_after_its_referrer(client: httpx.Client, repo: str) -> None:
    absent = digest_of(random_bytes(20))
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.early",
        "config": push_empty_config(client, repo),
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": absent, "size": 123},
    }
    body = encode(doc)
    r = expect_status(put_manifest(client, repo, digest_of(body), body), 201)
    assert r.headers["OCI-Subject"] == absent


def test_foreign_layers_need_not_exist(client: httpx.Client, repo: str) -> None:
    config = random_bytes(40)
    push_blob(client, repo, config)
    doc = image_manifest(config, [], media_type=DOCKER_MANIFEST)
    doc["layers"] = [
        {
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": digest_of(b"windows base layer"),
            "size": 18,
            "urls": ["https://example.invalid/layer"],
        }
    ]
    push_manifest(client, repo, "foreign", encode(doc), DOCKER_MANIFEST)


def test_manifest_bytes_are_kept_exactly(client: httpx.Client, repo: str) -> None:
    config, layer = random_bytes(10), random_bytes(10)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(config, [layer])
    body = json.dumps(doc, indent=3).encode() + b"\n\n"
    digest = push_manifest(client, repo, "pretty", body, OCI_MANIFEST)
    assert digest == digest_of(body)
    assert_pull(client, repo, "pretty", body, OCI_MANIFEST)


def test_retag_moves_the_tag(client: httpx.Client, repo: str) -> None:
    first = push_image(client, repo, "moving")
    second = push_image(client, repo, "moving")
    assert_pull(client, repo, "moving", second.manifest, OCI_MANIFEST)
    assert_pull(client, repo, first.digest, first.manifest, OCI_MANIFEST)


def test_same_manifest_under_many_tags(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "a")
    for tag in ("b", "c", "1.0", "latest_", "x" * 128):
        push_manifest(client, repo, tag, img.manifest, OCI_MANIFEST)
        assert_pull(client, repo, tag, img.manifest, OCI_MANIFEST)


# -- references must exist ---------------------------------------------------------


def test_manifest_with_missing_layer_is_refused(client: httpx.Client, repo: str) -> None:
    config, layer = random_bytes(30), random_bytes(30)
    push_blob(client, repo, config)
    body = encode(image_manifest(config, [layer]))
    entry = expect_error(put_manifest(client, repo, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert digest_of(layer) in str(entry)
    expect_error(client.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/manifests/{digest_of(body)}"), 404, "MANIFEST_UNKNOWN")


def test_manifest_with_missing_config_is_refused(client: httpx.Client, repo: str) -> None:
    config, layer = random_bytes(30), random_bytes(30)
    push_blob(client, repo, layer)
    body = encode(image_manifest(config, [layer], media_type=DOCKER_MANIFEST))
    expect_error(
        put_manifest(client, repo, "v1", body, DOCKER_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN"
    )


def test_blob_of_another_repository_does_not_count(client: httpx.Client, repo: str) -> None:
    config, layer = random_bytes(30), random_bytes(30)
    push_blob(client, repo, config)
    push_blob(client, repo + "-other", layer)
    body = encode(image_manifest(config, [layer]))
    expect_error(put_manifest(client, repo, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
def test_index_with_missing_child_is_refused(
    client: httpx.Client, repo: str, index_type: str
) -> None:
    present = push_image(client, repo, None)
    missing = Image(repo, b"{}", digest_of(random_bytes(9)), b"", ())
    body = encode(index_of(index_type, present, missing))
    entry = expect_error(
        put_manifest(client, repo, "multi", body, index_type), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    assert missing.digest in str(entry)
    expect_error(client.get(f"/v2/{repo}/manifests/multi"), 404, "MANIFEST_UNKNOWN")


# -- schema 1 --------------------------------------------------------------------

_SCHEMA1 = {
    "schemaVersion": 1,
    "name": "library/hello",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": digest_of(b"layer")}],
    "history": [{"v1Compatibility": "{}"}],
}


@pytest.mark.parametrize(
    "content_type", [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_MANIFEST, "application/json"]
)
def test_schema1_is_refused_with_a_clear_error(
    client: httpx.Client, repo: str, content_type: str
) -> None:
    r = put_manifest(client, repo, "old", encode(_SCHEMA1), content_type)
    entry = expect_error(r, 400, "MANIFEST_INVALID")
    assert "schema 1" in entry["message"]
    expect_error(client.get(f"/v2/{repo}/manifests/old"), 404, "MANIFEST_UNKNOWN")


def test_schema1_media_type_in_body_is_refused(client: httpx.Client, repo: str) -> None:
    body = encode({**_SCHEMA1, "schemaVersion": 2, "mediaType": DOCKER_SCHEMA1_SIGNED})
    entry = expect_error(
        put_manifest(client, repo, "old", body, DOCKER_SCHEMA1_SIGNED), 400, "MANIFEST_INVALID"
    )
    assert "schema 1" in entry["message"]


# -- deletes ---------------------------------------------------------------------


def test_delete_manifest_by_digest_removes_its_tags(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "a")
    push_manifest(client, repo, "b", img.manifest, OCI_MANIFEST)
    keep = push_image(client, repo, "keep")
    expect_status(client.delete(f"/v2/{repo}/manifests/{img.digest}"), 202)
    expect_error(client.get(f"/v2/{repo}/manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.head(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/manifests/b"), 404, "MANIFEST_UNKNOWN")
    assert expect_status(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"] == ["keep"]
    assert_pull(client, repo, "keep", keep.manifest, OCI_MANIFEST)
    expect_error(client.delete(f"/v2/{repo}/manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")


def test_delete_tag_keeps_the_manifest(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "a")
    push_manifest(client, repo, "b", img.manifest, OCI_MANIFEST)
    expect_status(client.delete(f"/v2/{repo}/manifests/a"), 202)
    expect_error(client.get(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")
    assert_pull(client, repo, "b", img.manifest, OCI_MANIFEST)
    assert_pull(client, repo, img.digest, img.manifest, OCI_MANIFEST)
    expect_error(client.delete(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")


def test_manifest_push_after_delete(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "a")
    expect_status(client.delete(f"/v2/{repo}/manifests/{img.digest}"), 202)
    push_manifest(client, repo, "a", img.manifest, OCI_MANIFEST)
    assert_pull(client, repo, "a", img.manifest, OCI_MANIFEST)
