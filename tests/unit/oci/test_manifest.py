"""Manifest and index parsing (hamn.oci.manifest): every media type and every refusal."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hamn.errors import MANIFEST_INVALID, MANIFEST_TOO_LARGE, HamnError
from hamn.oci.digest import digest_bytes
from hamn.oci.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_BYTES,
    OCI_ARTIFACT_MANIFEST,
    OCI_EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ParsedManifest,
    parse_manifest,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"

#: A field value meaning "leave this key out of the document".
_DROP = object()


def desc(media_type: str, content: bytes = b"x", **extra: Any) -> dict[str, Any]:
    """A descriptor of ``content`` as a JSON object."""
    return {"mediaType": media_type, "digest": digest_bytes(content), "size": len(content), **extra}


def oci_manifest(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, b"{}config"),
        "layers": [desc(OCI_LAYER, b"layer0"), desc(OCI_LAYER, b"layer1")],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not _DROP}


def oci_index(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            desc(OCI_MANIFEST, b"amd64", platform={"architecture": "amd64", "os": "linux"}),
            desc(OCI_MANIFEST, b"arm64", platform={"architecture": "arm64", "os": "linux"}),
        ],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not _DROP}


def parse(doc: object, content_type: str | None = None) -> ParsedManifest:
    return parse_manifest(orjson.dumps(doc), content_type)


def invalid(doc: object, content_type: str | None = None) -> HamnError:
    with pytest.raises(HamnError) as exc:
        parse(doc, content_type)
    assert exc.value.code is MANIFEST_INVALID
    assert exc.value.status == 400
    return exc.value


# -- the supported types ---------------------------------------------------------------------


def test_oci_image_manifest() -> None:
    doc = oci_manifest(annotations={"org.opencontainers.image.title": "app"})
    m = parse(doc, OCI_MANIFEST)
    assert m.media_type == OCI_MANIFEST
    assert m.config == Descriptor(OCI_CONFIG, digest_bytes(b"{}config"), 8)
    assert [d.digest for d in m.layers] == [digest_bytes(b"layer0"), digest_bytes(b"layer1")]
    # The config comes first, then the layers in order.
    assert m.blobs == (m.config, *m.layers)
    assert m.manifests == ()
    assert m.subject is None
    assert m.annotations == {"org.opencontainers.image.title": "app"}
    assert m.artifact_type == OCI_CONFIG


def test_oci_image_manifest_without_layers_key_is_accepted() -> None:
    m = parse(oci_manifest(layers=_DROP), OCI_MANIFEST)
    assert m.layers == ()
    assert m.blobs == (m.config,)


def test_oci_index() -> None:
    doc = oci_index(annotations={"a": "b"})
    m = parse(doc, OCI_INDEX)
    assert m.media_type == OCI_INDEX
    assert m.blobs == ()
    assert m.config is None
    assert [d.digest for d in m.manifests] == [digest_bytes(b"amd64"), digest_bytes(b"arm64")]
    assert m.manifests[0].platform == {"architecture": "amd64", "os": "linux"}
    assert m.manifests[0].media_type == OCI_MANIFEST
    assert m.artifact_type is None
    assert m.subject is None
    assert m.annotations == {"a": "b"}


def test_empty_oci_index_is_accepted() -> None:
    m = parse(oci_index(manifests=[]), OCI_INDEX)
    assert m.manifests == ()


def test_docker_schema2_manifest() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, b"cfg"),
        "layers": [desc(DOCKER_LAYER, b"l0")],
    }
    m = parse(doc, DOCKER_MANIFEST)
    assert m.media_type == DOCKER_MANIFEST
    assert [d.digest for d in m.blobs] == [digest_bytes(b"cfg"), digest_bytes(b"l0")]
    assert m.artifact_type == DOCKER_CONFIG


def test_docker_schema2_manifest_needs_layers() -> None:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": desc(DOCKER_CONFIG)}
    assert "layers" in invalid(doc, DOCKER_MANIFEST).message


def test_docker_manifest_list() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            desc(DOCKER_MANIFEST, b"m1", platform={"architecture": "amd64", "os": "linux"}),
            desc(DOCKER_MANIFEST, b"m2", platform={"architecture": "s390x", "os": "linux"}),
        ],
    }
    m = parse(doc, DOCKER_MANIFEST_LIST)
    assert m.media_type == DOCKER_MANIFEST_LIST
    assert [d.digest for d in m.manifests] == [digest_bytes(b"m1"), digest_bytes(b"m2")]
    assert m.blobs == ()


def test_docker_manifest_list_needs_manifests() -> None:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST}
    assert "manifests" in invalid(doc).message


def test_image_manifest_as_artifact_with_artifact_type_and_subject() -> None:
    # OCI 1.1 artifacts: an image manifest with artifactType, the empty config and a subject.
    subject = desc(OCI_MANIFEST, b"the image")
    doc = oci_manifest(
        artifactType=SBOM,
        config=desc(OCI_EMPTY_JSON, b"{}"),
        layers=[desc(SBOM, b"sbom")],
        subject=subject,
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    m = parse(doc, OCI_MANIFEST)
    assert m.artifact_type == SBOM
    assert m.subject == Descriptor(OCI_MANIFEST, subject["digest"], subject["size"])
    assert m.config is not None and m.config.media_type == OCI_EMPTY_JSON
    assert [d.digest for d in m.blobs] == [digest_bytes(b"{}"), digest_bytes(b"sbom")]


def test_artifact_type_falls_back_to_config_media_type() -> None:
    doc = oci_manifest(config=desc(SIGNATURE, b"{}"), subject=desc(OCI_MANIFEST))
    assert parse(doc).artifact_type == SIGNATURE


def test_empty_artifact_type_falls_back_to_config_media_type() -> None:
    assert parse(oci_manifest(artifactType="")).artifact_type == OCI_CONFIG


def test_oci_artifact_manifest() -> None:
    # The artifact manifest's own spec (image-spec 1.1.0-rc2, artifact.md) has no schemaVersion,
    # so the manifests oras and notation pushed in that format do not carry one.
    subject = desc(OCI_MANIFEST, b"img")
    doc = {
        "mediaType": OCI_ARTIFACT_MANIFEST,
        "artifactType": SIGNATURE,
        "blobs": [desc("application/octet-stream", b"sig")],
        "subject": subject,
        "annotations": {"k": "v"},
    }
    m = parse(doc, OCI_ARTIFACT_MANIFEST)
    assert m.media_type == OCI_ARTIFACT_MANIFEST
    assert m.artifact_type == SIGNATURE
    assert m.subject is not None and m.subject.digest == subject["digest"]
    assert [d.digest for d in m.blobs] == [digest_bytes(b"sig")]
    assert m.layers == m.blobs
    assert m.manifests == ()
    assert m.annotations == {"k": "v"}


def test_oci_artifact_manifest_with_schema_version_and_no_blobs() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_ARTIFACT_MANIFEST, "artifactType": SIGNATURE}
    m = parse(doc)
    assert m.blobs == ()
    assert m.artifact_type == SIGNATURE


def test_index_with_artifact_type_and_subject() -> None:
    doc = oci_index(artifactType=SBOM, subject=desc(OCI_INDEX, b"other index"))
    m = parse(doc)
    assert m.artifact_type == SBOM
    assert m.subject is not None and m.subject.media_type == OCI_INDEX


def test_null_subject_is_no_subject() -> None:
    assert parse(oci_manifest(subject=None)).subject is None


# -- which type: mediaType, Content-Type, shape ---------------------------------------------


def test_type_from_content_type_when_body_has_no_media_type() -> None:
    doc = oci_manifest(mediaType=_DROP)
    assert parse(doc, OCI_MANIFEST).media_type == OCI_MANIFEST
    docker = {"schemaVersion": 2, "config": desc(DOCKER_CONFIG), "layers": []}
    assert parse(docker, DOCKER_MANIFEST).media_type == DOCKER_MANIFEST


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/octet-stream"])
def test_type_inferred_from_shape(content_type: str | None) -> None:
    assert parse(oci_manifest(mediaType=_DROP), content_type).media_type == OCI_MANIFEST
    assert parse(oci_index(mediaType=_DROP), content_type).media_type == OCI_INDEX


def test_type_cannot_be_told() -> None:
    assert "mediaType" in invalid({"schemaVersion": 2, "layers": []}).message


@pytest.mark.parametrize(
    "content_type",
    [
        OCI_MANIFEST,
        OCI_MANIFEST.upper(),
        f"{OCI_MANIFEST}; charset=utf-8",
        f"  {OCI_MANIFEST} ;q=1",
        "application/json",  # a generic type does not contradict the body
        None,
    ],
)
def test_content_type_agreeing_with_media_type(content_type: str | None) -> None:
    assert parse(oci_manifest(), content_type).media_type == OCI_MANIFEST


@pytest.mark.parametrize(
    ("body_type", "content_type"),
    [
        (OCI_MANIFEST, OCI_INDEX),
        (OCI_MANIFEST, DOCKER_MANIFEST),
        (OCI_INDEX, DOCKER_MANIFEST_LIST),
        (DOCKER_MANIFEST, OCI_MANIFEST),
        (OCI_ARTIFACT_MANIFEST, OCI_MANIFEST),
    ],
)
def test_content_type_contradicting_media_type(body_type: str, content_type: str) -> None:
    is_index = body_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)
    doc = oci_index(mediaType=body_type) if is_index else oci_manifest(mediaType=body_type)
    err = invalid(doc, content_type)
    assert err.detail == {"contentType": content_type, "mediaType": body_type}


@pytest.mark.parametrize("media_type", ["application/json", OCI_CONFIG, "text/plain", ""])
def test_unsupported_body_media_type(media_type: str) -> None:
    err = invalid(oci_manifest(mediaType=media_type), OCI_MANIFEST)
    assert err.detail == {"mediaType": media_type}


@pytest.mark.parametrize("media_type", [2, True, ["x"], {"x": 1}])
def test_media_type_must_be_a_string(media_type: object) -> None:
    invalid(oci_manifest(mediaType=media_type))


# -- schema 1 --------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED])
def test_schema1_refused_by_media_type(media_type: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": media_type, "config": desc(DOCKER_CONFIG)}
    assert "schema 1" in invalid(doc).message


@pytest.mark.parametrize(
    "content_type",
    [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, f"{DOCKER_SCHEMA1_SIGNED}; charset=utf-8"],
)
def test_schema1_refused_by_content_type(content_type: str) -> None:
    # Even when the body claims to be something else, and even when it is not JSON.
    assert "schema 1" in invalid(oci_manifest(), content_type).message
    with pytest.raises(HamnError) as exc:
        parse_manifest(b"-----BEGIN JWS-----", content_type)
    assert "schema 1" in exc.value.message


def test_schema1_refused_by_schema_version() -> None:
    doc = {"schemaVersion": 1, "name": "library/busybox", "tag": "latest", "fsLayers": []}
    err = invalid(doc)
    assert "schema 1" in err.message
    assert "schema 2" in err.message  # the message says what to use instead


@pytest.mark.parametrize("version", [None, 0, 3, "2", 2.5, [2], False])
def test_schema_version_must_be_2(version: object) -> None:
    doc = oci_manifest(schemaVersion=version)
    assert "schemaVersion" in invalid(doc).message


def test_schema_version_true_is_refused() -> None:
    # JSON true equals 1 in Python; it must not pass as a version either way.
    invalid(oci_manifest(schemaVersion=True))


def test_schema_version_missing() -> None:
    invalid(oci_manifest(schemaVersion=_DROP))


# -- not a manifest at all -------------------------------------------------------------------


@pytest.mark.parametrize("doc", [[], [oci_manifest()], "manifest", 2, 2.5, None, True])
def test_non_object_json(doc: object) -> None:
    assert "JSON object" in invalid(doc).message


@pytest.mark.parametrize(
    "body", [b"", b"{", b"{'schemaVersion': 2}", b"\xff\xfe", b"null null", b'{"a":1,}']
)
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(HamnError) as exc:
        parse_manifest(body, OCI_MANIFEST)
    assert exc.value.code is MANIFEST_INVALID
    assert "JSON" in exc.value.message


def test_oversized_manifest_is_refused_before_parsing() -> None:
    body = b" " * (MAX_MANIFEST_BYTES + 1)
    with pytest.raises(HamnError) as exc:
        parse_manifest(body, OCI_MANIFEST)
    assert exc.value.code is MANIFEST_TOO_LARGE
    assert exc.value.status == 413
    assert exc.value.detail == {"size": MAX_MANIFEST_BYTES + 1, "limit": MAX_MANIFEST_BYTES}


def test_manifest_of_exactly_the_limit_is_accepted() -> None:
    body = orjson.dumps(oci_manifest())
    body += b" " * (MAX_MANIFEST_BYTES - len(body))
    assert len(body) == MAX_MANIFEST_BYTES == 4 * 1024 * 1024
    assert parse_manifest(body, OCI_MANIFEST).media_type == OCI_MANIFEST


# -- descriptors -----------------------------------------------------------------------------


def test_image_manifest_needs_config() -> None:
    assert "config" in invalid(oci_manifest(config=_DROP), OCI_MANIFEST).message


def test_index_needs_manifests() -> None:
    assert "manifests" in invalid(oci_index(manifests=_DROP), OCI_INDEX).message


@pytest.mark.parametrize("key", ["layers", "manifests", "blobs"])
@pytest.mark.parametrize("value", [{}, "x", 1, desc(OCI_LAYER)])
def test_descriptor_lists_must_be_lists(key: str, value: object) -> None:
    doc = {
        "layers": oci_manifest(layers=value),
        "manifests": oci_index(manifests=value),
        "blobs": {"schemaVersion": 2, "mediaType": OCI_ARTIFACT_MANIFEST, "blobs": value},
    }[key]
    assert key in invalid(doc).message


_GOOD = desc(OCI_LAYER, b"good")
_BAD_DESCRIPTORS: list[tuple[str, object]] = [
    ("not an object", "sha256:abc"),
    ("a list", [_GOOD]),
    ("null", None),
    ("missing mediaType", {k: v for k, v in _GOOD.items() if k != "mediaType"}),
    ("empty mediaType", {**_GOOD, "mediaType": ""}),
    ("mediaType not a string", {**_GOOD, "mediaType": 7}),
    ("missing digest", {k: v for k, v in _GOOD.items() if k != "digest"}),
    ("digest not a string", {**_GOOD, "digest": 12345}),
    ("digest too short", {**_GOOD, "digest": "sha256:abc"}),
    ("digest uppercase", {**_GOOD, "digest": _GOOD["digest"].upper()}),
    ("digest without algorithm", {**_GOOD, "digest": _GOOD["digest"].split(":")[1]}),
    ("digest path trick", {**_GOOD, "digest": "sha256:../../etc/passwd"}),
    ("digest unsupported algorithm", {**_GOOD, "digest": "md5:" + "a" * 32}),
    ("empty digest", {**_GOOD, "digest": ""}),
    ("missing size", {k: v for k, v in _GOOD.items() if k != "size"}),
    ("negative size", {**_GOOD, "size": -1}),
    ("bool size true", {**_GOOD, "size": True}),
    ("bool size false", {**_GOOD, "size": False}),
    ("float size", {**_GOOD, "size": 4.0}),
    ("string size", {**_GOOD, "size": "4"}),
    ("null size", {**_GOOD, "size": None}),
    ("artifactType not a string", {**_GOOD, "artifactType": 1}),
    ("annotations not an object", {**_GOOD, "annotations": ["a"]}),
    ("annotation value not a string", {**_GOOD, "annotations": {"a": 1}}),
    ("platform not an object", {**_GOOD, "platform": "linux/amd64"}),
    ("urls not a list", {**_GOOD, "urls": "https://example.com/x"}),
    ("urls of non-strings", {**_GOOD, "urls": [1]}),
]


_WHERE = ["config", "layers[1]", "manifests[0]", "blobs[0]", "subject"]


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        pytest.param(where, bad, id=f"{where}-{name}")
        for where in _WHERE
        for name, bad in _BAD_DESCRIPTORS
        if not (where == "subject" and bad is None)  # a null subject means no subject
    ],
)
def test_invalid_descriptors_are_refused_wherever_they_are(where: str, bad: object) -> None:
    if where == "config":
        doc = oci_manifest(config=bad)
    elif where == "layers[1]":
        doc = oci_manifest(layers=[_GOOD, bad])
    elif where == "manifests[0]":
        doc = oci_index(manifests=[bad])
    elif where == "blobs[0]":
        doc = {"schemaVersion": 2, "mediaType": OCI_ARTIFACT_MANIFEST, "blobs": [bad]}
    else:
        doc = oci_manifest(subject=bad)
    # The message names the offending descriptor, so a user can find it.
    assert where in invalid(doc).message


def test_bad_digest_detail_names_the_digest() -> None:
    err = invalid(oci_manifest(layers=[{**_GOOD, "digest": "sha256:nothex"}]))
    assert err.detail == {"digest": "sha256:nothex"}


@pytest.mark.parametrize("urls", [{}, "", 0, False])
def test_falsy_non_list_urls_are_refused(urls: object) -> None:
    # "urls must be a list of strings": an empty object or string is not a list either.
    invalid(oci_manifest(layers=[{**_GOOD, "urls": urls}]))


def test_zero_size_descriptor_is_valid() -> None:
    m = parse(oci_manifest(layers=[desc(OCI_LAYER, b"")]))
    assert m.layers[0].size == 0


def test_sha512_descriptor_digests_are_valid() -> None:
    layer = {**_GOOD, "digest": digest_bytes(b"good", "sha512")}
    assert parse(oci_manifest(layers=[layer])).layers[0].digest.startswith("sha512:")


def test_descriptor_optional_fields_are_kept() -> None:
    layer = desc(
        OCI_LAYER,
        b"l",
        artifactType=SBOM,
        annotations={"a": "b"},
        platform={"os": "linux"},
        urls=["https://example.com/l"],
    )
    d = parse(oci_manifest(layers=[layer])).layers[0]
    assert d == Descriptor(
        OCI_LAYER, layer["digest"], 1, SBOM, {"a": "b"}, {"os": "linux"}, ("https://example.com/l",)
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("annotations", ["a"]), ("annotations", {"a": 1}), ("annotations", {"a": None})],
)
def test_top_level_annotations_must_map_strings(key: str, value: object) -> None:
    invalid(oci_manifest(**{key: value}))
    invalid(oci_index(**{key: value}))


@pytest.mark.parametrize("value", [1, ["x"], {"x": "y"}, True])
def test_top_level_artifact_type_must_be_a_string(value: object) -> None:
    assert "artifactType" in invalid(oci_manifest(artifactType=value)).message
    assert "artifactType" in invalid(oci_index(artifactType=value)).message


# -- foreign layers --------------------------------------------------------------------------


def test_foreign_layers_with_urls_are_not_required_blobs() -> None:
    urls = ["https://mcr.microsoft.com/windows/layer"]
    local = desc(DOCKER_LAYER, b"local")
    docker_foreign = desc(DOCKER_FOREIGN, b"foreign", urls=urls)
    oci_foreign = desc(OCI_NONDISTRIBUTABLE, b"nondist", urls=urls)
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, b"cfg"),
        "layers": [docker_foreign, local, oci_foreign],
    }
    m = parse(doc)
    assert [d.digest for d in m.blobs] == [digest_bytes(b"cfg"), local["digest"]]
    # They are still layers of the image.
    assert [d.digest for d in m.layers] == [
        docker_foreign["digest"],
        local["digest"],
        oci_foreign["digest"],
    ]
    assert m.layers[0].urls == tuple(urls)


def test_foreign_layer_without_urls_is_a_required_blob() -> None:
    foreign = desc(DOCKER_FOREIGN, b"foreign")
    m = parse(oci_manifest(layers=[foreign]))
    assert foreign["digest"] in [d.digest for d in m.blobs]


def test_ordinary_layer_with_urls_is_a_required_blob() -> None:
    layer = desc(OCI_LAYER, b"l", urls=["https://example.com/l"])
    m = parse(oci_manifest(layers=[layer]))
    assert layer["digest"] in [d.digest for d in m.blobs]


# -- Descriptor.to_json ----------------------------------------------------------------------


def test_descriptor_to_json_minimal() -> None:
    d = Descriptor(OCI_MANIFEST, digest_bytes(b"m"), 1)
    assert d.to_json() == {"mediaType": OCI_MANIFEST, "digest": digest_bytes(b"m"), "size": 1}


def test_descriptor_to_json_full() -> None:
    d = Descriptor(OCI_MANIFEST, digest_bytes(b"m"), 1, SBOM, {"a": "b"}, {"os": "linux"})
    assert d.to_json() == {
        "mediaType": OCI_MANIFEST,
        "digest": digest_bytes(b"m"),
        "size": 1,
        "artifactType": SBOM,
        "annotations": {"a": "b"},
        "platform": {"os": "linux"},
    }
