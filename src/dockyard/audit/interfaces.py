"""Audit events: who did what, from where, when, and how it ended. The values and the recorder contract.

Callers build an `AuditEvent` and hand it to an `AuditRecorder`:
- `record(event)` on hot paths (logins, token issues, push, pull, denials): it only queues the event;
  a background thread writes queued events in batches.
- `record_now(connection, event)` for management changes (users, projects, members, robots, settings):
  the event is written in the caller's own transaction, so it commits or rolls back with the change.

An authenticated `Principal` maps straight onto the actor: `actor=principal.name,
actor_kind=ActorKind(principal.kind.value)` (the kinds share their names: user, robot, anonymous).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Connection

from dockyard.db.base import utcnow
from dockyard.errors import Category, DockyardError


class ActorKind(StrEnum):
    USER = "user"
    GROUP = "group"  # a group of users; name: the group's; detail: a member added or removed
    ROBOT = "robot"
    ANONYMOUS = "anonymous"
    SYSTEM = "system"  # dockyard itself: retention, GC, bootstrap of the admin user


class AuditAction(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    TOKEN_ISSUED = "token_issued"
    ACCESS_DENIED = "access_denied"
    PUSH = "push"  # a manifest PUT (blob uploads are part of a push, not events of their own)
    # A manifest GET, by tag or by digest. Not HEADs and not blob GETs: a client pulling one image
    # makes one such request per layer, and recording them would flood the table with noise. Pulls
    # are counted per hour (audit.pulls: counted; see audit/pull_counts.py), not recorded one by one.
    PULL = "pull"
    DELETE = "delete"  # of manifests, tags, blobs, repositories and of management resources
    CREATE = "create"  # of users, projects, members, robots, personal tokens
    UPDATE = "update"  # of the same, and of settings
    QUOTA_WARNING = "quota_warning"  # a project's storage usage passed its warning threshold
    CANCEL = "cancel"  # of a background job (queued: at once; running: asked to stop)
    CHECK = "check"  # a registry endpoint's health check (`POST /api/v1/endpoints/{name}/test`)
    RETRY = "retry"  # of a failed or cancelled job: a new job with its kind and params


class ResourceType(StrEnum):
    ARTIFACT = "artifact"  # name: "team/app:tag" or "team/app@sha256:..."
    BLOB = "blob"  # name: "team/app@sha256:..."
    REPOSITORY = "repository"  # name: "team/app"
    PROJECT = "project"
    MEMBER = "member"  # name: "project/member-name"
    USER = "user"
    GROUP = "group"  # a group of users; name: the group's; detail: a member added or removed
    ROBOT = "robot"
    PERSONAL_TOKEN = "personal_token"
    SETTINGS = "settings"
    TOKEN = "token"  # an issued registry token; detail lists the granted scopes
    JOB = "job"  # a background job; name: its kind ("gc"); detail: kind, job_id, params
    JOB_SCHEDULE = "job_schedule"  # a kind's cron schedule; name: the kind
    ENDPOINT = "endpoint"  # a registry endpoint; name: the endpoint's; detail never holds its secret
    VULNDB = "vulndb"  # an import into the vulnerability database; name: the version; detail: counts
    VULNDB_ALLOWLIST = "vulndb_allowlist"  # name: the vulnerability id; detail: project, expiry, reason
    REPLICATION_POLICY = "replication_policy"  # name: the policy's; runs and cancels too (detail: job_id)
    SCANNER = "scanner"  # an external scanner (scans.scanners); detail never holds its secret
    SIGSTORE_TRUST_ROOT = "sigstore_trust_root"  # a system-wide Sigstore trusted root; name: its own


class AuditResult(StrEnum):
    OK = "ok"
    DENIED = "denied"  # refused by policy: authentication, permissions, IP allowlist
    FAILED = "failed"  # attempted and went wrong (bad input, conflicts, errors)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened, or (`hourly`) the `count` pulls of one manifest by one principal in
    the hour starting at `occurred_at`. `detail` is a small JSON object; never put secrets in it."""

    action: AuditAction
    actor: str  # user or robot name; "" for anonymous
    actor_kind: ActorKind
    result: AuditResult = AuditResult.OK
    resource_type: ResourceType | None = None
    resource_name: str | None = None
    client_ip: str | None = None
    detail: Mapping[str, Any] | None = None
    occurred_at: datetime = field(default_factory=utcnow)
    id: int | None = None  # set on single events read back from the log
    count: int = 1  # how many times it happened: more than 1 only in hourly counts
    hourly: bool = False  # a count of pulls per hour (audit_pull_counts), read back from the log

    def __post_init__(self) -> None:
        # Plain strings are accepted and checked here, so a typo fails where it was made. (Members
        # skip the conversion: events are built on hot paths.)
        for name, kind in _ENUM_FIELDS:
            value = getattr(self, name)
            if type(value) is not kind and value is not None:
                object.__setattr__(self, name, kind(value))
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")


_ENUM_FIELDS = (
    ("action", AuditAction),
    ("actor_kind", ActorKind),
    ("result", AuditResult),
    ("resource_type", ResourceType),
)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which events a query returns; every field left as None matches everything."""

    actor: str | None = None  # exact name
    actor_kind: ActorKind | None = None
    action: AuditAction | None = None
    resource_type: ResourceType | None = None
    resource_name: str | None = None  # a prefix: "team/" matches everything in project team
    result: AuditResult | None = None
    client_ip: str | None = None  # exact address
    # An hourly count matches when its hour overlaps [since, until).
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: tuple[AuditEvent, ...]
    total: int  # events matching the filter, across all pages
    page: int  # 1-based
    page_size: int


# Keys `query` sorts by; "-occurred_at" is newest first (the default).
SORT_KEYS = ("occurred_at", "actor", "action", "resource_type", "resource_name", "result", "client_ip")
DEFAULT_SORT = "-occurred_at"


class AuditQueryInvalid(DockyardError):
    """A query asked for an unknown sort key (pages outside the bounds are db.paging's PaginationInvalid)."""

    category = Category.INVALID
    message = "invalid audit log query"


class AuditRecorder(Protocol):
    """Where events go."""

    def record(self, event: AuditEvent) -> None:
        """Queue the event; it reaches the database within about a second. Cheap (no I/O), and it
        never raises for database trouble: the writer retries and logs."""
        ...

    def record_now(self, connection: Connection, event: AuditEvent) -> None:
        """Write the event in the caller's transaction (it commits or rolls back with it)."""
        ...
