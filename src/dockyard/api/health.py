"""Load-balancer probes, without auth: `/healthz` (the process serves) and `/readyz` (its backends answer).

`/readyz` runs every check at once in threads, each bounded by a timeout, and answers 200 with
`{"status": "ok", "checks": {"database": "ok", ...}}`, or 503 naming what failed. Redis is not required:
a node serves correctly without it (it stops caching, so it is never stale), so a failing Redis check
answers 200 with `"status": "degraded"`. Were it a 503, a Redis outage would make HAProxy take every node
out at once and turn a slower registry into no registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.db.session import Database
from dockyard.errors import PathNotFound
from dockyard.storage.driver.base import StorageDriver

Check = Callable[[], None]  # raises when the backend is not usable
CHECK_TIMEOUT_SECONDS = 3.0
OPTIONAL_CHECKS = frozenset({"redis"})  # failing, they degrade the node without making it unready
log = logging.getLogger("dockyard.health")


def readiness_checks(
    db: Database, driver: StorageDriver, redis_ping: Check | None = None
) -> dict[str, Check]:
    checks: dict[str, Check] = {"database": lambda: _query(db), "storage": lambda: _list_root(driver)}
    if redis_ping is not None:
        checks["redis"] = redis_ping
    return checks


def health_routes(
    checks: Mapping[str, Check],
    timeout: float = CHECK_TIMEOUT_SECONDS,
    draining: Callable[[], bool] | None = None,
) -> list[BaseRoute]:
    # A check still running when the next probe comes (a backend that does not answer) is waited on
    # again, not started twice: probes every few seconds cannot pile up threads, and run in their own
    # threads, so a busy default executor cannot make a healthy node look unready.
    executor = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="readyz")
    running: dict[str, asyncio.Future[None]] = {}

    async def probe(name: str, check: Check) -> str:
        future = running.get(name)
        if future is None or future.done():
            future = asyncio.get_running_loop().run_in_executor(executor, check)
            future.add_done_callback(_retrieve)
            running[name] = future
        return await _run(name, future, timeout)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if draining is not None and draining():
            # Shutting down (api/drain.py): out of the balancer at once, in-flight requests go on.
            return JSONResponse(
                {"status": "draining"}, status_code=503, headers={"Cache-Control": "no-store"}
            )
        results = await asyncio.gather(*(probe(name, check) for name, check in checks.items()))
        report = dict(zip(checks, results, strict=True))
        ready = all(result == "ok" for name, result in report.items() if name not in OPTIONAL_CHECKS)
        healthy = all(result == "ok" for result in report.values())
        status = "ok" if healthy else "degraded" if ready else "unavailable"
        return JSONResponse(
            {"status": status, "checks": report},
            status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]


async def _run(name: str, running: asyncio.Future[None], timeout: float) -> str:
    try:
        await asyncio.wait_for(asyncio.shield(running), timeout)
    except TimeoutError:
        log.warning("readiness check %s timed out after %gs", name, timeout)
        return f"timed out after {timeout:g}s"
    except Exception as exc:  # any failure means "not ready"
        # The body is public (no auth): the error's type only; the details go to the log.
        log.warning("readiness check %s failed: %s", name, exc)
        return f"failed: {type(exc).__name__}"
    return "ok"


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "never retrieved" warning when every probe timed out


def _query(db: Database) -> None:
    with db.read() as connection:
        connection.execute(text("SELECT 1")).scalar_one()


def _list_root(driver: StorageDriver) -> None:
    with contextlib.suppress(PathNotFound):  # reachable, nothing stored yet
        driver.list("")
