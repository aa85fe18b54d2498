"""The drain's shared state: a flag every worker sees, and in-flight counts the main process adds up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from dockyard.api.drain import DrainState, InFlightMiddleware

pytestmark = pytest.mark.db_independent


def test_the_flag_is_seen_by_another_instance_and_cleared_by_reset(tmp_path: Path) -> None:
    main, worker = DrainState(tmp_path / "drain"), DrainState(tmp_path / "drain")
    main.reset()
    assert not worker.draining()
    main.begin()
    assert worker.draining()
    main.reset()
    assert not worker.draining()


def test_in_flight_adds_up_live_processes_only(tmp_path: Path) -> None:
    directory = tmp_path / "drain"
    main = DrainState(directory)
    main.reset()
    DrainState(directory).add(2)
    assert main.in_flight() == 2
    # Another process counts one request, then dies without counting it down: it no longer counts.
    code = (
        "import sys; from pathlib import Path; from dockyard.api.drain import DrainState; "
        "DrainState(Path(sys.argv[1])).add(1)"
    )
    subprocess.run([sys.executable, "-c", code, str(directory)], check=True)
    assert len(list(directory.glob("inflight-*"))) == 2
    assert main.in_flight() == 2
    main.reset()
    assert main.in_flight() == 0
    assert not list(directory.glob("inflight-*"))


def test_the_middleware_counts_requests_but_not_probes(tmp_path: Path) -> None:
    state = DrainState(tmp_path / "drain")
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(state.in_flight())

    async def nothing() -> Any:
        return {}

    async def ignore(message: Any) -> None:
        return None

    middleware = InFlightMiddleware(app, state)
    asyncio.run(middleware({"type": "http", "path": "/v2/"}, nothing, ignore))
    asyncio.run(middleware({"type": "http", "path": "/readyz"}, nothing, ignore))
    assert seen == [1, 0]
    assert state.in_flight() == 0
    assert (tmp_path / "drain" / f"inflight-{os.getpid()}").exists()
