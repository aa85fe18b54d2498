"""A project's webhook policies (project administrators and system administrators): create, list,
show, change, delete, the delivery log, a test delivery. See docs/webhooks.md. The secret and the custom
headers' values are write-only: answers say whether a secret is set and name the headers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.projects.rbac import Permission
from dockyard.webhooks.interfaces import EVENT_TYPES, Delivery, WebhookPolicy
from dockyard.webhooks.policies import WebhookPolicies
from dockyard.webhooks.policy_sender import policy_deliveries

router = APIRouter(tags=["webhooks"])
Services = Annotated[ManagementServices, Depends(services_of)]
Name = Annotated[str, Path(max_length=100, description="The webhook's name.")]
EVENTS_HELP = "Event types: " + ", ".join(
    event.name + ("" if event.produced else " (accepted; no producer yet)") for event in EVENT_TYPES
)
FORMAT_HELP = "`harbor` (Harbor's webhook JSON), `cloudevents` (CloudEvents 1.0, structured), `slack`."


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Unique in the project: a-z, 0-9, . _ -")
    url: str = Field(min_length=1, max_length=2048, description="Where events are POSTed (http or https).")
    events: list[str] = Field(min_length=1, max_length=20, description=EVENTS_HELP)
    format: str = Field(default="harbor", description=FORMAT_HELP)
    enabled: bool = True
    secret: str | None = Field(
        default=None,
        max_length=512,
        description="HMAC-SHA256 key: each request carries `X-Dockyard-Signature: sha256=<hex>` over its "
        "body. Write-only, sealed at rest.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Custom headers on every request. Write-only, sealed at rest."
    )
    skip_tls_verify: bool = Field(default=False, description="Do not verify the target's certificate.")


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    format: str | None = None
    enabled: bool | None = None
    secret: str | None = Field(default=None, max_length=512, description='"" removes the secret.')
    headers: dict[str, str] | None = Field(default=None, description="Replaces every custom header.")
    skip_tls_verify: bool | None = None


class WebhookOut(BaseModel):
    name: str
    project: str
    url: str
    enabled: bool
    events: list[str]
    format: str
    has_secret: bool
    header_names: list[str] = Field(description="The custom headers' names (their values are not shown).")
    skip_tls_verify: bool
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryOut(BaseModel):
    id: int
    attempted_at: datetime
    event: str | None = Field(description="The event type (`test`: a test delivery).")
    event_id: int = Field(description="The event's id in the outbox (0 for a test delivery).")
    attempt: int | None
    status_code: int | None = Field(description="The target's answer; null when none came.")
    error: str | None = Field(description="Why it failed; null when it was delivered.")
    duration_ms: int
    ok: bool


def _out(policy: WebhookPolicy) -> WebhookOut:
    return WebhookOut(
        name=policy.name,
        project=policy.project,
        url=policy.url,
        enabled=policy.enabled,
        events=list(policy.events),
        format=policy.format,
        has_secret=policy.has_secret,
        header_names=list(policy.header_names),
        skip_tls_verify=policy.skip_tls_verify,
        created_at=policy.created_at,
        updated_at=policy.updated_at,
    )


def _delivery(delivery: Delivery) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=delivery.id,
        attempted_at=delivery.attempted_at,
        event=delivery.event,
        event_id=delivery.first_event_id,
        attempt=delivery.attempt,
        status_code=delivery.status_code,
        error=delivery.error,
        duration_ms=delivery.duration_ms,
        ok=delivery.ok,
    )


def _policies(services: ManagementServices) -> WebhookPolicies:
    if services.webhooks is None:
        raise ApiError(404, "webhooks are not available")
    return services.webhooks


P = "/projects/{project}/webhooks"


@router.get(P, response_model=list[WebhookOut])
def list_webhooks(project: str, principal: Caller, services: Services) -> list[WebhookOut]:
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return [_out(policy) for policy in _policies(services).list(project)]


@router.post(P, response_model=WebhookOut, status_code=201)
def create_webhook(
    project: str, body: WebhookIn, request: Request, principal: Caller, services: Services
) -> WebhookOut:
    shown = body.model_dump(exclude={"secret", "headers"})
    detail = {"webhook": {**shown, "secret": body.secret is not None, "headers": sorted(body.headers)}}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        policy = _policies(services).create(project, **body.model_dump())
    return _out(policy)


@router.get(P + "/{name}", response_model=WebhookOut)
def show_webhook(project: str, name: Name, principal: Caller, services: Services) -> WebhookOut:
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return _out(_policies(services).get(project, name))


@router.put(P + "/{name}", response_model=WebhookOut)
def update_webhook(
    project: str, name: Name, body: WebhookUpdate, request: Request, principal: Caller, services: Services
) -> WebhookOut:
    changes = body.model_dump(exclude_unset=True)
    shown = {k: v for k, v in changes.items() if k not in ("secret", "headers")}
    if "secret" in changes:
        shown["secret"] = "changed"
    if "headers" in changes:
        shown["headers"] = sorted(changes["headers"] or {})
    detail = {"webhook": name, "changes": shown}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        policy = _policies(services).update(project, name, **changes)
    return _out(policy)


@router.delete(P + "/{name}", status_code=204)
def delete_webhook(project: str, name: Name, request: Request, principal: Caller, services: Services) -> None:
    detail = {"removed_webhook": name}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        _policies(services).delete(project, name)


@router.get(P + "/{name}/deliveries", response_model=list[WebhookDeliveryOut])
def list_webhook_deliveries(
    project: str,
    name: Name,
    principal: Caller,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many, newest first.")] = 50,
) -> list[WebhookDeliveryOut]:
    """The latest delivery attempts, newest first (`webhooks.delivery_log` are kept per webhook)."""
    require(services, principal, project, Permission.PROJECT_UPDATE)
    policy = _policies(services).get(project, name)
    return [_delivery(delivery) for delivery in policy_deliveries(services.db, policy.id, limit)]


@router.post(P + "/{name}/test", response_model=WebhookDeliveryOut)
def test_webhook(
    project: str, name: Name, request: Request, principal: Caller, services: Services
) -> WebhookDeliveryOut:
    """Send a test event (a push of `<project>/webhook-test:test`) now, in the webhook's format and
    with its signature and headers; the answer is the attempt, also in the delivery log."""
    with audited(
        services,
        request,
        principal,
        AuditAction.UPDATE,
        ResourceType.PROJECT,
        project,
        {"tested_webhook": name},
    ):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        policy = _policies(services).get(project, name)
        if services.webhook_sender is None:
            raise ApiError(404, "webhooks are not available")
        delivery = services.webhook_sender().test(policy, principal.name)
    return _delivery(delivery)
