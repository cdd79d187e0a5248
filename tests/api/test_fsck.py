"""``hamn fsck`` on the data directory of a live ``hamn serve``, while it runs.

The server gets its own data directory (``own_server``): fsck reads the database
and storage it writes, and a damaged blob here must not disturb other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from api_support import connect, digest_of, push_image, start_upload, unique_repo

from backend_support import hamn_command_env


def fsck(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hamn fsck --data-dir <dir> ...`` as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "hamn", "fsck", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=hamn_command_env(data_dir),
    )


def blob_path(data_dir: Path, digest: str) -> Path:
    algorithm, hexpart = digest.split(":", 1)
    return data_dir / "storage" / "blobs" / algorithm / hexpart[:2] / hexpart


@pytest.mark.filesystem_storage  # damages a blob file
def test_fsck_beside_a_running_server(own_server: Any) -> None:
    reg = own_server()
    assert reg.data_dir is not None
    repo = unique_repo("fsck")
    with connect(reg) as client:
        image = push_image(client, repo, "v1", layers=2, layer_size=64 * 1024)
        push_image(client, repo, "v2", layers=1)
        start_upload(client, repo)  # a session in progress is no problem

        done = fsck(reg.data_dir)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["status"] == "clean" and report["problems"] == []
        assert report["checked"]["blobFiles"] == 5 and report["checked"]["manifests"] == 2
        assert report["checked"]["uploads"] == 1

        digest = digest_of(image.layers[0])
        layer = blob_path(reg.data_dir, digest)
        data = bytearray(layer.read_bytes())
        data[100] ^= 0x01
        layer.write_bytes(bytes(data))

        done = fsck(reg.data_dir, "-o", "table")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "corrupt-blob" in done.stdout and digest in done.stdout
        assert "fsck found 1 problem(s): 1 corrupt-blob" in done.stderr

        # The server was not disturbed, and still answers for everything else.
        assert client.get(f"/v2/{repo}/manifests/v2").status_code == 200
