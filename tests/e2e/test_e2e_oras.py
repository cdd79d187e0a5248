"""oras (the PyPI ``oras`` client) against a live registry: an artifact with a
custom artifact type round-trips byte for byte; artifacts whose manifests name
a ``subject`` show up in the referrers API, which filters by artifactType.

The oras Python client (0.2.x) cannot set a manifest's ``artifactType``: it
pushes the artifact type as the config's mediaType, the pre-1.1 convention the
referrers API also honours. The second referrer is therefore built and PUT
with httpx, with ``artifactType`` set and the empty config descriptor.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    OCI_INDEX,
    OCI_MANIFEST,
    assert_unauthorized,
    missing,
    sha256_digest,
    unique_repo,
)

ARTIFACT_TYPE = "application/vnd.hamn.test+json"
SIGNATURE_TYPE = "application/vnd.hamn.signature+json"
SBOM_TYPE = "application/vnd.hamn.sbom+json"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = sha256_digest(b"{}")


def anonymous_client(live_registry: Any, auth_backend: str = "token") -> Any:
    """An oras client without credentials (yet)."""
    try:
        import oras.client
    except ImportError as e:
        missing(f"the oras Python package is not installed ({e})")
    return oras.client.OrasClient(
        hostname=live_registry.host, insecure=True, auth_backend=auth_backend
    )


@pytest.fixture
def oras_client(live_registry: Any) -> Any:
    """oras-py with the owner's user name and password (``oras -u -p``).

    They go as Basic on every request: oras-py 0.2's token backend keeps one
    bearer token for every scope and asks for a new one only after a 403, so
    its first pull-scoped token is resent for the push that follows and refused
    with 401 (insufficient scope, as the Docker token spec has it).
    """
    client = anonymous_client(live_registry, "basic" if live_registry.username else "token")
    if live_registry.username:
        client.auth.set_basic_auth(live_registry.username, live_registry.password)
    return client


def push_artifact(
    client: Any, target: str, tmp_path: Path, artifact_type: str, files: dict[str, bytes],
    subject: Any = None,
) -> str:  # fmt: skip
    """oras push of ``files`` (name -> bytes) with ``artifact_type`` as the
    config media type; returns the manifest digest the registry reported."""
    src = tmp_path / f"src-{uuid.uuid4().hex[:8]}"
    src.mkdir()
    paths = []
    for name, data in files.items():
        (src / name).write_bytes(data)
        paths.append(f"{src / name}:application/vnd.hamn.file.v1")
    config = src / "config.json"
    config.write_bytes(b"{}")
    resp = client.push(
        target=target, files=paths, manifest_config=f"{config}:{artifact_type}",
        manifest_annotations={"hamn.e2e.test": "oras"}, subject=subject,
        disable_path_validation=True, quiet=True,
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    return str(resp.headers["Docker-Content-Digest"])


def get_manifest(registry: Any, repo: str, ref: str) -> bytes:
    r = httpx.get(
        f"{registry.url}/v2/{repo}/manifests/{ref}",
        auth=registry.auth,
        headers={"Accept": OCI_MANIFEST},
    )
    assert r.status_code == 200, r.text
    return r.content


def upload_blob(client: httpx.Client, repo: str, data: bytes) -> dict[str, Any]:
    """POST + PUT upload; returns the blob's descriptor (without mediaType)."""
    digest = sha256_digest(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]  # keep its query: httpx's params= would replace it
    location += ("&" if "?" in location else "?") + f"digest={digest}"
    r = client.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return {"digest": digest, "size": len(data)}


def test_push_pull_artifact(live_registry: Any, oras_client: Any, tmp_path: Path) -> None:
    repo = unique_repo("oras")
    target = f"{live_registry.host}/{repo}:v1"
    files = {"payload.bin": os.urandom(300_000), "notes.json": b'{"hamn": "e2e"}\n'}

    digest = push_artifact(oras_client, target, tmp_path, ARTIFACT_TYPE, files)

    raw = get_manifest(live_registry, repo, "v1")
    assert sha256_digest(raw) == digest
    manifest = oras_client.get_manifest(target)
    assert manifest["config"]["mediaType"] == ARTIFACT_TYPE
    assert manifest["annotations"]["hamn.e2e.test"] == "oras"
    titles = [ly["annotations"]["org.opencontainers.image.title"] for ly in manifest["layers"]]
    assert sorted(titles) == sorted(files)
    for layer in manifest["layers"]:
        name = layer["annotations"]["org.opencontainers.image.title"]
        assert layer["digest"] == sha256_digest(files[name])
        assert layer["size"] == len(files[name])

    out = tmp_path / "pulled"
    out.mkdir()
    pulled = oras_client.pull(target=target, outdir=str(out))

    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert oras_client.get_tags(f"{live_registry.host}/{repo}") == ["v1"]


