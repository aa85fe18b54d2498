"""What the request path hands to notifications, and what the delivery log shows.

An event is built at the edge (it knows the request) in registry:2's form and appended to the outbox
(`EventRecorder.record`); the `notify` job sends it to every endpoint that does not ignore it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

# registry:2's content type of a notification request (distribution's notifications.EventsMediaType).
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
LAYER_MEDIA_TYPE = "application/octet-stream"  # what registry:2 names a blob's type in its events


@dataclass(frozen=True)
class RequestInfo:
    """The request an event came from, as registry:2 reports it."""

    id: str
    addr: str
    host: str
    method: str
    useragent: str


@dataclass(frozen=True)
class Event:
    """One registry:2 event: `action` on `target` (mediaType, size, digest, length, repository, url,
    tag, ...), by `actor` in `request`."""

    action: str  # push | pull | delete | mount
    target: dict[str, Any]
    request: RequestInfo
    actor: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def media_type(self) -> str | None:
        value = self.target.get("mediaType")
        return value if isinstance(value, str) else None

    def payload(self, source: dict[str, str]) -> dict[str, Any]:
        """The event as registry:2 sends it (one item of the envelope's `events`)."""
        return {
            "id": self.id,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "action": self.action,
            "target": self.target,
            "request": {
                "id": self.request.id,
                "addr": self.request.addr,
                "host": self.request.host,
                "method": self.request.method,
                "useragent": self.request.useragent,
            },
            "actor": {"name": self.actor} if self.actor else {},
            "source": source,
        }


class EventRecorder(Protocol):
    def record(self, events: list[Event]) -> None:
        """Append `events` to the outbox, durably, before the request answers; wakes the sender."""


class PullNotes(Protocol):
    def note(self, event: Event) -> None:
        """Take a pull event for the outbox, later and in a batch; no I/O (webhooks/pulls.py)."""


@dataclass(frozen=True)
class Delivery:
    """One request to an endpoint, as the delivery log keeps it."""

    id: int
    endpoint: str
    attempted_at: datetime
    events: int
    first_event_id: int
    last_event_id: int
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class EndpointStatus:
    """An endpoint as `dockyard notifications list` shows it."""

    name: str
    url: str
    disabled: bool
    pending: int  # events not yet delivered to it
    failures: int  # consecutive
    retry_after: datetime | None
    last: Delivery | None
