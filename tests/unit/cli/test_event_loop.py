"""`dockyard serve` runs its HTTP workers on uvloop; without it (a venv installed before it was a
dependency), on asyncio's loop, saying so."""

from __future__ import annotations

import logging

import pytest

from dockyard.cli import server

pytestmark = pytest.mark.db_independent


def test_the_workers_run_on_uvloop() -> None:
    assert server.event_loop() == "uvloop"


def test_without_uvloop_they_run_on_asyncio_and_serve_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "find_spec", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="dockyard.serve"):
        assert server.event_loop() == "asyncio"
    assert "uvloop is not installed" in caplog.text
