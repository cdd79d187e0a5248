"""Manifest and index parsing and validation (OCI image spec v1.1, Docker schema 2).

Pure functions: bytes and a Content-Type in, a :class:`ParsedManifest` (or a
MANIFEST_INVALID error saying what is wrong) out. Whether referenced blobs and
child manifests exist is the registry service's question, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from hamn.errors import MANIFEST_INVALID, MANIFEST_TOO_LARGE, HamnError
from hamn.oci.digest import parse_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_EMPTY_JSON = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES | {OCI_ARTIFACT_MANIFEST}
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

#: Layers that may legally point outside the registry (``urls``) and so need not exist.
_FOREIGN_LAYER_PREFIXES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)

#: The largest manifest hamn accepts (SPEC §3.2).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The descriptor as the JSON object the spec defines."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """What the registry needs to know about a manifest it is asked to store."""

    media_type: str
    #: The artifact type reported by the referrers API: ``artifactType``, else the config's type.
    artifact_type: str | None
    subject: Descriptor | None
    #: Blobs that must exist in the repository (config and distributable layers).
    blobs: tuple[Descriptor, ...]
    #: Manifests an index points to; they must exist in the repository.
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] | None = None
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = field(default=())


def _invalid(message: str, **detail: object) -> HamnError:
    return HamnError(MANIFEST_INVALID, message, detail=detail or None)


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate ``body`` as a manifest of a supported type and return what it references."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise HamnError(
            MANIFEST_TOO_LARGE,
            f"manifest is {len(body)} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (4 MiB)",
            detail={"size": len(body), "limit": MAX_MANIFEST_BYTES},
        )
    header_type = (content_type or "").split(";", 1)[0].strip().lower() or None
    if header_type in SCHEMA1_TYPES:
        raise _schema1()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    schema_version = doc.get("schemaVersion")
    if schema_version == 1 and not isinstance(schema_version, bool):
        raise _schema1()
    # The 1.1 release candidates' artifact manifest has no schemaVersion.
    artifact = doc.get("mediaType") == OCI_ARTIFACT_MANIFEST and schema_version is None
    if not artifact and (
        type(schema_version) is not int or schema_version != 2  # 2.0 and true are not 2
    ):
        raise _invalid("schemaVersion must be 2", schemaVersion=schema_version)

    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _invalid("mediaType must be a string")
    media_type = _resolve_media_type(body_type, header_type, doc)

    if media_type in INDEX_TYPES:
        return _parse_index(doc, media_type)
    if media_type == OCI_ARTIFACT_MANIFEST:
        return _parse_artifact(doc)
    return _parse_image(doc, media_type)


def _schema1() -> HamnError:
    return _invalid(
        "Docker schema 1 manifests are not supported; push with a current client "
        "(Docker 1.10+, podman, buildah, skopeo), which sends schema 2 or OCI manifests"
    )


def _resolve_media_type(body_type: str | None, header_type: str | None, doc: dict[str, Any]) -> str:
    if body_type is not None:
        if body_type in SCHEMA1_TYPES:
            raise _schema1()
        if body_type not in MANIFEST_TYPES:
            raise _invalid(f"unsupported manifest mediaType {body_type!r}", mediaType=body_type)
        if header_type in MANIFEST_TYPES and header_type != body_type:
            raise _invalid(
                f"Content-Type {header_type!r} does not match mediaType {body_type!r}",
                contentType=header_type,
                mediaType=body_type,
            )
        return body_type
    if header_type in MANIFEST_TYPES:
        return header_type
    # Neither says: OCI allows an absent mediaType, so infer from the shape.
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc:
        return OCI_MANIFEST
    raise _invalid("cannot tell the manifest's type: set mediaType or Content-Type")


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        parse_digest(digest)
    except HamnError as exc:
        raise _invalid(f"{where}.digest is invalid: {exc.message}", digest=digest[:200]) from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}.artifactType must be a string")
    annotations = _annotations(value.get("annotations"), where)
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}.platform must be an object")
    urls = value.get("urls")
    if urls is None:
        urls = []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}.urls must be a list of strings")
    return Descriptor(media_type, digest, size, artifact_type, annotations, platform, tuple(urls))


def _annotations(value: object, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where}.annotations must map strings to strings")
    return value


def _subject(doc: dict[str, Any]) -> Descriptor | None:
    if doc.get("subject") is None:
        return None
    return _descriptor(doc["subject"], "subject")


def _optional_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def _descriptor_list(doc: dict[str, Any], key: str, *, required: bool) -> tuple[Descriptor, ...]:
    value = doc.get(key)
    if value is None:
        if required:
            raise _invalid(f"{key} is required")
        return ()
    if not isinstance(value, list):
        raise _invalid(f"{key} must be a list")
    return tuple(_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value))


def _is_foreign(layer: Descriptor) -> bool:
    return bool(layer.urls) and layer.media_type.startswith(_FOREIGN_LAYER_PREFIXES)


def _parse_image(doc: dict[str, Any], media_type: str) -> ParsedManifest:
    if "config" not in doc:
        raise _invalid("an image manifest needs a config descriptor")
    config = _descriptor(doc["config"], "config")
    layers = _descriptor_list(doc, "layers", required=media_type == DOCKER_MANIFEST)
    artifact_type = _optional_str(doc, "artifactType")
    blobs = (config, *(layer for layer in layers if not _is_foreign(layer)))
    return ParsedManifest(
        media_type=media_type,
        artifact_type=artifact_type or config.media_type,
        subject=_subject(doc),
        blobs=blobs,
        manifests=(),
        annotations=_annotations(doc.get("annotations"), "manifest"),
        config=config,
        layers=layers,
    )


def _parse_index(doc: dict[str, Any], media_type: str) -> ParsedManifest:
    manifests = _descriptor_list(doc, "manifests", required=True)
    return ParsedManifest(
        media_type=media_type,
        artifact_type=_optional_str(doc, "artifactType"),
        subject=_subject(doc),
        blobs=(),
        manifests=manifests,
        annotations=_annotations(doc.get("annotations"), "manifest"),
    )


def _parse_artifact(doc: dict[str, Any]) -> ParsedManifest:
    blobs = _descriptor_list(doc, "blobs", required=False)
    return ParsedManifest(
        media_type=OCI_ARTIFACT_MANIFEST,
        artifact_type=_optional_str(doc, "artifactType"),
        subject=_subject(doc),
        blobs=blobs,
        manifests=(),
        annotations=_annotations(doc.get("annotations"), "manifest"),
        layers=blobs,
    )
