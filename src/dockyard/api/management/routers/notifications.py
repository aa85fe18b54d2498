"""registry:2 notification endpoints (from the config) and their delivery log: system administrators
only, since the log shows what was pushed where. See docs/notifications.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Admin
from dockyard.webhooks.interfaces import Delivery, EndpointStatus
from dockyard.webhooks.services import DeliveryLog

router = APIRouter(tags=["notifications"])
Services = Annotated[ManagementServices, Depends(services_of)]


class DeliveryOut(BaseModel):
    id: int
    endpoint: str
    attempted_at: datetime
    events: int = Field(description="How many events the request carried.")
    first_event_id: int
    last_event_id: int
    status_code: int | None = Field(description="The endpoint's answer; null when none came.")
    error: str | None = Field(description="Why it failed; null when it was delivered.")
    duration_ms: int
    ok: bool = Field(description="Delivered: the endpoint answered 2xx.")


class NotificationEndpointOut(BaseModel):
    name: str
    url: str = Field(description="The endpoint's URL, without credentials or query.")
    disabled: bool
    pending: int = Field(description="Events recorded and not yet delivered to this endpoint.")
    failures: int = Field(description="Failed deliveries in a row (0 after a success).")
    retry_after: datetime | None = Field(description="No attempt before this time (backing off).")
    last: DeliveryOut | None = Field(description="The latest delivery attempt.")


def _delivery(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(**{name: getattr(delivery, name) for name in DeliveryOut.model_fields})


def _shown_url(url: str) -> str:
    """Credentials and tokens may sit in the URL's user part or query: not shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _endpoint(status: EndpointStatus) -> NotificationEndpointOut:
    return NotificationEndpointOut(
        name=status.name,
        url=_shown_url(status.url),
        disabled=status.disabled,
        pending=status.pending,
        failures=status.failures,
        retry_after=status.retry_after,
        last=_delivery(status.last) if status.last is not None else None,
    )


def _log(services: ManagementServices) -> DeliveryLog:
    if services.notifications is None:
        raise ApiError(404, "no notification endpoints are configured")
    return services.notifications


@router.get("/notifications", response_model=list[NotificationEndpointOut])
def list_notification_endpoints(_: Admin, services: Services) -> list[NotificationEndpointOut]:
    """The configured endpoints (`notifications.endpoints`), with what waits for each and how the
    latest delivery went. Empty when none is configured."""
    if services.notifications is None:
        return []
    return [_endpoint(status) for status in services.notifications.endpoints()]


@router.get("/notifications/{name}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    _: Admin,
    services: Services,
    name: Annotated[str, Path(max_length=100, description="The endpoint's name.")],
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many, newest first.")] = 50,
) -> list[DeliveryOut]:
    """The endpoint's latest deliveries, newest first (`notifications.delivery_log` are kept)."""
    log = _log(services)
    if name not in {status.name for status in log.endpoints()}:
        raise ApiError(404, f"no notification endpoint named {name!r}")
    return [_delivery(delivery) for delivery in log.deliveries(name, limit)]
