"""Schemathesis against the live server: property-based requests generated from
``/api/openapi.json`` (its coverage, fuzzing and stateful phases, following the
document's links), as the bootstrap owner. No answer may be a server error, and every
answer must match the status codes, content types, headers and schemas documented.

It runs on a server of its own: the stateful phase creates and deletes identities and
role assignments (it may hand Owner at ``/`` to a user it made and take it from the
bootstrap owner), which must not change the shared server other tests rely on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


@pytest.fixture
def own_registry(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[Any]:
    root: Any = pytestconfig.pluginmanager.get_plugin(
        str(Path(__file__).parent.parent / "conftest.py")
    )
    reg = root.start_hamn(tmp_path / "data")
    yield reg
    root.stop_hamn(reg)


def test_the_management_api_keeps_its_openapi_document(own_registry: Any, tmp_path: Path) -> None:
    live_registry = own_registry
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
