"""Search projects and repositories by name, among those the caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from dockyard.api.management.access import visible
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.routers.projects import ProjectOut, project_out
from dockyard.api.management.routers.repositories import RepositoryOut, repository_out
from dockyard.api.management.security import Caller
from dockyard.registry.queries import Window

router = APIRouter(tags=["search"])
Services = Annotated[ManagementServices, Depends(services_of)]


class SearchOut(BaseModel):
    projects: list[ProjectOut]
    repositories: list[RepositoryOut]


@router.get("/search", response_model=SearchOut)
def search(
    principal: Caller,
    services: Services,
    q: Annotated[str, Query(min_length=1, max_length=255, description="Part of a name, any case.")],
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many of each kind.")] = 20,
) -> SearchOut:
    scope = visible(services, principal)
    projects = services.projects.list(visible=scope, search=q, limit=limit)
    repositories, _ = services.queries.list_repositories(Window(limit=limit), projects=scope, name_contains=q)
    return SearchOut(
        projects=[project_out(p, services.policy.permissions(principal, p.name)) for p in projects.items],
        repositories=[repository_out(r) for r in repositories],
    )
