"""What the request path hands to notifications, and what the delivery log shows.

An event is built at the edge (it knows the request) in registry:2's form and appended to the outbox
(`EventRecorder.record`); the `notify` job sends it to every endpoint that does not ignore it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from dockyard.errors import Category, DockyardError

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
    project: str | None = None  # set when a project's webhook policies want it (the outbox's column)

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

    def wants_endpoint(self, action: str) -> bool:
        """Whether some registry:2 endpoint is sent `action` events."""

    def project_wanting(self, action: str, repository: str) -> str | None:
        """The project of `repository` when one of its enabled webhook policies wants `action` (cached:
        no I/O once the project's policies are known), else None."""

    def policies_known(self, repository: str) -> bool:
        """Whether `project_wanting` answers from the cache (no I/O) for `repository`'s project."""

    def project_wanting_now(self, action: str, repository: str) -> tuple[bool, str | None]:
        """(True, what `project_wanting` answers) when that needs no I/O, else (False, None): both
        questions in one cache lookup, for the pulls."""


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
    event: str | None = None  # a webhook policy's event type ("test": a test delivery)
    attempt: int | None = None  # of that event, from 1

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


# --- per-project webhook policies (docs/webhooks.md) --------------------------------------------------
# registry:2 endpoints are sent these outbox actions only; the others are project events.
REGISTRY2_ACTIONS = frozenset({"push", "pull", "delete", "mount"})


@dataclass(frozen=True)
class EventType:
    """A webhook event type: its name in the API, its action in the outbox (≤ 16 characters), and its
    names in Harbor's and CloudEvents' formats."""

    name: str
    action: str
    harbor: str
    cloudevents: str
    produced: bool = True  # False: accepted in policies, no producer yet


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("push", "push", "PUSH_ARTIFACT", "io.dockyard.artifact.pushed"),
    EventType("pull", "pull", "PULL_ARTIFACT", "io.dockyard.artifact.pulled"),
    EventType("delete", "delete", "DELETE_ARTIFACT", "io.dockyard.artifact.deleted"),
    EventType("quota_warning", "quota_warning", "QUOTA_WARNING", "io.dockyard.quota.warning"),
    EventType("quota_exceeded", "quota_exceeded", "QUOTA_EXCEED", "io.dockyard.quota.exceeded"),
    EventType("retention_run", "retention", "TAG_RETENTION", "io.dockyard.retention.finished"),
    EventType(
        "immutable_refusal", "immutable", "TAG_IMMUTABILITY_REFUSED", "io.dockyard.tag.immutable_refused"
    ),
    EventType("scan_finished", "scan", "SCANNING_COMPLETED", "io.dockyard.scan.finished"),
    EventType(
        "replication_finished",
        "replication",
        "REPLICATION",
        "io.dockyard.replication.finished",
    ),
)
EVENT_BY_NAME = {event.name: event for event in EVENT_TYPES}
EVENT_BY_ACTION = {event.action: event for event in EVENT_TYPES}
FORMATS = ("harbor", "cloudevents", "slack")
SIGNATURE_HEADER = "X-Dockyard-Signature"  # sha256=<hex of HMAC-SHA256(secret, body)>


@dataclass(frozen=True)
class WebhookPolicy:
    """A project's webhook as the API shows it (the secret and header values never leave the server)."""

    id: int
    project: str
    name: str
    url: str
    enabled: bool
    events: tuple[str, ...]  # EventType names
    format: str
    has_secret: bool
    header_names: tuple[str, ...]
    skip_tls_verify: bool
    created_at: datetime
    updated_at: datetime

    @property
    def cursor(self) -> str:
        """Its name among the outbox cursors and in the delivery log."""
        return policy_cursor(self.id)


def policy_cursor(policy_id: int) -> str:
    return f"policy:{policy_id}"


@dataclass(frozen=True)
class Secrets:
    """What a delivery needs that is sealed at rest: the HMAC key and the custom headers."""

    secret: str | None
    headers: dict[str, str]


class Sealer(Protocol):
    """Seals secrets at rest (endpoints.secrets.SecretBox): `name` binds a sealed value to its row."""

    def seal(self, name: str, secret: str) -> str: ...

    def open(self, name: str, sealed: str) -> str | None: ...


class WebhookNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "webhook not found"


class WebhookExists(DockyardError):
    category = Category.CONFLICT
    message = "the project has a webhook of this name already"


class InvalidWebhook(DockyardError):
    category = Category.INVALID
    message = "invalid webhook"
