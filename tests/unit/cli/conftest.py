"""Fixtures shared by the CLI's unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import FakeServer, isolate_home, use_fake_server


@pytest.fixture
def debug_log() -> Iterator[list[str]]:
    """Every message the CLI's HTTP client logs at debug level, while the test runs."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("hamn.cli.http")
    handler = Collect()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME, the XDG dirs and docker's and podman's settings in a temp dir (auth_support)."""
    return isolate_home(monkeypatch, tmp_path)


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> FakeServer:
    """A fake hamn server behind every client the CLI makes (auth_support.FakeServer)."""
    fake = FakeServer()
    use_fake_server(monkeypatch, fake)
    return fake
