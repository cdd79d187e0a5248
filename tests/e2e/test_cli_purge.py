"""``hamn purge`` as a user runs it: the real CLI (a subprocess) against a live server.

Content is pushed with plain httpx into the default registry ``local`` (images,
a multi-arch index, referrers), and every check reads the server back through
``/acr/v1``: old tags go and new ones stay (``--ago`` measured against the
server's own ``lastUpdateTime``s, with one short wait instead of minutes),
``--keep``, ``--dry-run``, ``--untagged`` beside an index and referrers, locks
and ``--include-locked``, and the seed's untagged-manifest pipeline against
``purge --untagged`` on identical content.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_cli_management import shell
from test_cli_repository import Hamn, assert_error

REGISTRY = "local"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


# ----------------------------------------------------------------------- helpers


def unique() -> str:
    return f"purge-{uuid.uuid4().hex[:10]}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    """Pushes blobs and manifests to ``/v2/local/<repo>`` of a live registry as its owner."""

    def __init__(self, registry: Any) -> None:
        self.http = httpx.Client(base_url=registry.url, auth=registry.auth, timeout=30)

    def blob(self, repo: str, data: bytes) -> dict[str, Any]:
        digest = _digest(data)
        r = self.http.post(
            f"/v2/{REGISTRY}/{repo}/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert r.status_code == 201, r.text
        return {"digest": digest, "size": len(data)}

    def manifest(self, repo: str, body: bytes, media_type: str, ref: str | None = None) -> str:
        digest = _digest(body)
        r = self.http.put(
            f"/v2/{REGISTRY}/{repo}/manifests/{ref or digest}",
            content=body,
            headers={"Content-Type": media_type},
        )
        assert r.status_code == 201, r.text
        return digest

    def image_body(self, repo: str, seed: str, subject: dict[str, Any] | None = None) -> bytes:
        """A one-layer image's manifest bytes (the same ``seed`` gives the same bytes)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **self.blob(repo, config)},
            "layers": [{"mediaType": OCI_LAYER, **self.blob(repo, seed.encode() * 8)}],
        }
        if subject is not None:
            doc["artifactType"] = "application/vnd.example.sbom"
            doc["subject"] = subject
        return json.dumps(doc).encode()

    def image(self, repo: str, tag: str | None = None, seed: str | None = None) -> str:
        return self.manifest(
            repo, self.image_body(repo, seed or uuid.uuid4().hex), OCI_MANIFEST, tag
        )

    def descriptor(self, repo: str, digest: str) -> dict[str, Any]:
        r = self.http.head(
            f"/v2/{REGISTRY}/{repo}/manifests/{digest}",
            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        )
        assert r.status_code == 200, r.text
        return {
            "mediaType": r.headers["Content-Type"],
            "digest": digest,
            "size": int(r.headers["Content-Length"]),
        }

    def index(self, repo: str, children: list[str], tag: str | None = None) -> str:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {**self.descriptor(repo, child), "platform": {"architecture": arch, "os": "linux"}}
                for child, arch in zip(children, ("amd64", "arm64", "s390x"), strict=False)
            ],
        }
        return self.manifest(repo, json.dumps(doc).encode(), OCI_INDEX, tag)

    def referrer(self, repo: str, subject: str) -> str:
        body = self.image_body(repo, uuid.uuid4().hex, subject=self.descriptor(repo, subject))
        return self.manifest(repo, body, OCI_MANIFEST)

    def pullable(self, repo: str, digest: str) -> bool:
        r = self.http.get(
            f"/v2/{REGISTRY}/{repo}/manifests/{digest}",
            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        )
        return r.status_code == 200

    def tags(self, repo: str) -> list[dict[str, Any]]:
        r = self.http.get(f"/acr/v1/{REGISTRY}/{repo}/_tags", params={"n": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["tags"])

    def manifests(self, repo: str) -> dict[str, list[str]]:
        """digest -> tags of every manifest in the repository."""
        r = self.http.get(f"/acr/v1/{REGISTRY}/{repo}/_manifests", params={"n": 1000})
        assert r.status_code == 200, r.text
        return {m["digest"]: sorted(m["tags"] or []) for m in r.json()["manifests"]}


@pytest.fixture
def pusher(live_registry: Any) -> Iterator[Pusher]:
    p = Pusher(live_registry)
    yield p
    p.http.close()


@pytest.fixture
def hamn(live_registry: Any) -> Hamn:
    return Hamn.on(live_registry)


def purge(hamn: Hamn, *args: str) -> tuple[list[dict[str, Any]], str]:
    result = hamn("purge", "-r", REGISTRY, *args)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return json.loads(result.out), result.err


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ----------------------------------------------------------------------- --ago, --keep


def test_tags_older_than_ago_go_and_newer_stay(hamn: Hamn, pusher: Pusher) -> None:
    repo = unique()
    pusher.image(repo, "v1")
    pusher.image(repo, "v2")
    time.sleep(3)
    pusher.image(repo, "v3")
    times = {t["name"]: parse_time(t["lastUpdateTime"]) for t in pusher.tags(repo)}
    # A cutoff half a second after v2 was updated, measured from now: the CLI's own
    # clock starts a little later, which moves the cutoff later, still before v3.
    age = datetime.now(UTC) - times["v2"]
    ms = int(age.total_seconds() * 1000) - 500
    assert ms > 0
    (entry,), err = purge(hamn, "--filter", f"{repo}:.*", "--ago", f"{ms}ms")
    assert entry["repository"] == repo and entry["dryRun"] is False
    assert entry["tagsDeleted"] == ["v2", "v1"]  # newest first
    assert [t["name"] for t in pusher.tags(repo)] == ["v3"]
    assert len(pusher.manifests(repo)) == 3  # without --untagged the manifests stay
    assert err.endswith("Number of deleted tags: 2\nNumber of deleted manifests: 0\n"), err

    # A duration longer than anything here deletes nothing.
    (entry,), _ = purge(hamn, "--filter", f"{repo}:.*", "--ago", "1d")
    assert entry["tagsDeleted"] == []


def test_keep_keeps_the_most_recent_tags(hamn: Hamn, pusher: Pusher) -> None:
    repo = unique()
    for tag in ("v1", "v2", "v3", "v4"):
        pusher.image(repo, tag)
        time.sleep(0.01)
    (entry,), _ = purge(hamn, "--filter", f"{repo}:^v", "--ago", "0", "--keep", "2")
    assert entry["tagsDeleted"] == ["v2", "v1"]
    assert sorted(t["name"] for t in pusher.tags(repo)) == ["v3", "v4"]


def test_dry_run_deletes_nothing(hamn: Hamn, pusher: Pusher) -> None:
    repo = unique()
    tagged = pusher.image(repo, "v1")
    untagged = pusher.image(repo)
    before = pusher.manifests(repo)
    (entry,), err = purge(hamn, "--filter", f"{repo}:.*", "--ago", "0", "--untagged", "--dry-run")
    assert entry["dryRun"] is True and entry["tagsDeleted"] == ["v1"]
    assert sorted(entry["manifestsDeleted"]) == sorted([tagged, untagged])
    assert pusher.manifests(repo) == before
    assert err.startswith("DRY RUN: ")
    assert f"Would delete: {repo}:v1" in err
    assert err.endswith("Number of tags to be deleted: 1\nNumber of manifests to be deleted: 2\n")


# ----------------------------------------------------------------------- --untagged


def test_untagged_spares_index_children_and_referrers_of_what_stays(
    hamn: Hamn, pusher: Pusher
) -> None:
    repo = unique()
    amd, arm = pusher.image(repo), pusher.image(repo)
    multi = pusher.index(repo, [amd, arm], "multi")
    image = pusher.image(repo, "v1")
    signature = pusher.referrer(repo, image)  # untagged, but its subject stays
    loose = pusher.image(repo)
    sbom = pusher.referrer(repo, loose)  # goes with its subject
    orphan_index_child = pusher.image(repo)
    orphan_index = pusher.index(repo, [orphan_index_child])  # untagged: both go

    (entry,), err = purge(hamn, "--filter", f"{repo}:^$", "--ago", "0", "--untagged")
    assert entry["tagsDeleted"] == []
    assert sorted(entry["manifestsDeleted"]) == sorted(
        [loose, sbom, orphan_index, orphan_index_child]
    )
    # An index before its children, a subject before its referrers.
    order = entry["manifestsDeleted"]
    assert order.index(orphan_index) < order.index(orphan_index_child)
    assert order.index(loose) < order.index(sbom)
    assert set(pusher.manifests(repo)) == {amd, arm, multi, image, signature}
    assert all(pusher.pullable(repo, d) for d in (multi, amd, arm, signature))
    assert err.endswith("Number of deleted tags: 0\nNumber of deleted manifests: 4\n"), err


def test_seed_pipeline_and_purge_untagged_leave_identical_repositories(
    hamn: Hamn, pusher: Pusher, tmp_path: Path
) -> None:
    by_pipeline, by_purge = unique(), unique()
    content = [("v1", "a"), ("v2", "b"), (None, "c"), (None, "d")]  # two tagged, two not
    for repo in (by_pipeline, by_purge):
        for tag, seed in content:
            pusher.image(repo, tag, seed=seed)
    assert pusher.manifests(by_pipeline) == pusher.manifests(by_purge)

    pipeline = (
        f"hamn repository show-manifests -n {REGISTRY} --repository {by_pipeline} "
        '--query "[?tags[0]==null].digest" -o tsv'
        f" | xargs -I% hamn repository delete -n {REGISTRY} -t {by_pipeline}@% -y"
    )
    done = shell(hamn, tmp_path)(pipeline)
    assert done.returncode == 0, done.stderr

    (entry,), _ = purge(hamn, "--filter", f"{by_purge}:^$", "--ago", "0", "--untagged")
    assert len(entry["manifestsDeleted"]) == 2
    remaining = pusher.manifests(by_purge)
    assert remaining == pusher.manifests(by_pipeline)
    assert sorted(tags for tags in remaining.values()) == [["v1"], ["v2"]]


def test_untagged_only_takes_no_tags(hamn: Hamn, pusher: Pusher) -> None:
    repo = unique()
    tagged = pusher.image(repo, "v1")
    pusher.image(repo)
    (entry,), _ = purge(hamn, "--filter", f"{repo}:.*", "--untagged-only")
    assert entry["tagsDeleted"] == [] and len(entry["manifestsDeleted"]) == 1
    assert pusher.manifests(repo) == {tagged: ["v1"]}


# ----------------------------------------------------------------------- locks


def test_locked_items_are_skipped_and_removed_with_include_locked(
    hamn: Hamn, pusher: Pusher
) -> None:
    repo = unique()
    pusher.image(repo, "v1")
    pusher.image(repo, "v2")
    held = pusher.image(repo)
    lock_tag = hamn(
        "repository", "update", "-n", REGISTRY, "-t", f"{repo}:v1", "--delete-enabled", "false"
    )
    lock_manifest = hamn(
        "repository", "update", "-n", REGISTRY, "-t", f"{repo}@{held}", "--write-enabled", "false"
    )
    assert lock_tag.code == 0 and lock_manifest.code == 0, (lock_tag, lock_manifest)
    args = ("--filter", f"{repo}:.*", "--ago", "0", "--untagged")

    (entry,), err = purge(hamn, *args)
    assert entry["tagsDeleted"] == ["v2"] and len(entry["manifestsDeleted"]) == 1
    assert {s["image"] for s in entry["skipped"]} == {f"{repo}:v1", f"{repo}@{held}"}
    assert all("--include-locked" in s["reason"] for s in entry["skipped"])
    assert f"Skipped {repo}:v1: locked (deleteEnabled=false)" in err
    assert sorted(t["name"] for t in pusher.tags(repo)) == ["v1"]
    assert held in pusher.manifests(repo)

    (entry,), err = purge(hamn, *args, "--include-locked")
    assert entry["tagsDeleted"] == ["v1"] and held in entry["manifestsDeleted"]
    assert entry["skipped"] == []
    assert f"Unlocked {repo}:v1" in err and f"Unlocked {repo}@{held}" in err
    assert pusher.manifests(repo) == {}


# ----------------------------------------------------------------------- errors


def test_errors_say_what_to_do(hamn: Hamn) -> None:
    base = ("purge", "-r", REGISTRY)
    assert_error(
        hamn(*base, "--filter", "x:v[", "--ago", "1d"),
        "tag regex 'v[' is not a valid regular expression",
        code=2,
    )
    assert_error(hamn(*base, "--filter", "x:.*", "--ago", "1.5d"), "is not a duration", code=2)
    assert_error(
        hamn("purge", "-r", "nosuchregistry", "--filter", "x:.*", "--ago", "1d"),
        "Registry 'nosuchregistry' was not found",
    )
    anonymous = hamn.anonymous()("purge", "-r", REGISTRY, "--filter", "x:.*", "--ago", "1d")
    assert_error(anonymous, "hamn auth login")
