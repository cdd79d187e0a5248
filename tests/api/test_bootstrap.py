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


def test_a_second_server_with_another_secret_key_refuses_to_start(
    tmp_path: Path, root: Any
) -> None:
    """Servers sharing a database must share the key its secrets are sealed with: a
    second one with its own key stops at once, saying which key it needs."""
    import subprocess
    import sys

    database = f"sqlite:///{tmp_path / 'shared.db'}"
    first = root.start_hamn(tmp_path / "first", env={"HAMN_DATABASE_URL": database})
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "hamn",
                "serve",
                "--port",
                "1",
                "--data-dir",
                str(tmp_path / "second"),
            ],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HAMN_DATABASE_URL": database},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "sealed with another server key" in second.stderr, second.stderr
        assert "HAMN_SECRET_KEY" in second.stderr
        # The same key lets it start: it is one deployment.
        key = (tmp_path / "first" / "server.key").read_text().strip()
        same = root.start_hamn(
            tmp_path / "third", env={"HAMN_DATABASE_URL": database, "HAMN_SECRET_KEY": key}
        )
        try:
            with httpx.Client(timeout=30) as c:
                token = c.get(
                    f"{first.url}/oauth2/token",
                    params={"service": first.host, "scope": "registry:catalog:*"},
                    auth=(first.username, first.password),
                ).json()["access_token"]
                # A token the first server issued is honoured by the second, reached under
                # the same host name (as behind a load balancer: tokens name their service).
                got = c.get(
                    f"{same.url}/v2/",
                    headers={"Authorization": f"Bearer {token}", "Host": first.host},
                )
                assert got.status_code == 200, got.text
        finally:
            root.stop_hamn(same)
    finally:
        root.stop_hamn(first)
