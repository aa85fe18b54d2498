"""/readyz: the database and storage are required; Redis only degrades a node (it serves uncached)."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette

from dockyard.api.health import Check, health_routes


def ok() -> None:
    return None


def down() -> None:
    raise ConnectionError("Error 111 connecting to 10.0.0.7:6379. Connection refused.")


def probe(checks: dict[str, Check]) -> httpx.Response:
    app = Starlette(routes=health_routes(checks))

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as http:
            return await http.get("/readyz")

    return asyncio.run(get())


def test_every_backend_up_is_ready() -> None:
    answer = probe({"database": ok, "storage": ok, "redis": ok})
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok", "redis": "ok"}}


def test_redis_down_degrades_but_keeps_the_node_in_the_balancer() -> None:
    answer = probe({"database": ok, "storage": ok, "redis": down})
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["checks"]["redis"] == "failed: ConnectionError"
    assert "10.0.0.7" not in answer.text


def test_database_or_storage_down_is_not_ready() -> None:
    for required in ("database", "storage"):
        checks: dict[str, Check] = {"database": ok, "storage": ok, "redis": down}
        checks[required] = down
        answer = probe(checks)
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
