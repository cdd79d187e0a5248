"""Blob redirects (SPEC §3.6) against live servers with ``HAMN_BLOB_REDIRECTS=true``.

A blob GET that passes every check answers ``307`` to a signed, expiring URL:
the storage's own (an Azure SAS, an S3 presigned URL) or, on the filesystem,
hamn's own ``/v2/_signed/blobs/<digest>?...&se=...&sig=...``. The tests follow
the Location whatever it is; the ones about hamn's own links (tampering,
expiry, a forwarded Authorization header, a blob deleted behind a valid link)
skip when the server's storage hands out its own URLs (the harness may run the
servers on Azure or S3 storage).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from api_support import (
    OCI_MANIFEST,
    connect,
    digest_of,
    expect_error,
    expect_status,
    push_blob,
    push_image,
    random_bytes,
    unique_repo,
)
from prometheus_client.parser import text_string_to_metric_families

LiveRegistry = Any
SIGNED_PREFIX = "/v2/_signed/blobs/"


def _start(hamn: Any, tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[Any]:
    """A private server with ``env``, stopped afterwards; its log must show no fault."""
    reg = hamn.start_hamn(tmp_path_factory.mktemp("redirects") / "data", env=env)
    try:
        yield reg
    finally:
        hamn.stop_hamn(reg)
    log = reg.log()
    assert "Traceback" not in log and "request failed" not in log, log[-4000:]


@pytest.fixture(scope="module")
def redirecting(
    hamn_conftest: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveRegistry]:
    """A server that redirects blob GETs (links valid 20 minutes, the default)."""
    yield from _start(hamn_conftest, tmp_path_factory, HAMN_BLOB_REDIRECTS="true")


@pytest.fixture(scope="module")
def short_lived(
    hamn_conftest: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveRegistry]:
    """A server whose links last one second."""
    yield from _start(
        hamn_conftest, tmp_path_factory, HAMN_BLOB_REDIRECTS="true", HAMN_REDIRECT_TTL="1s"
    )


@pytest.fixture
def pushed(redirecting: LiveRegistry) -> tuple[str, str, bytes]:
    """(repository, digest, bytes) of a fresh blob on the redirecting server."""
    repo, data = unique_repo("rd"), random_bytes(300_000)
    with connect(redirecting) as c:
        return repo, push_blob(c, repo, data), data


def redirect_of(reg: LiveRegistry, repo: str, digest: str, **kw: Any) -> str:
    """The Location a blob GET (as the owner unless ``kw`` says) is redirected to."""
    r = httpx.get(f"{reg.url}/v2/{repo}/blobs/{digest}", **{"auth": reg.auth, **kw})
    expect_status(r, 307)
    assert r.content == b""
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Cache-Control"] == "no-store"
    location = r.headers["Location"]
    assert urlsplit(location).scheme in ("http", "https"), f"not absolute: {location}"
    return location


def own_link(reg: LiveRegistry, location: str) -> str:
    """``location`` if it is hamn's own signed link, else skip (the storage signs its own)."""
    parts = urlsplit(location)
    if parts.netloc != reg.host or not parts.path.startswith(SIGNED_PREFIX):
        pytest.skip(f"the storage hands out its own links ({parts.netloc})")
    return location


def altered(link: str, **params: str) -> str:
    """``link`` with query parameters replaced."""
    parts = urlsplit(link)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def expect_denied(resp: httpx.Response, *words: str) -> None:
    entry = expect_error(resp, 403, "DENIED")
    for word in words:
        assert word in entry["message"], entry


# ----------------------------------------------------------------- on and off


def test_without_the_setting_blobs_are_served_directly(
    live_registry: LiveRegistry, client: httpx.Client, repo: str
) -> None:
    data = random_bytes(5000)
    digest = push_blob(client, repo, data)
    r = expect_status(client.get(f"/v2/{repo}/blobs/{digest}"), 200)
    assert r.content == data and "Location" not in r.headers


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_a_blob_get_redirects_to_a_link_that_serves_it_without_credentials(
    redirecting: LiveRegistry, algorithm: str
) -> None:
    repo, data = unique_repo("rd"), random_bytes(70_000)
    with connect(redirecting) as c:
        digest = push_blob(c, repo, data, algorithm)
    location = redirect_of(redirecting, repo, digest)
    r = httpx.get(location)
    assert r.status_code == 200, r.text
    assert r.content == data and digest_of(r.content, algorithm) == digest