def test_referrers(live_registry: Any, oras_client: Any, tmp_path: Path) -> None:
    import oras.oci

    repo = unique_repo("oras-referrers")
    host = live_registry.host
    subject_digest = push_artifact(
        oras_client, f"{host}/{repo}:v1", tmp_path, ARTIFACT_TYPE, {"a.txt": b"subject\n"}
    )
    subject_raw = get_manifest(live_registry, repo, subject_digest)
    subject = {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_raw)}

    # referrer 1: oras push with a subject; its artifact type is its config media type
    sig_digest = push_artifact(
        oras_client, f"{host}/{repo}:sig", tmp_path, SIGNATURE_TYPE, {"sig.bin": os.urandom(64)},
        subject=oras.oci.Subject(**subject),
    )  # fmt: skip
    assert json.loads(get_manifest(live_registry, repo, sig_digest))["subject"] == subject

    # referrer 2: an OCI 1.1 artifact manifest (artifactType, empty config), untagged
    with httpx.Client(base_url=live_registry.url, auth=live_registry.auth, timeout=60) as client:
        upload_blob(client, repo, b"{}")
        sbom = upload_blob(client, repo, b'{"packages": ["busybox"]}')
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": {"mediaType": EMPTY_JSON, "digest": EMPTY_DIGEST, "size": 2,
                       "data": base64.b64encode(b"{}").decode()},
            "layers": [{"mediaType": "application/vnd.hamn.sbom.layer+json", **sbom}],
            "subject": subject,
            "annotations": {"org.opencontainers.image.created": "2024-01-02T03:04:05Z",
                            "hamn.e2e.kind": "sbom"},
        }  # fmt: skip
        body = json.dumps(manifest).encode()
        sbom_digest = sha256_digest(body)
        put = client.put(
            f"/v2/{repo}/manifests/{sbom_digest}", content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )  # fmt: skip
        assert put.status_code == 201, put.text

        url = f"/v2/{repo}/referrers/{subject_digest}"
        r = client.get(url)
        assert r.status_code == 200, (
            f"GET {url} -> {r.status_code} {r.text!r}: the registry has no referrers API"
        )
        assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX
        index = r.json()
        assert index["schemaVersion"] == 2
        assert index["mediaType"] == OCI_INDEX
        found = {d["digest"]: d for d in index["manifests"]}
        assert set(found) == {sig_digest, sbom_digest}
        assert found[sig_digest]["artifactType"] == SIGNATURE_TYPE
        assert found[sbom_digest]["artifactType"] == SBOM_TYPE
        assert found[sbom_digest]["mediaType"] == OCI_MANIFEST
        assert found[sbom_digest]["size"] == len(body)
        assert found[sbom_digest]["annotations"] == manifest["annotations"]
        assert "OCI-Filters-Applied" not in r.headers

        r = client.get(url, params={"artifactType": SBOM_TYPE})
        assert r.status_code == 200, r.text
        assert [d["digest"] for d in r.json()["manifests"]] == [sbom_digest]
        applied = r.headers.get("OCI-Filters-Applied", "")
        assert "artifactType" in [f.strip() for f in applied.split(",")], dict(r.headers)

        r = client.get(url, params={"artifactType": "application/vnd.hamn.none"})
        assert r.status_code == 200, r.text
        assert r.json()["manifests"] == []

        # a manifest nothing refers to has an empty (not missing) referrers list
        r = client.get(f"/v2/{repo}/referrers/{sbom_digest}")
        assert r.status_code == 200, r.text
        assert r.json()["manifests"] == []

        # deleting a referrer takes it out of the list
        d = client.delete(f"/v2/{repo}/manifests/{sbom_digest}")
        assert d.status_code == 202, d.text
        r = client.get(url)
        assert [m["digest"] for m in r.json()["manifests"]] == [sig_digest]

        # a registry with the referrers API acknowledges the subject on push
        assert put.headers.get("OCI-Subject") == subject_digest


@pytest.mark.usefixtures("auth_enforced")
def test_pull_without_credentials_is_unauthorized(
    live_registry: Any, oras_client: Any, tmp_path: Path
) -> None:
    """oras pull with no credentials (anonymous pull off) fails, saying so, and
    writes no file."""
    repo = unique_repo("oras-anon")
    target = f"{live_registry.host}/{repo}:v1"
    push_artifact(oras_client, target, tmp_path, ARTIFACT_TYPE, {"a.txt": b"private\n"})
    out = tmp_path / "pulled"
    out.mkdir()
    with pytest.raises(Exception) as failed:  # oras-py raises several kinds
        anonymous_client(live_registry).pull(target=target, outdir=str(out))
    assert_unauthorized(f"{type(failed.value).__name__}: {failed.value}")
    assert list(out.iterdir()) == []
