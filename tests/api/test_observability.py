"""Request ids, the JSON access log and ``/metrics``, against a live server.

Most tests start their own server at debug level (the access log on, request
headers in it) so they can read its log file; the request-id tests also run on
the shared server. Requests authenticate as the server's owner (``/metrics``
too: it needs management read at ``/``), except in the test that sends made-up
secrets on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "route",
    "registry",
    "repository",
}


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory: pytest.TempPathFactory, hamn_conftest: Any) -> Iterator[Any]:
    """A private server logging at debug level (access log and request headers on)."""
    root = hamn_conftest
    reg = root.start_hamn(
        tmp_path_factory.mktemp("observed") / "data", env={"HAMN_LOG_LEVEL": "debug"}
    )
    try:
        yield reg
    finally:
        root.stop_hamn(reg)


def json_lines(log: str) -> list[dict[str, Any]]:
    """The log's JSON lines (granian's own start-up lines are not JSON yet)."""
    out = []
    for text in log.splitlines():
        if text.startswith("{"):
            out.append(json.loads(text))
    return out


def access_line(reg: Any, rid: str) -> dict[str, Any]:
    """The access-log line of the request with id ``rid`` (waits briefly for it)."""
    deadline = time.monotonic() + 5
    while True:
        found = [
            e
            for e in json_lines(reg.log())
            if e.get("logger") == "hamn.access" and e.get("request_id") == rid
        ]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == 1, f"{len(found)} access lines for {rid}:\n{reg.log()[-3000:]}"
    return found[0]


def scrape(reg: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus_client: value by (sample name, sorted labels)."""
    resp = httpx.get(f"{reg.url}/metrics", auth=reg.auth, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def requests_counted(samples: dict[Any, float], **labels: str) -> float:
    key = ("hamn_http_requests_total", tuple(sorted(labels.items())))
    return samples.get(key, 0.0)


# -------------------------------------------------------------------- request ids


def test_a_sane_request_id_is_echoed(client: httpx.Client) -> None:
    resp = client.get("/v2/", headers={"X-Request-Id": "client-id_1.2"})
    assert resp.headers["x-request-id"] == "client-id_1.2"


@pytest.mark.parametrize("offered", [None, "x" * 65, "bad id", "semi;colon"])
def test_a_request_id_is_generated_otherwise(client: httpx.Client, offered: str | None) -> None:
    headers = {"X-Request-Id": offered} if offered else {}
    resp = client.get("/v2/", headers=headers)
    rid = resp.headers["x-request-id"]
    assert rid != offered
    assert 8 <= len(rid) <= 64 and rid.isalnum()


def test_an_error_response_carries_a_request_id(client: httpx.Client) -> None:
    resp = client.get("/v2/no/such/endpoint")
    assert resp.status_code == 404
    assert resp.headers.get("x-request-id")


# --------------------------------------------------------------------- access log


def test_the_access_line_is_json_with_the_request_fields(debug_server: Any) -> None:
    rid = f"obs-{uuid.uuid4().hex}"
    body = b"not a manifest"
    resp = httpx.put(
        f"{debug_server.url}/v2/obs/app/manifests/v1",
        auth=debug_server.auth,
        content=body,
        headers={"X-Request-Id": rid, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status_code == 400
    entry = access_line(debug_server, rid)
    assert not ACCESS_FIELDS - entry.keys(), entry
    assert entry["level"] == "info"
    assert entry["method"] == "PUT"
    assert entry["path"] == "/v2/obs/app/manifests/v1"
    assert entry["status"] == 400
    assert entry["route"] == "manifest"
    assert entry["registry"] == "local"
    assert entry["repository"] == "obs/app"
    assert entry["bytes_in"] == len(body)
    assert entry["bytes_out"] == len(resp.content)
    assert entry["duration_ms"] >= 0
    assert entry["time"].endswith("Z")


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2/", "base"),
        ("/v2/_catalog", "catalog"),
        ("/v2/obs/app/tags/list", "tags"),
        ("/v2/obs/app/blobs/sha256:" + "0" * 64, "blob"),
        ("/v2/obs/app/referrers/sha256:" + "0" * 64, "referrers"),
        ("/acr/v1/_catalog", "acr_metadata"),
        ("/healthz", "other"),
    ],
)
def test_the_access_line_names_the_route_kind(debug_server: Any, path: str, route: str) -> None:
    rid = f"obs-{uuid.uuid4().hex}"
    httpx.get(f"{debug_server.url}{path}", auth=debug_server.auth, headers={"X-Request-Id": rid})
    assert access_line(debug_server, rid)["route"] == route


def test_an_upload_is_logged_as_an_upload(debug_server: Any) -> None:
    rid = f"obs-{uuid.uuid4().hex}"
    resp = httpx.post(
        f"{debug_server.url}/v2/obs/app/blobs/uploads/",
        auth=debug_server.auth,
        headers={"X-Request-Id": rid},
    )
    assert resp.status_code == 202
    assert access_line(debug_server, rid)["route"] == "upload"


def test_no_secret_from_a_request_reaches_the_log(debug_server: Any) -> None:
    # Made-up credentials on purpose (refused, and still never logged).
    rid = f"obs-{uuid.uuid4().hex}"
    basic = base64.b64encode(b"alice:B4sicS3cret").decode()
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.SigN4tur3Secret"
    httpx.get(
        f"{debug_server.url}/v2/obs/app/blobs/uploads/x",
        params={"_state": "St4teS3cret", "password": "P4ssS3cret", "n": "10"},
        headers={
            "X-Request-Id": rid,
            "Authorization": f"Basic {basic}",
            "Cookie": "s=C00kieS3cret",
        },
    )
    httpx.get(
        f"{debug_server.url}/v2/obs/app/tags/list",
        headers={"X-Request-Id": f"{rid}-2", "Authorization": f"Bearer {jwt}"},
    )
    entry = access_line(debug_server, rid)
    access_line(debug_server, f"{rid}-2")
    assert "_state=" in entry["path"] and "n=10" in entry["path"]
    assert entry["request_headers"]["authorization"] == "[redacted]"
    log = debug_server.log()
    for secret in (
        basic,
        "B4sicS3cret",
        "St4teS3cret",
        "P4ssS3cret",
        "C00kieS3cret",
        jwt,
        "SigN4tur3",
    ):
        assert secret not in log


# ------------------------------------------------------------------------ metrics


def test_metrics_count_requests_across_workers(debug_server: Any) -> None:
    labels = {"route": "manifest", "method": "GET", "status": "404"}
    before = requests_counted(scrape(debug_server), **labels)
    n = 40
    for _ in range(n):
        # A fresh connection each time, so the requests spread over the worker processes.
        with httpx.Client(base_url=debug_server.url, auth=debug_server.auth) as fresh:
            assert fresh.get("/v2/obs/none/manifests/latest").status_code == 404
    after = scrape(debug_server)
    assert requests_counted(after, **labels) == before + n
    histogram = (
        "hamn_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "manifest")),
    )
    assert after[histogram] >= n
    assert after[("hamn_http_sent_bytes_total", (("route", "manifest"),))] > 0


def test_metrics_itself_is_not_counted(debug_server: Any) -> None:
    other = {"route": "other", "method": "GET", "status": "200"}
    before = requests_counted(scrape(debug_server), **other)
    for _ in range(3):
        httpx.get(f"{debug_server.url}/metrics", auth=debug_server.auth)
    assert requests_counted(scrape(debug_server), **other) == before


def test_upload_bytes_are_counted(debug_server: Any) -> None:
    key = ("hamn_upload_bytes_total", ())
    before = scrape(debug_server).get(key, 0.0)
    data = b"upload-bytes-" + uuid.uuid4().bytes
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = httpx.post(
        f"{debug_server.url}/v2/obs/app/blobs/uploads/",
        auth=debug_server.auth,
        params={"digest": digest},
        content=data,
    )
    assert resp.status_code == 201
    assert scrape(debug_server).get(key, 0.0) == before + len(data)


def test_labels_hold_no_repository_or_digest(debug_server: Any) -> None:
    httpx.get(
        f"{debug_server.url}/v2/obs/secretrepo/manifests/sha256:" + "1" * 64,
        auth=debug_server.auth,
    )
    text = httpx.get(f"{debug_server.url}/metrics", auth=debug_server.auth).text
    assert "secretrepo" not in text
    assert "1" * 64 not in text
