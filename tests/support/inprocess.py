"""The whole dockyard ASGI app inside the test process, built as `dockyard serve`'s workers build it
(`app.build_services` + `app.create_app`: the gate, /token, /api/v1, /metrics, the middleware) and
driven through Starlette's TestClient. No port, no subprocess: thousands of requests a minute, for the
fuzzing suite and for bad-input tests that need the whole stack but no real client.

- The client (import TestClient from here) is an `httpx.Client`, so tests/support/ociclient.py's
  OCIClient works on it unchanged.
- Used as a context manager, the app's lifespan runs (start-up, then shutdown closes the services) and
  every request runs on one event loop, as in a worker process.
- An exception that escapes the app is raised in the test (`raise_server_exceptions`), so a crash can
  never pass for an answer.
- It follows DOCKYARD_TEST_DB as the servers do (tests/support/server.py's `database_url_factory`).
"""

from __future__ import annotations

import base64
import warnings
from pathlib import Path
from typing import Any

from dockyard.app import build_services, create_app
from dockyard.bootstrap import first_admin
from dockyard.config.settings import Settings
from dockyard.db.engine import sqlite_file
from tests.support import server as server_support
from tests.support.server import deep_merge
from tests.support.sqlite_template import copy_migrated_sqlite

with warnings.catch_warnings():
    # Starlette would rather its TestClient ran on httpx2; on httpx (what the project pins) it works.
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

ADMIN_PASSWORD = "in-process-admin-password-7Qk2"
ADMIN = ("admin", ADMIN_PASSWORD)
BASE_URL = "http://registry.test"


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def in_process_settings(workdir: Path, config: dict[str, Any] | None = None) -> Settings:
    """Settings as `serve` would read them from a config file (auth on, the default), with the
    datadir under workdir and no job runner.

    The database starts migrated, as a test server's does (tests/support/server.py): on SQLite a copy
    of the test process's migrated template (tests/support/sqlite_template.py) unless the datadir has
    one already, on PostgreSQL a copy of the run's (`database_url_factory`). `build_services` then
    finds the schema at the head and skips Alembic: running the migrations was ~0.2 s of CPU per app,
    most of what building one cost."""
    base: dict[str, Any] = {"datadir": str(workdir / "data"), "jobs": {"run_in_serve": False}}
    merged = deep_merge(base, config or {})
    factory = server_support.database_url_factory
    if factory is not None and not merged.get("database", {}).get("url"):
        merged["database"] = {"url": factory(merged["datadir"])}
    settings = Settings.model_validate(merged)
    path = None if settings.database.url else sqlite_file(settings.database_url)  # the datadir's
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        copy_migrated_sqlite(path)
    return settings


def in_process_client(workdir: Path, config: dict[str, Any] | None = None) -> TestClient:
    """A TestClient on a freshly built app, with the `admin` account (password ADMIN_PASSWORD).
    Enter it (`with in_process_client(...) as http:`) to run the app's lifespan around the requests."""
    settings = in_process_settings(workdir, config)
    services = build_services(settings)
    first_admin(settings, services.db, ADMIN_PASSWORD)
    return TestClient(create_app(services), base_url=BASE_URL, client=("192.0.2.10", 40000))
