"""Bad input gets the spec's error (never a 500): malformed and oversized
manifests, bad digests, digest mismatches, unknown blobs / manifests / uploads,
bad repository and tag names, out-of-order and overlapping chunks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    encode,
    expect_error,
    expect_status,
    get_blob,
    location,
    push_blob,
    push_image,
    put_manifest,
    random_bytes,
    raw_request,
    reply_body,
    start_upload,
    status_line,
    with_query,
)

MIB = 1024 * 1024

# -- malformed manifests -------------------------------------------------------------

_CONFIG = descriptor("application/vnd.oci.image.config.v1+json", b"{}")


def _image(**override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _CONFIG,
        "layers": [],
    }
    doc.update(override)
    return {k: v for k, v in doc.items() if v is not None}


MALFORMED: dict[str, bytes] = {
    "not-json": b"{this is not json",
    "empty-body": b"",
    "json-array": b"[]",
    "json-string": b'"manifest"',
    "truncated-json": encode(_image())[:-5],
    "no-schema-version": encode(_image(schemaVersion=None)),
    "schema-version-3": encode(_image(schemaVersion=3)),
    "schema-version-string": encode(_image(schemaVersion="2")),
    "schema-version-bool": encode(_image(schemaVersion=True)),
    "unknown-media-type": encode(_image(mediaType="application/vnd.example.thing+json")),
    "media-type-not-string": encode(_image(mediaType=7)),
    "config-missing": encode(_image(config=None)),
    "config-not-object": encode(_image(config="sha256:abc")),
    "config-bad-digest": encode(_image(config={**_CONFIG, "digest": "sha256:xyz"})),
    "config-uppercase-digest": encode(
        _image(config={**_CONFIG, "digest": _CONFIG["digest"].upper()})
    ),
    "config-negative-size": encode(_image(config={**_CONFIG, "size": -1})),
    "config-size-string": encode(_image(config={**_CONFIG, "size": "2"})),
    "config-no-media-type": encode(_image(config={"digest": _CONFIG["digest"], "size": 2})),
    "layers-not-list": encode(_image(layers={"a": 1})),
    "layer-not-object": encode(_image(layers=[1])),
    "annotations-not-strings": encode(_image(annotations={"a": 1})),
    "subject-bad": encode(_image(subject={"mediaType": OCI_MANIFEST, "digest": "nope", "size": 1})),
    "artifact-type-not-string": encode(_image(artifactType=["x"])),
    "index-manifests-missing": encode({"schemaVersion": 2, "mediaType": OCI_INDEX}),
    "index-manifests-not-list": encode(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": "all"}
    ),
    "untyped-shape-unknown": encode({"schemaVersion": 2, "things": []}),
    "invalid-utf8": b'{"schemaVersion": 2, "x": "\xff\xfe"}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_manifest_is_manifest_invalid(client: httpx.Client, repo: str, name: str) -> None:
    push_blob(client, repo, b"{}")
    r = put_manifest(client, repo, "bad", MALFORMED[name], OCI_MANIFEST)
    expect_error(r, 400, "MANIFEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/manifests/bad"), 404, "MANIFEST_UNKNOWN")


def test_content_type_contradicting_media_type_is_refused(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"{}")
    r = put_manifest(client, repo, "bad", encode(_image()), OCI_INDEX)
    expect_error(r, 400, "MANIFEST_INVALID")


def test_manifest_of_exactly_4_mib_is_not_too_large(client: httpx.Client, repo: str) -> None:
    body = encode(_image())
    body += b" " * (4 * MIB - len(body))
    push_blob(client, repo, b"{}")
    r = expect_status(put_manifest(client, repo, "edge", body), 201)
    assert r.headers["Docker-Content-Digest"] == digest_of(body)


def test_oversized_manifest_is_refused(client: httpx.Client, repo: str) -> None:
    body = encode(_image())
    body += b" " * (4 * MIB + 1 - len(body))
    push_blob(client, repo, b"{}")
    entry = expect_error(put_manifest(client, repo, "big", body), 413, "MANIFEST_TOO_LARGE")
    assert "4 MiB" in entry["message"]
    expect_error(client.get(f"/v2/{repo}/manifests/big"), 404, "MANIFEST_UNKNOWN")


def test_oversized_streamed_manifest_is_refused(client: httpx.Client, repo: str) -> None:
    def body() -> Any:
        yield encode(_image())[:-1]
        for _ in range(5):
            yield b" " * MIB
        yield b"}"

    r = client.put(
        f"/v2/{repo}/manifests/big", content=body(), headers={"Content-Type": OCI_MANIFEST}
    )
    expect_error(r, 413, "MANIFEST_TOO_LARGE")
    expect_error(client.get(f"/v2/{repo}/manifests/big"), 404, "MANIFEST_UNKNOWN")


def test_manifest_naming_tens_of_thousands_of_missing_blobs(
    client: httpx.Client, repo: str
) -> None:
    """Just under 4 MiB of distinct references: refused by name, not by the database."""
    push_blob(client, repo, b"{}")
    layers = [
        {"mediaType": "a", "digest": digest_of(str(i).encode()), "size": 1} for i in range(38_000)
    ]
    body = encode(_image(layers=layers))
    assert len(body) < 4 * MIB
    entry = expect_error(put_manifest(client, repo, "many", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert layers[0]["digest"] in str(entry["detail"])
    index = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": layers})
    expect_error(put_manifest(client, repo, "many", index, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")


# -- bad digests ---------------------------------------------------------------------

BAD_DIGESTS = [
    "sha256:abc",
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 64,
    "sha256:",
    ":" + "a" * 64,
    "SHA256:" + "a" * 64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_bad_digest_on_blob_endpoints(client: httpx.Client, repo: str, digest: str) -> None:
    push_blob(client, repo, b"x")
    expect_error(client.get(f"/v2/{repo}/blobs/{digest}"), 400, "DIGEST_INVALID")
    expect_error(client.head(f"/v2/{repo}/blobs/{digest}"), 400, "DIGEST_INVALID")
    expect_error(client.delete(f"/v2/{repo}/blobs/{digest}"), 400, "DIGEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/manifests/{digest}"), 400, "DIGEST_INVALID")
    expect_error(client.delete(f"/v2/{repo}/manifests/{digest}"), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_bad_digest_on_upload_completion(client: httpx.Client, repo: str, digest: str) -> None:
    loc = start_upload(client, repo)
    expect_error(client.put(with_query(loc, digest=digest), content=b"data"), 400, "DIGEST_INVALID")
    # The session is untouched by a refused completion and can still finish.
    r = expect_status(client.get(loc), 204)
    assert r.headers["Range"] == "0-0"
    expect_status(client.put(with_query(loc, digest=digest_of(b"data")), content=b"data"), 201)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=b"data")
    expect_error(r, 400, "DIGEST_INVALID")


def test_unsupported_digest_algorithm(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"x")
    md5 = "md5:" + "a" * 32
    expect_error(client.get(f"/v2/{repo}/blobs/{md5}"), 405, "UNSUPPORTED")
    loc = start_upload(client, repo)
    expect_error(client.put(with_query(loc, digest=md5), content=b"x"), 405, "UNSUPPORTED")


def test_upload_completion_without_digest(client: httpx.Client, repo: str) -> None:
    loc = start_upload(client, repo)
    expect_error(client.put(loc, content=b"data"), 400, "DIGEST_INVALID")
    expect_status(client.get(loc), 204)


def test_manifest_put_with_malformed_digest_reference(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, None)
    expect_error(put_manifest(client, repo, "sha256:abc", img.manifest), 400, "DIGEST_INVALID")


# -- digest mismatch -----------------------------------------------------------------


def _assert_blob_absent(client: httpx.Client, repo: str, *digests: str) -> None:
    for d in digests:
        expect_error(client.get(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_digest_mismatch_monolithic(client: httpx.Client, repo: str, algorithm: str) -> None:
    data, claimed = random_bytes(5000), digest_of(random_bytes(5000), algorithm)
    loc = start_upload(client, repo)
    entry = expect_error(
        client.put(with_query(loc, digest=claimed), content=data), 400, "DIGEST_INVALID"
    )
    assert digest_of(data, algorithm) in str(entry)
    _assert_blob_absent(client, repo, claimed, digest_of(data, algorithm))
    # A mismatched upload is finished: nothing of it can become a blob later.
    expect_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_digest_mismatch_chunked(client: httpx.Client, repo: str) -> None:
    data = random_bytes(10_000)
    loc = start_upload(client, repo)
    r = client.patch(loc, content=data[:5000], headers={"Content-Range": "0-4999"})
    loc = location(expect_status(r, 202))
    r = client.patch(loc, content=data[5000:], headers={"Content-Range": "5000-9999"})
    loc = location(expect_status(r, 202))
    claimed = digest_of(data[:9999] + b"!")
    expect_error(client.put(with_query(loc, digest=claimed)), 400, "DIGEST_INVALID")
    _assert_blob_absent(client, repo, claimed, digest_of(data))
    expect_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_digest_mismatch_single_post(client: httpx.Client, repo: str) -> None:
    data, claimed = random_bytes(5000), digest_of(random_bytes(5000))
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data)
    expect_error(r, 400, "DIGEST_INVALID")
    _assert_blob_absent(client, repo, claimed, digest_of(data))


def test_digest_mismatch_manifest(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, None)
    for algorithm in ("sha256", "sha512"):
        wrong = digest_of(img.manifest + b" ", algorithm)
        expect_error(put_manifest(client, repo, wrong, img.manifest), 400, "DIGEST_INVALID")
        expect_error(client.get(f"/v2/{repo}/manifests/{wrong}"), 404, "MANIFEST_UNKNOWN")


# -- unknown things ------------------------------------------------------------------


def test_unknown_blob(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"x")
    digest = digest_of(random_bytes(10))
    expect_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    expect_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    expect_error(client.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    expect_error(
        client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=0-1"}),
        404,
        "BLOB_UNKNOWN",
    )


@pytest.mark.parametrize("ref", ["nosuchtag", "digest"])
def test_unknown_manifest(client: httpx.Client, repo: str, ref: str) -> None:
    push_image(client, repo, "v1")
    if ref == "digest":
        ref = digest_of(random_bytes(10))
    expect_error(client.get(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.head(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    expect_error(client.delete(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")


def test_manifest_in_unknown_repository(client: httpx.Client, repo: str) -> None:
    expect_error(client.get(f"/v2/{repo}/manifests/latest"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    "upload_id",
    # (httpx removes a literal ".." segment, so the raw-name tests cover that one.)
    ["00000000-0000-0000-0000-000000000000", "x", "%2e%2e", "a" * 2000, "%00abc"],
)
def test_unknown_upload(client: httpx.Client, repo: str, upload_id: str) -> None:
    push_blob(client, repo, b"x")
    loc = f"/v2/{repo}/blobs/uploads/{upload_id}"
    expect_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.patch(loc, content=b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(
        client.put(with_query(loc, digest=digest_of(b"abc")), content=b"abc"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    expect_error(client.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_id_with_a_slash_is_not_an_upload(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/v2/{repo}/blobs/uploads/..%2f..%2fmetadata.db")
    assert r.status_code == 404
    assert error_code_of(r) in ("BLOB_UPLOAD_UNKNOWN", "NOT_FOUND", "NAME_INVALID")


def error_code_of(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


# -- bad names and tags --------------------------------------------------------------

BAD_NAMES = [
    "UPPER",
    "mixedCase/repo",
    "a/../b",
    "..",
    "a/./b",
    "%2e%2e",
    "a/%2e%2e/b",
    "%2E%2E/x",
    "a//b",
    "a/",
    "-lead",
    "trail-",
    "a..b",
    "a___b",
    "_a",
    "a%20b",
    "x" * 256,
    "/".join(["abcdefgh"] * 40),
    "a%00b",
    "caf%C3%A9",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_repository_name(live_registry: Any, name: str) -> None:
    """Sent raw, so no client normalises the path first."""
    for method, path in [
        ("GET", f"/v2/{name}/tags/list"),
        ("GET", f"/v2/{name}/manifests/latest"),
        ("PUT", f"/v2/{name}/manifests/latest"),
        ("HEAD", f"/v2/{name}/blobs/{digest_of(b'x')}"),
        ("POST", f"/v2/{name}/blobs/uploads/"),
    ]:
        reply = raw_request(live_registry, f"{method} {path} HTTP/1.1\r\nContent-Length: 0")
        status = status_line(reply)
        assert status in (400, 404), (method, path, reply[:300])
        if method != "HEAD" and status == 400:
            assert b'"NAME_INVALID"' in reply_body(reply), (method, path, reply[:400])
        if status == 404:
            # Only a path that no route matches may be 404; never a repository created.
            assert b'"NOT_FOUND"' in reply_body(reply) or method == "HEAD", (path, reply[:400])


def test_name_of_exactly_255_characters_is_valid(client: httpx.Client) -> None:
    name = "a" * 255
    push_blob(client, name, random_bytes(5))
    expect_error(client.get(f"/v2/{name}x/tags/list"), 400, "NAME_INVALID")


def test_bad_names_create_nothing(client: httpx.Client) -> None:
    before = expect_status(client.get("/v2/_catalog"), 200).json()["repositories"]
    for name in ("UPPER", "a//b", "a/../b"):
        client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(b"x")}, content=b"x")
    after = expect_status(client.get("/v2/_catalog"), 200).json()["repositories"]
    assert not [n for n in after if n not in before and (n.upper() == n or ".." in n)]


BAD_TAGS = [
    ".hidden",
    "-dash",
    "a" * 129,
    "tag+plus",
    "tag@at",
    "tag%20space",
    "%2e%2e",
    "tag:colon:",
]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_bad_tag(client: httpx.Client, repo: str, tag: str) -> None:
    img = push_image(client, repo, None)
    r = put_manifest(client, repo, tag, img.manifest)
    code = "DIGEST_INVALID" if ":" in tag else "TAG_INVALID"
    expect_error(r, 400, code)
    expect_error(client.get(f"/v2/{repo}/manifests/{tag}"), 400, code)
    assert expect_status(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"] == []


def test_tag_of_128_characters_is_valid(client: httpx.Client, repo: str) -> None:
    img = push_image(client, repo, "T" * 128)
    r = expect_status(client.get(f"/v2/{repo}/manifests/{'T' * 128}"), 200)
    assert r.content == img.manifest


# -- out-of-order and overlapping chunks ---------------------------------------------


@pytest.fixture
def half_upload(client: httpx.Client, repo: str) -> tuple[str, bytes]:
    """An upload holding the first 1000 of 2000 bytes."""
    data = random_bytes(2000)
    loc = start_upload(client, repo)
    r = expect_status(
        client.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"}), 202
    )
    return location(r), data


@pytest.mark.parametrize(
    ("content_range", "size"),
    [
        ("0-999", 1000),  # the first chunk again
        ("500-1499", 1000),  # overlaps what is stored
        ("999-1998", 1000),  # overlaps by one byte
        ("1001-2000", 1000),  # leaves a one-byte gap
        ("5000-5999", 1000),  # far ahead
        ("1999-1000", 1000),  # backwards
    ],
)
def test_out_of_order_chunk_is_416(
    client: httpx.Client, half_upload: tuple[str, bytes], content_range: str, size: int
) -> None:
    loc, data = half_upload
    r = client.patch(loc, content=random_bytes(size), headers={"Content-Range": content_range})
    expect_error(r, 416, "BLOB_UPLOAD_INVALID_RANGE")
    assert r.headers["Range"] == "0-999"
    _finish_cleanly(client, loc, data)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Range": "1000-1499"},  # says 500, sends 1000
        {"Content-Range": "bytes"},
        {"Content-Range": "1000-"},
        {"Content-Range": "-1000"},
        {"Content-Range": "1000-abc"},
        {"Content-Range": "x" * 5000},
    ],
)
def test_malformed_or_inconsistent_chunk_is_refused(
    client: httpx.Client, half_upload: tuple[str, bytes], headers: dict[str, str]
) -> None:
    loc, data = half_upload
    r = client.patch(loc, content=data[1000:], headers=headers)
    assert r.status_code in (400, 416), r.text
    assert error_code_of(r) in ("BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_INVALID_RANGE", "SIZE_INVALID")
    _finish_cleanly(client, loc, data)


def test_out_of_order_final_chunk_in_put(
    client: httpx.Client, half_upload: tuple[str, bytes]
) -> None:
    loc, data = half_upload
    r = client.put(
        with_query(loc, digest=digest_of(data)),
        content=data[900:],
        headers={"Content-Range": "900-1999"},
    )
    expect_error(r, 416, "BLOB_UPLOAD_INVALID_RANGE")
    _finish_cleanly(client, loc, data)


def test_chunk_longer_than_its_range_is_refused(
    client: httpx.Client, half_upload: tuple[str, bytes]
) -> None:
    """Streamed (no Content-Length) so only the server's count can catch it."""
    loc, data = half_upload
    r = client.patch(loc, content=iter([data[1000:]]), headers={"Content-Range": "1000-1499"})
    expect_error(r, 400, "SIZE_INVALID")
    _finish_cleanly(client, loc, data)


