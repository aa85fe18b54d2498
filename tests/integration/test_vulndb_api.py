"""GET /api/v1/vulndb on a running server, after `dockyard vulndb import` into its database."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import DOCKYARD, RunningServer, start_server

ADMIN = ("admin", "vulndb-Passw0rd-1")
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vulndb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("vulndb"),
        {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


def test_the_status_follows_imports(server: RunningServer) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=30) as admin:
        empty = admin.get("/vulndb")
        assert empty.status_code == 200, empty.text
        assert empty.json()["version"] == 0 and empty.json()["last_import"] is None
        done = subprocess.run(
            [DOCKYARD, "vulndb", "import", str(FIXTURES), "--config", str(server.config_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        status = admin.get("/vulndb").json()
        assert status["version"] == status["last_change"]["id"] == 1
        assert status["advisories"] == 9 and status["affected"] == 12
        assert status["by_ecosystem"]["pypi"] == 4 and status["by_ecosystem"]["alpine:v3.18"] == 1
        assert status["last_import"]["source"] == str(FIXTURES)
    anonymous = httpx.get(f"{server.url}/api/v1/vulndb", timeout=30)
    assert anonymous.status_code == 401
