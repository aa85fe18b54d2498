"""A project's tag immutability rules (project admins): list, add, change, remove."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.ids import ResourceId
from dockyard.api.management.security import Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.projects.interfaces import ImmutableRule
from dockyard.projects.rbac import Permission

router = APIRouter(tags=["immutable tags"])
Services = Annotated[ManagementServices, Depends(services_of)]
PATTERN_HELP = "A doublestar glob: * (not across /), ** (anything), ?, [a-z], {a,b}."


class RuleIn(BaseModel):
    repository_pattern: str = Field(
        default="**",
        min_length=1,
        max_length=255,
        description="Repository path inside the project. " + PATTERN_HELP,
    )
    repository_excluding: bool = Field(default=False, description="Repositories NOT matching the pattern.")
    tag_pattern: str = Field(default="**", min_length=1, max_length=255, description=PATTERN_HELP)
    tag_excluding: bool = Field(default=False, description="Tags NOT matching the pattern.")
    enabled: bool = True


class RuleUpdate(BaseModel):
    repository_pattern: str | None = Field(default=None, min_length=1, max_length=255)
    repository_excluding: bool | None = None
    tag_pattern: str | None = Field(default=None, min_length=1, max_length=255)
    tag_excluding: bool | None = None
    enabled: bool | None = None


class RuleOut(BaseModel):
    id: int
    repository_pattern: str
    repository_excluding: bool
    tag_pattern: str
    tag_excluding: bool
    enabled: bool


def rule_out(rule: ImmutableRule) -> RuleOut:
    return RuleOut(
        id=rule.id,
        repository_pattern=rule.repository_pattern,
        repository_excluding=rule.repository_excluding,
        tag_pattern=rule.tag_pattern,
        tag_excluding=rule.tag_excluding,
        enabled=rule.enabled,
    )


@router.get("/projects/{project}/immutable-rules", response_model=list[RuleOut])
def list_rules(project: str, principal: Caller, services: Services) -> list[RuleOut]:
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return [rule_out(rule) for rule in services.immutability.list(project)]


@router.post("/projects/{project}/immutable-rules", response_model=RuleOut, status_code=201)
def add_rule(project: str, body: RuleIn, request: Request, principal: Caller, services: Services) -> RuleOut:
    detail = {"immutable_rule": body.model_dump()}
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail
    ) as extra:
        require(services, principal, project, Permission.PROJECT_UPDATE)
        rule = services.immutability.add(project, **body.model_dump())
        extra["rule"] = rule.id
    return rule_out(rule)


@router.get("/projects/{project}/immutable-rules/{rule_id}", response_model=RuleOut)
def get_rule(project: str, rule_id: ResourceId, principal: Caller, services: Services) -> RuleOut:
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return rule_out(services.immutability.get(project, rule_id))


@router.put("/projects/{project}/immutable-rules/{rule_id}", response_model=RuleOut)
def update_rule(
    project: str,
    rule_id: ResourceId,
    body: RuleUpdate,
    request: Request,
    principal: Caller,
    services: Services,
) -> RuleOut:
    changes = body.model_dump(exclude_unset=True)
    detail = {"rule": rule_id, "changes": changes}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        rule = services.immutability.update(project, rule_id, **changes)
    return rule_out(rule)


@router.delete("/projects/{project}/immutable-rules/{rule_id}", status_code=204)
def remove_rule(
    project: str, rule_id: ResourceId, request: Request, principal: Caller, services: Services
) -> None:
    detail = {"removed_immutable_rule": rule_id}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        services.immutability.remove(project, rule_id)
