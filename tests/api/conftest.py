"""Fixtures for the api tier: protocol tests over real HTTP against a live
``hamn serve`` (``live_registry`` in tests/conftest.py). Plain helpers live in
api_support.py.

* ``client`` is an httpx client on the shared live registry, authenticated as
  its owner (Basic, as every request of this tier is unless a test is about
  anonymous access and says so); ``repo`` a
  repository name no other test uses, so tests run in any order and in
  parallel (pytest-xdist gives each worker its own server).
* Every test on the shared server also checks that the server logged no
  internal error while it ran: a protocol test must never cause a 500.
* ``own_server`` starts private servers on a test's own data directory (for
  kill -9 and restart tests) and kills whatever is left of them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import connect, kill9, unique_repo

#: tests/conftest.py. Every conftest is imported as a module named "conftest", so its
#: helpers (start_hamn) are reached through pytest's plugin registry, not an import.
_ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"

#: tests/conftest.py's LiveRegistry: host, url, data_dir, process, log(), username, password, auth
LiveRegistry = Any


def root_conftest(config: pytest.Config) -> Any:
    """The tests/conftest.py module (start_hamn, stop_hamn, LiveRegistry)."""
    module = config.pluginmanager.get_plugin(str(_ROOT_CONFTEST))
    assert module is not None, f"{_ROOT_CONFTEST} is not loaded"
    return module


@pytest.fixture(scope="session")
def hamn_conftest(pytestconfig: pytest.Config) -> Any:
    """tests/conftest.py as a module, for tests that start servers their own way."""
    return root_conftest(pytestconfig)


#: Lines hamn (or granian) writes when a request failed inside the server.
_SERVER_FAULTS = ("request failed", "Traceback", "panicked")


@pytest.fixture
def client(live_registry: LiveRegistry) -> Iterator[httpx.Client]:
    """An HTTP client on the shared live registry, authenticated as its owner."""
    with connect(live_registry) as c:
        yield c


@pytest.fixture
def repo() -> str:
    """A repository name unique to this test."""
    return unique_repo()


@pytest.fixture(autouse=True)
def _no_server_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test on the shared server if the server logged an internal error meanwhile."""
    if "live_registry" not in request.fixturenames:
        yield
        return
    reg: LiveRegistry = request.getfixturevalue("live_registry")
    before = len(reg.log())
    yield
    new = reg.log()[before:]
    faults = [line for line in new.splitlines() if any(f in line for f in _SERVER_FAULTS)]
    assert not faults, "the server logged internal errors:\n" + new[-4000:]


@pytest.fixture
def own_server(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[Callable[[], LiveRegistry]]:
    """Start private servers on one data directory (``tmp_path/data``); kill them at the end.

    Their log (one file for all of them) must show no internal error either.
    """
    start_hamn = root_conftest(pytestconfig).start_hamn
    started: list[LiveRegistry] = []

    def start() -> LiveRegistry:
        reg = start_hamn(tmp_path / "data")
        started.append(reg)
        return reg

    yield start
    for reg in started:
        if reg.process is not None and reg.process.poll() is None:
            kill9(reg.process)
    if started:
        log = started[-1].log()
        faults = [line for line in log.splitlines() if any(f in line for f in _SERVER_FAULTS)]
        assert not faults, "the server logged internal errors:\n" + log[-4000:]


@pytest.fixture
def stop_server(pytestconfig: pytest.Config) -> Callable[[LiveRegistry], None]:
    """Stop a server cleanly (SIGTERM, as an operator would)."""
    stop: Callable[[LiveRegistry], None] = root_conftest(pytestconfig).stop_hamn
    return stop