def test_head_and_manifests_are_never_redirected(redirecting: LiveRegistry) -> None:
    with connect(redirecting) as c:
        image = push_image(c, unique_repo("rd"), "v1", layer_size=2000)
        layer = digest_of(image.layers[0])
        head = expect_status(c.head(f"/v2/{image.repo}/blobs/{layer}"), 200)
        assert head.headers["Content-Length"] == "2000"
        assert head.headers["Docker-Content-Digest"] == layer
        for ref in ("v1", image.digest):
            r = c.get(f"/v2/{image.repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            assert expect_status(r, 200).content == image.manifest


def test_a_range_is_served_through_the_redirect(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, data = pushed
    location = redirect_of(redirecting, repo, digest, headers={"Range": "bytes=1000-1999"})
    r = httpx.get(location, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206, r.text
    assert r.content == data[1000:2000]


def test_an_unknown_blob_is_not_redirected(redirecting: LiveRegistry) -> None:
    repo, data = unique_repo("rd"), random_bytes(100)
    with connect(redirecting) as c:
        push_blob(c, repo, data)
        r = c.get(f"/v2/{repo}/blobs/{digest_of(b'never pushed ' + data)}")
    expect_error(r, 404, "BLOB_UNKNOWN")
    assert "Location" not in r.headers


# ------------------------------------------------- only callers who may pull


def test_only_callers_allowed_to_pull_are_redirected(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, _ = pushed
    url = f"{redirecting.url}/v2/{repo}/blobs/{digest}"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and "Location" not in anonymous.headers
    wrong = httpx.get(url, auth=(redirecting.username, "not-the-password"))
    assert wrong.status_code == 401 and "Location" not in wrong.headers
    # A token that may pull another repository only.
    other = unique_repo("rd")
    token = _pull_token(redirecting, other)
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (401, 403) and "Location" not in r.headers, r.headers
    # ... and one for this repository is redirected, the token flow's way.
    mine = _pull_token(redirecting, repo)
    redirect_of(redirecting, repo, digest, auth=None, headers={"Authorization": f"Bearer {mine}"})


def _pull_token(reg: LiveRegistry, repo: str) -> str:
    r = httpx.get(
        f"{reg.url}/oauth2/token",
        params={"service": reg.host, "scope": f"repository:{repo}:pull"},
        auth=reg.auth,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


# ---------------------------------------------------------- hamn's own links


def test_a_forwarded_authorization_header_is_ignored(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    """``curl -L -u`` and the Go clients send the original credentials to a redirect on
    the same host again: whatever they are, the link alone decides."""
    repo, digest, data = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))
    for authorization in (
        httpx.BasicAuth(redirecting.username, redirecting.password),
        httpx.BasicAuth(redirecting.username, "wrong-password"),
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {_pull_token(redirecting, unique_repo('rd'))}"},
        {"Authorization": "Negotiate abc"},
    ):
        if isinstance(authorization, dict):
            r = httpx.get(link, headers=authorization)
        else:
            r = httpx.get(link, auth=authorization)
        assert r.status_code == 200, (authorization, r.text)
        assert r.content == data
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["ETag"] == f'"{digest}"'


def test_a_link_head_answers_like_the_blob_head(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, data = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))
    r = httpx.head(link)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    # Cacheable by its holder, never past its expiry.
    max_age = int(r.headers["Cache-Control"].removeprefix("private, max-age="))
    assert 1100 < max_age <= 1201


def test_a_link_is_refused_when_altered_in_any_part(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, _ = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))
    query = dict(parse_qsl(urlsplit(link).query))
    with connect(redirecting) as c:
        other_digest = push_blob(c, repo, random_bytes(1000))
        other_repo = unique_repo("rd")
        push_blob(c, other_repo, random_bytes(10))
    sig = query["sig"]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for bad in (
        altered(link, sig=flipped),
        altered(link, sig=""),
        altered(link, se=str(int(query["se"]) + 3600)),
        altered(link, repository=other_repo),
        altered(link, registry="other1"),
        link.replace(digest, other_digest),
    ):
        expect_denied(httpx.get(bad), "not valid", "again")
        assert httpx.head(bad).status_code == 403
    expect_denied(httpx.get(altered(link, se="soon")), "not valid")


def test_a_refusal_does_not_reveal_whether_the_blob_exists(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, _ = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))
    unknown = digest_of(b"nobody pushed this " + random_bytes(8))
    stored = httpx.get(altered(link, sig="x" * 43))
    absent = httpx.get(altered(link.replace(digest, unknown), sig="x" * 43))
    missing_repo = httpx.get(altered(link, repository=unique_repo("nothing"), sig="x" * 43))
    assert stored.status_code == absent.status_code == missing_repo.status_code == 403
    assert stored.json() == absent.json() == missing_repo.json()


def test_a_blob_deleted_behind_a_valid_link_is_unknown(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, _ = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))
    with connect(redirecting) as c:
        expect_status(c.delete(f"/v2/{repo}/blobs/{digest}"), 202)
    expect_error(httpx.get(link), 404, "BLOB_UNKNOWN")


def test_a_link_serves_nothing_but_get_and_head(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, data = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))
    for method in ("PUT", "DELETE", "POST", "PATCH"):
        expect_error(httpx.request(method, link, content=b"x"), 405, "UNSUPPORTED")
    assert httpx.get(link).content == data  # still there


def test_an_expired_link_says_so_and_a_new_request_gets_a_fresh_one(
    short_lived: LiveRegistry,
) -> None:
    repo, data = unique_repo("rd"), random_bytes(4000)
    with connect(short_lived) as c:
        digest = push_blob(c, repo, data)
    link = own_link(short_lived, redirect_of(short_lived, repo, digest))
    expires = int(dict(parse_qsl(urlsplit(link).query))["se"])
    assert expires - time.time() <= 2
    time.sleep(max(expires - time.time(), 0) + 1.2)
    expect_denied(httpx.get(link), "expired", "again")
    fresh = redirect_of(short_lived, repo, digest)
    assert httpx.get(fresh).content == data


def test_links_are_counted_as_their_own_route(
    redirecting: LiveRegistry, pushed: tuple[str, str, bytes]
) -> None:
    repo, digest, _ = pushed
    link = own_link(redirecting, redirect_of(redirecting, repo, digest))

    def served() -> float:
        text = httpx.get(f"{redirecting.url}/metrics", auth=redirecting.auth).text
        wanted = {"route": "signed_blob", "method": "GET", "status": "200"}
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "hamn_http_requests_total" and sample.labels == wanted
        )

    before = served()
    assert httpx.get(link).status_code == 200
    deadline = time.monotonic() + 5
    while served() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served() == before + 1