def test_chunk_shorter_than_its_range_is_refused(
    client: httpx.Client, half_upload: tuple[str, bytes]
) -> None:
    loc, data = half_upload
    r = client.patch(loc, content=iter([data[1000:1500]]), headers={"Content-Range": "1000-1999"})
    expect_error(r, 400, "SIZE_INVALID")
    _finish_cleanly(client, loc, data)


def _finish_cleanly(client: httpx.Client, loc: str, data: bytes) -> None:
    """The refused chunk left the upload at 1000 bytes; it still completes correctly."""
    r = expect_status(client.get(loc), 204)
    assert r.headers["Range"] == "0-999"
    r = client.patch(loc, content=data[1000:], headers={"Content-Range": "1000-1999"})
    loc = location(expect_status(r, 202))
    r = expect_status(client.put(with_query(loc, digest=digest_of(data))), 201)
    repo = loc.split("/v2/", 1)[1].split("/blobs/", 1)[0]
    assert get_blob(client, repo, digest_of(data)) == data


# -- other bad requests ---------------------------------------------------------------


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "1e3", "99999999999999999999999"])
def test_bad_page_size(client: httpx.Client, repo: str, n: str) -> None:
    push_image(client, repo, "v1")
    r = client.get(f"/v2/{repo}/tags/list", params={"n": n})
    if n.startswith("9"):
        expect_status(r, 200)  # a huge n is capped, not refused
    else:
        expect_error(r, 400, "PAGINATION_NUMBER_INVALID")
        expect_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("PATCH", "manifests/latest"),
        ("POST", "manifests/latest"),
        ("PUT", "blobs/" + "sha256:" + "a" * 64),
        ("POST", "tags/list"),
        ("DELETE", "tags/list"),
        ("PUT", "referrers/sha256:" + "a" * 64),
    ],
)
def test_unsupported_method(client: httpx.Client, repo: str, method: str, suffix: str) -> None:
    r = client.request(method, f"/v2/{repo}/{suffix}")
    expect_error(r, 405, "UNSUPPORTED")


