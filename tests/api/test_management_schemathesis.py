"""Schemathesis against the live server: property-based requests generated from
``/api/openapi.json`` (its coverage, fuzzing and stateful phases, following the
document's links), as the bootstrap owner. No answer may be a server error, and every
answer must match the status codes, content types, headers and schemas documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def test_the_management_api_keeps_its_openapi_document(live_registry: Any, tmp_path: Path) -> None:
    url = live_registry.url
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/api/openapi.json",
            "--url", url,
            "--auth", f"{live_registry.username}:{live_registry.password}",
            "--checks", CHECKS,
            # Bounded: a few thousand requests, well under a minute on two shared cores.
            "--max-examples", "8",
            "--max-time", "45",
            "--request-timeout", "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
