"""The audit log: system administrators read all of it; a project's members with log access (guests
and up) read the events about that project's repositories, artifacts and members (`project=` is then
required). Pulls are listed as hourly counts (`hourly`: true, `count`: how many), among the events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from dockyard.api.management.access import require
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.security import SignedIn
from dockyard.audit.interfaces import (
    DEFAULT_SORT,
    SORT_KEYS,
    ActorKind,
    AuditAction,
    AuditEvent,
    AuditFilter,
    AuditResult,
    ResourceType,
)
from dockyard.projects.rbac import Permission

router = APIRouter(tags=["audit"])
Services = Annotated[ManagementServices, Depends(services_of)]


class AuditEventOut(BaseModel):
    id: int | None = Field(description="The event's id; null for hourly counts.")
    occurred_at: datetime = Field(description="When it happened; for hourly counts, the start of the hour.")
    actor: str
    actor_kind: ActorKind
    client_ip: str | None
    action: AuditAction
    resource_type: ResourceType | None
    resource_name: str | None
    result: AuditResult
    detail: dict[str, Any] | None
    count: int = Field(description="How many times: 1 for a single event, the pulls in the hour for a count.")
    hourly: bool = Field(
        description="A count of the pulls of one manifest (resource_name: repository@digest) by one actor "
        "in the hour starting at occurred_at (audit.pulls: counted); client_ip is the latest address."
    )


@router.get("/audit", response_model=list[AuditEventOut])
def list_audit_events(
    request: Request,
    response: Response,
    principal: SignedIn,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(SORT_KEYS, DEFAULT_SORT))],
    project: Annotated[str | None, Query(description="Events about this project's contents.")] = None,
    actor: Annotated[str | None, Query(description="Exact user or robot name.")] = None,
    actor_kind: ActorKind | None = None,
    action: AuditAction | None = None,
    resource_type: ResourceType | None = None,
    resource: Annotated[str | None, Query(description="Resource name prefix, e.g. team/app.")] = None,
    result: AuditResult | None = None,
    client_ip: Annotated[str | None, Query(description="Exact client address.")] = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive), ISO 8601.")] = None,
    until: Annotated[datetime | None, Query(description="Before this time, ISO 8601.")] = None,
) -> list[AuditEventOut]:
    """Newest first by default. `q` is not used here: filter with the parameters above. An hourly
    pull count matches `since`/`until` when its hour overlaps them."""
    prefix = resource
    if project is not None:
        require(services, principal, project, Permission.LOG_READ)
        scope = f"{project}/"
        if prefix is not None and not prefix.startswith(scope):
            raise ApiError(400, f"resource must start with {scope!r} when project={project!r}")
        prefix = prefix or scope
    elif not principal.is_admin:
        raise ApiError(403, "only system administrators read the whole audit log; pass project=<name>")
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise ApiError(400, "since and until need a time zone (e.g. 2024-05-01T00:00:00Z)")
    filters = AuditFilter(
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        resource_type=resource_type,
        resource_name=prefix,
        result=result,
        client_ip=client_ip,
        since=since,
        until=until,
    )
    sort = ("-" if params.descending else "") + params.sort_key
    page = services.audit.query(filters, page=params.page, page_size=params.page_size, sort=sort)
    set_page_headers(request, response, params, page.total)
    return [event_out(event) for event in page.items]


def event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id,
        occurred_at=event.occurred_at,
        actor=event.actor,
        actor_kind=event.actor_kind,
        client_ip=event.client_ip,
        action=event.action,
        resource_type=event.resource_type,
        resource_name=event.resource_name,
        result=event.result,
        detail=dict(event.detail) if event.detail is not None else None,
        count=event.count,
        hourly=event.hourly,
    )
