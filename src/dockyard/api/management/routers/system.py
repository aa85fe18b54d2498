"""System information and health."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.security import Caller

router = APIRouter(tags=["system"])
log = logging.getLogger("dockyard.api.management")
HEALTH_TIMEOUT = 5.0  # seconds each check may take before it counts as down


class SystemInfoOut(BaseModel):
    version: str
    auth_mode: str
    ldap: bool
    read_only: bool
    delete_enabled: bool
    # Infrastructure details, shown to signed-in callers only.
    storage_driver: str | None = None
    database: str | None = None


class ComponentHealth(BaseModel):
    name: str
    status: str  # "healthy" | "unhealthy"
    error: str | None = None


class HealthOut(BaseModel):
    status: str  # "healthy" when every component is
    components: list[ComponentHealth]


@router.get("/systeminfo", response_model=SystemInfoOut)
def system_info(
    principal: Caller, services: Annotated[ManagementServices, Depends(services_of)]
) -> SystemInfoOut:
    info = services.system
    out = SystemInfoOut(
        version=info.version,
        auth_mode=info.auth_mode,
        ldap=info.ldap,
        read_only=info.read_only,
        delete_enabled=info.delete_enabled,
    )
    if not principal.is_anonymous:
        out.storage_driver = info.storage_driver
        out.database = services.db.dialect
    return out


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "a component is unreachable"}},
)
async def health(services: Annotated[ManagementServices, Depends(services_of)]) -> JSONResponse:
    """Whether this node reaches its database and its storage. No authentication: for load balancers."""
    checks = await asyncio.gather(
        _check("database", lambda: _ping_database(services)),
        _check("storage", lambda: services.driver.list("")),
    )
    healthy = all(check.status == "healthy" for check in checks)
    body = HealthOut(status="healthy" if healthy else "unhealthy", components=list(checks))
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


def _ping_database(services: ManagementServices) -> None:
    with services.db.read() as connection:
        connection.execute(text("SELECT 1"))


async def _check(name: str, probe: Callable[[], object]) -> ComponentHealth:
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), HEALTH_TIMEOUT)
    except Exception as exc:
        # The class name only: messages may carry paths or connection strings.
        log.warning("health check %s failed after %.1fs: %r", name, time.monotonic() - started, exc)
        return ComponentHealth(name=name, status="unhealthy", error=type(exc).__name__)
    return ComponentHealth(name=name, status="healthy")
