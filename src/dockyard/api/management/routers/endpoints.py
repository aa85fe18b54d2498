"""Registry endpoints: the remote registries the pull-through cache and replication will use. System
administrators only; every change and every test is audited (never with the secret).

Secrets are write-only: a request sets or replaces them, no answer contains them (`has_secret` says
whether there is one). See docs/endpoints.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.endpoints.interfaces import NAME_PATTERN, Endpoint, EndpointCredentials, EndpointKind
from dockyard.endpoints.services import UNSET, EndpointService

router = APIRouter(tags=["endpoints"])
Services = Annotated[ManagementServices, Depends(services_of)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="The endpoint's name.")]


class CredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["basic", "token"] = Field(
        description="basic: username and secret (a password or access token), sent to the registry's "
        "token server or as Basic auth; token: a bearer token sent as it is."
    )
    username: str | None = Field(default=None, max_length=255)
    secret: str = Field(min_length=1, max_length=8192, description="Write-only: never returned.")


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(
        default="", max_length=2048, description="https://host[:port][/path]; empty for docker-hub."
    )
    kind: EndpointKind = EndpointKind.REGISTRY
    credentials: CredentialsIn | None = None
    ca_pem: str | None = Field(default=None, description="Extra CA certificates (PEM) to trust.")
    verify_tls: bool = Field(default=True, description="False skips certificate checks (tests only).")


class EndpointPatch(BaseModel):
    """Only the fields given change; `credentials: null` removes them."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    kind: EndpointKind | None = None
    credentials: CredentialsIn | None = None
    ca_pem: str | None = None
    verify_tls: bool | None = None


class EndpointOut(BaseModel):
    name: str
    url: str
    kind: EndpointKind
    auth: Literal["none", "basic", "token"]
    username: str | None
    has_secret: bool = Field(description="Whether a secret is stored; the secret itself never leaves.")
    ca_pem: str | None
    verify_tls: bool
    created_at: datetime
    updated_at: datetime


class TestOut(BaseModel):
    name: str
    ok: bool
    duration_ms: int
    api_version: str | None = None
    auth: str | None = Field(default=None, description="none, basic or bearer: how the check authenticated.")
    error: str | None = Field(default=None, description="Why the check failed.")


@router.get("/endpoints", response_model=list[EndpointOut])
def list_endpoints(principal: Admin, services: Services) -> list[EndpointOut]:
    return [_out(endpoint) for endpoint in _service(services).list()]


@router.post("/endpoints", response_model=EndpointOut, status_code=201)
def create_endpoint(body: EndpointIn, request: Request, principal: Admin, services: Services) -> EndpointOut:
    endpoint = _service(services)
    detail = {
        "url": body.url,
        "kind": body.kind.value,
        "auth": body.credentials.kind if body.credentials else "none",
    }
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.ENDPOINT, body.name, detail):
        created = endpoint.create(
            body.name, body.url, body.kind, _credentials(body.credentials), body.ca_pem, body.verify_tls
        )
    return _out(created)


@router.get("/endpoints/{name}", response_model=EndpointOut)
def get_endpoint(name: Name, principal: Admin, services: Services) -> EndpointOut:
    return _out(_service(services).get(name))


@router.patch("/endpoints/{name}", response_model=EndpointOut)
def update_endpoint(
    name: Name, body: EndpointPatch, request: Request, principal: Admin, services: Services
) -> EndpointOut:
    given = body.model_fields_set
    changes: dict[str, Any] = {
        "url": body.url if "url" in given and body.url is not None else UNSET,
        "kind": body.kind if "kind" in given and body.kind is not None else UNSET,
        "credentials": _credentials(body.credentials) if "credentials" in given else UNSET,
        "ca_pem": body.ca_pem if "ca_pem" in given else UNSET,
        "verify_tls": body.verify_tls if "verify_tls" in given and body.verify_tls is not None else UNSET,
    }
    # What changed, never to what for the credentials: the audit log must not hold the secret.
    detail: dict[str, Any] = {"changed": sorted(key for key, value in changes.items() if value is not UNSET)}
    if body.url is not None:
        detail["url"] = body.url
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.ENDPOINT, name, detail):
        updated = _service(services).update(name, **changes)
    return _out(updated)


@router.delete("/endpoints/{name}", status_code=204)
def delete_endpoint(name: Name, request: Request, principal: Admin, services: Services) -> Response:
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.ENDPOINT, name):
        _service(services).delete(name)
    return Response(status_code=204)


@router.post("/endpoints/{name}/test", response_model=TestOut)
def test_endpoint(name: Name, request: Request, principal: Admin, services: Services) -> TestOut:
    """`GET /v2/` on the endpoint with its credentials, within the upstream timeouts. A failure of the
    upstream (unreachable, refused credentials, an address the server may not fetch from) is the
    answer's `error`, not an error status."""
    with audited(services, request, principal, AuditAction.CHECK, ResourceType.ENDPOINT, name) as detail:
        result = _service(services).test(name)
        detail["ok"] = result.ok
        if result.error:
            detail["error"] = result.error
    return TestOut(
        name=name,
        ok=result.ok,
        duration_ms=result.duration_ms,
        api_version=result.api_version,
        auth=result.auth,
        error=result.error,
    )


def _service(services: ManagementServices) -> EndpointService:
    if services.endpoints is None:
        raise ApiError(404, "registry endpoints are not available on this server")
    return services.endpoints()


def _credentials(body: CredentialsIn | None) -> EndpointCredentials | None:
    if body is None:
        return None
    return EndpointCredentials(body.kind, body.username, body.secret)


def _out(endpoint: Endpoint) -> EndpointOut:
    return EndpointOut(
        name=endpoint.name,
        url=endpoint.url,
        kind=endpoint.kind,
        auth=endpoint.auth,
        username=endpoint.username,
        has_secret=endpoint.has_secret,
        ca_pem=endpoint.ca_pem,
        verify_tls=endpoint.verify_tls,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )
