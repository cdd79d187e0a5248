"""The first owner (issue 3 point 2): made once on first start, its secret never logged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest


@pytest.fixture
def root(pytestconfig: pytest.Config) -> Any:
    return pytestconfig.pluginmanager.get_plugin(str(Path(__file__).parent.parent / "conftest.py"))


def test_a_generated_password_goes_to_a_0600_file_not_to_the_log(tmp_path: Path, root: Any) -> None:
    data = tmp_path / "data"
    reg = root.start_hamn(
        data, env={"HAMN_BOOTSTRAP_USERNAME": "first-owner", "HAMN_BOOTSTRAP_PASSWORD": ""}
    )
    try:
        log = reg.log()
        m = re.search(r"first owner: +first-owner, password in (\S+)", log)
        assert m, log
        secret_file = Path(m.group(1))
        assert secret_file.parent == data
        assert secret_file.stat().st_mode & 0o777 == 0o600
        password = secret_file.read_text().strip()
        assert len(password) >= 20
        assert password not in reg.log()
        with httpx.Client(base_url=reg.url, timeout=30) as c:
            assert c.get("/v2/", auth=("first-owner", password)).status_code == 200
            assert c.get("/api/me", auth=("first-owner", password)).json()["name"] == "first-owner"
    finally:
        root.stop_hamn(reg)
    # A restart makes no second owner and hands out no new password.
    reg = root.start_hamn(
        data, env={"HAMN_BOOTSTRAP_USERNAME": "someone-else", "HAMN_BOOTSTRAP_PASSWORD": ""}
    )
    try:
        assert reg.log().count("first owner:") == 1
        with httpx.Client(base_url=reg.url, timeout=30) as c:
            assert c.get("/v2/", auth=("first-owner", password)).status_code == 200
    finally:
        root.stop_hamn(reg)


def test_a_short_bootstrap_password_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "hamn", "serve", "--port", "1", "--data-dir", str(tmp_path / "d")],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HAMN_BOOTSTRAP_PASSWORD": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "at least 12 characters" in done.stderr