def test_unknown_endpoint(client: httpx.Client, repo: str) -> None:
    expect_error(client.get(f"/v2/{repo}/nothing/here"), 404, "NOT_FOUND")


def test_non_numeric_content_length(live_registry: Any, repo: str) -> None:
    reply = raw_request(
        live_registry, f"PATCH /v2/{repo}/blobs/uploads/x HTTP/1.1\r\nContent-Length: abc"
    )
    assert status_line(reply) == 400


@pytest.mark.parametrize(
    "params",
    [
        {"mount": "sha256:zzz"},
        {"mount": "md5:" + "a" * 32},
        {"mount": "sha256:zzz", "from": "elsewhere"},
        {"mount": digest_of(b"x"), "from": "UPPER/Case"},
        {"mount": digest_of(b"x"), "from": "a//b"},
        {"mount": digest_of(b"x"), "from": "x" * 300},
    ],
)
def test_mount_that_cannot_happen_starts_an_upload(
    client: httpx.Client, repo: str, params: dict[str, str]
) -> None:
    """An invalid ``mount`` digest or ``from`` name cannot be mounted from: the spec's
    answer is an upload session (202), which then works like any other."""
    r = expect_status(client.post(f"/v2/{repo}/blobs/uploads/", params=params), 202)
    loc = location(r)
    assert loc.startswith(f"/v2/{repo}/blobs/uploads/")
    expect_status(client.put(with_query(loc, digest=digest_of(b"x")), content=b"x"), 201)
    assert get_blob(client, repo, digest_of(b"x")) == b"x"


def test_a_nul_character_anywhere_is_a_clear_error_not_a_crash(live_registry: Any) -> None:
    """PostgreSQL text cannot hold NUL: a NUL in a user name, a management filter or a
    path must be refused or answered as "no such thing", never reach the database as a
    500 (found by schemathesis on the PostgreSQL combination of the test matrix)."""
    with httpx.Client(base_url=live_registry.url, timeout=30) as c:
        expect_error(c.get("/v2/", auth=("owner\x00x", "password")), 401, "UNAUTHORIZED")
        r = c.get(
            "/oauth2/token",
            params={"service": live_registry.host},
            auth=("owner\x00x", "password"),
        )
        assert r.status_code == 401, r.text
        r = c.get("/api/roleAssignments", params={"assignee": "a\x00b"}, auth=live_registry.auth)
        expect_error(r, 400, "PARAMETER_INVALID")
        r = c.get("/api/registries/ab%00cde", auth=live_registry.auth)
        assert r.status_code in (400, 404), r.text
        r = c.get("/acr/v1/hello%00/_tags", auth=live_registry.auth)
        assert r.status_code in (400, 404), r.text
