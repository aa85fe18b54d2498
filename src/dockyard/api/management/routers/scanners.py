"""External scanners: Harbor pluggable scanner API adapters the `scan` jobs may use, and which scanner
is the default (one of them, or `built-in`). System administrators only; every change and every test
is audited (never with the secret). Secrets are write-only. docs/security.md, "External scanners".
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType

if TYPE_CHECKING:
    from dockyard.scans.scanners import Scanner, Scanners

router = APIRouter(tags=["scanners"])
Services = Annotated[ManagementServices, Depends(services_of)]
NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="The scanner's name.")]


class ScannerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(
        max_length=2048,
        description="The adapter's base URL: its API is at {url}/api/v1 (another dockyard: "
        "https://host/scanner).",
    )
    auth: Literal["none", "basic", "token"] = Field(
        default="none", description="token: `Authorization: Bearer <secret>`; basic: username and secret."
    )
    username: str | None = Field(default=None, max_length=255)
    secret: str | None = Field(default=None, max_length=8192, description="Write-only: never returned.")
    registry_url: str | None = Field(
        default=None,
        max_length=2048,
        description="The URL the adapter pulls this registry from (default: http.host, else this node's).",
    )
    verify_tls: bool = Field(default=True, description="False skips certificate checks (tests only).")
    request_timeout: float = Field(default=30.0, ge=1, le=300, description="Seconds per HTTP request.")
    scan_timeout: float = Field(
        default=600.0, ge=5, le=7200, description="Seconds to wait for a report, polling."
    )
    default: bool = Field(default=False, description="Make it the default scanner.")


class ScannerOut(BaseModel):
    name: str
    url: str
    auth: Literal["none", "basic", "token"]
    username: str | None
    has_secret: bool = Field(description="Whether a secret is stored; the secret itself never leaves.")
    registry_url: str | None
    verify_tls: bool
    request_timeout: float
    scan_timeout: float
    is_default: bool
    created_at: datetime
    updated_at: datetime


class DefaultScanner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scanner: str = Field(
        max_length=64, description="A registered scanner's name, or `built-in`: dockyard's own scanner."
    )


class ScannerTestOut(BaseModel):
    name: str
    ok: bool
    scanner: dict[str, Any] | None = Field(default=None, description="What the adapter's metadata says.")
    capabilities: list[Any] | None = None
    error: str | None = Field(default=None, description="Why the check failed.")


@router.get("/scanners", response_model=list[ScannerOut])
def list_scanners(principal: Admin, services: Services) -> list[ScannerOut]:
    return [_out(scanner) for scanner in _service(services).list()]


@router.post("/scanners", response_model=ScannerOut, status_code=201)
def create_scanner(body: ScannerIn, request: Request, principal: Admin, services: Services) -> ScannerOut:
    detail = {"url": body.url, "auth": body.auth, "default": body.default}
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.SCANNER, body.name, detail):
        created = _service(services).create(
            body.name,
            body.url,
            auth=body.auth,
            username=body.username,
            secret=body.secret,
            registry_url=body.registry_url,
            verify_tls=body.verify_tls,
            request_timeout=body.request_timeout,
            scan_timeout=body.scan_timeout,
            default=body.default,
        )
    return _out(created)


@router.get("/scanners/default", response_model=DefaultScanner)
def get_default(principal: Admin, services: Services) -> DefaultScanner:
    return DefaultScanner(scanner=_service(services).default_name())


@router.put("/scanners/default", response_model=DefaultScanner)
def put_default(
    body: DefaultScanner, request: Request, principal: Admin, services: Services
) -> DefaultScanner:
    detail = {"default": body.scanner}
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.SCANNER, body.scanner, detail
    ):
        name = _service(services).set_default(body.scanner)
    return DefaultScanner(scanner=name)


@router.get("/scanners/{name}", response_model=ScannerOut)
def get_scanner(name: Name, principal: Admin, services: Services) -> ScannerOut:
    return _out(_service(services).get(name))


@router.delete("/scanners/{name}", status_code=204)
def delete_scanner(name: Name, request: Request, principal: Admin, services: Services) -> Response:
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.SCANNER, name):
        _service(services).delete(name)
    return Response(status_code=204)


@router.post("/scanners/{name}/test", response_model=ScannerTestOut)
def test_scanner(name: Name, request: Request, principal: Admin, services: Services) -> ScannerTestOut:
    """`GET {url}/api/v1/metadata` with the scanner's credentials: a failure of the adapter is the
    answer's `error`, not an error status."""
    from dockyard.errors import DockyardError
    from dockyard.scans.adapters import AdapterClient

    scanners = _service(services)
    with audited(services, request, principal, AuditAction.CHECK, ResourceType.SCANNER, name) as detail:
        config = scanners.config(name)
        try:
            with AdapterClient(config, scanners.guard) as client:
                metadata = client.metadata()
        except DockyardError as exc:
            detail.update(ok=False, error=exc.message)
            return ScannerTestOut(name=name, ok=False, error=exc.message)
        detail["ok"] = True
    return ScannerTestOut(
        name=name, ok=True, scanner=metadata.get("scanner"), capabilities=metadata.get("capabilities")
    )


def _service(services: ManagementServices) -> Scanners:
    if services.scanners is None:
        raise ApiError(404, "external scanners are not available on this server")
    return services.scanners()


def _out(scanner: Scanner) -> ScannerOut:
    return ScannerOut(
        name=scanner.name,
        url=scanner.url,
        auth=scanner.auth,
        username=scanner.username,
        has_secret=scanner.has_secret,
        registry_url=scanner.registry_url,
        verify_tls=scanner.verify_tls,
        request_timeout=scanner.request_timeout,
        scan_timeout=scanner.scan_timeout,
        is_default=scanner.is_default,
        created_at=scanner.created_at,
        updated_at=scanner.updated_at,
    )
