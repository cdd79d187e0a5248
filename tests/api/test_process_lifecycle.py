"""``hamn serve``'s worker processes (HTTP and job workers) never outlive it, however it ends."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from api_support import alive, child_pids


@pytest.mark.skipif(not os.path.exists("/proc"), reason="reads /proc (Linux)")
def test_workers_die_with_a_killed_server(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    root: Any = pytestconfig.pluginmanager.get_plugin(
        str(Path(__file__).parent.parent / "conftest.py")
    )
    reg = root.start_hamn(tmp_path / "data")
    # Two HTTP workers and one job worker (the defaults), all started by hamn serve.
    deadline = time.monotonic() + 10
    while len(workers := child_pids(reg.process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 3, workers
    # SIGKILL: no chance to stop the workers itself. They must not live on as orphans
    # holding the port and the database.
    os.kill(reg.process.pid, signal.SIGKILL)
    reg.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in workers if alive(p)], "workers outlived the killed server"
