"""The outbox (events appended in the request path) and the sender (the `notify` job's work).

At least once: an event row is written before the request answers; an endpoint's cursor moves past a
batch only after the endpoint answered 2xx, so a crash between the two sends that batch again. Each
endpoint has its own cursor, so a listener that is down holds back no other. Events every endpoint has
passed are deleted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Table, delete, func, insert, select, text, update

from dockyard.config.notifications_settings import NotificationEndpoint, NotificationsSettings
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.models import JobRow
from dockyard.jobs.queue import JobQueue
from dockyard.projects.rbac import project_of
from dockyard.webhooks.interfaces import REGISTRY2_ACTIONS, Delivery, EndpointStatus, Event

if TYPE_CHECKING:
    from dockyard.webhooks.policies import WebhookPolicies
    from dockyard.webhooks.policy_sender import PolicySender
from dockyard.webhooks.models import (
    ERROR_LENGTH,
    NotificationCursorRow,
    NotificationDeliveryRow,
    NotificationEventRow,
)

log = logging.getLogger("dockyard.webhooks")
KIND = "notify"
RETRY_SOON = timedelta(seconds=1)  # below the threshold, the next attempt comes this soon
# A busy registry runs a notify job every few seconds: their rows are kept this long, not for
# jobs.history (the delivery log is the record of what was sent).
JOB_HISTORY = timedelta(hours=1)
_EVENTS = cast(Table, NotificationEventRow.__table__)
_CURSORS = cast(Table, NotificationCursorRow.__table__)
_DELIVERIES = cast(Table, NotificationDeliveryRow.__table__)
_JOBS = cast(Table, JobRow.__table__)
_OUTBOX_LOCK = 4242101  # pg_advisory_xact_lock key of outbox writers (migrations use 4242001)

# Client = a function that POSTs (url, body, headers, timeout) and returns the status code.
Post = Callable[[str, bytes, dict[str, list[str]], float], int]


class Outbox:
    """Appends events in the request path: one INSERT, plus a `notify` job when none is queued.

    Built in every process: registry:2 endpoints come from the config, webhook policies are data and
    may appear at any time. `wants_*` decide, without I/O once the project's policies are cached,
    whether an event is recorded at all."""

    def __init__(
        self,
        db: Database,
        jobs: JobQueue,
        source: dict[str, str],
        endpoints: list[NotificationEndpoint] | None = None,
        policies: WebhookPolicies | None = None,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.source = source  # registry:2's `source`: this node's addr and instance id
        self.policies = policies
        active = endpoints or []
        # Actions some endpoint is sent (its media-type filters apply when sending).
        self.endpoint_actions = frozenset(
            action for action in REGISTRY2_ACTIONS if any(action not in e.ignore.actions for e in active)
        )

    def wants_endpoint(self, action: str) -> bool:
        return action in self.endpoint_actions

    def project_wanting(self, action: str, repository: str) -> str | None:
        """The project of `repository` if one of its enabled webhook policies wants `action`."""
        if self.policies is None:
            return None
        project = project_of(repository)
        return project if action in self.policies.wanted(project) else None

    def policies_known(self, repository: str) -> bool:
        return self.policies is None or self.policies.cached(project_of(repository))

    def project_wanting_now(self, action: str, repository: str) -> tuple[bool, str | None]:
        if self.policies is None:
            return True, None
        project = project_of(repository)
        wanted = self.policies.cached_wanted(project)
        if wanted is None:
            return False, None
        return True, project if action in wanted else None

    def record(self, events: list[Event]) -> None:
        if not events:
            return
        rows = [self.row(event) for event in events]
        with self.db.write() as connection:
            append(connection, rows)
            wake_sender(self.jobs, connection)

    def row(self, event: Event) -> dict[str, Any]:
        return {
            "created_at": utcnow(),
            "action": event.action,
            "media_type": event.media_type,
            "payload": event.payload(self.source),
            "project": event.project,
        }


def append(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows so that ids are committed in order. Each endpoint's cursor moves past every id
    up to the last one it was sent; on PostgreSQL two transactions could commit ids 11 then 10, and 10
    would be skipped for good. An advisory lock held until the commit makes outbox writers take turns
    (SQLite's write transactions do already). They are small: one INSERT and a look at the job queue."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OUTBOX_LOCK})
    connection.execute(insert(_EVENTS), rows)


def wake_sender(jobs: JobQueue, connection: Connection, run_after: datetime | None = None) -> None:
    """Queue a `notify` job unless one is already waiting (a running one does not count: it may have
    read the outbox before these events were added)."""
    waiting = connection.execute(
        select(_JOBS.c.id).where(_JOBS.c.kind == KIND, _JOBS.c.status == "queued").limit(1)
    ).first()
    if waiting is None:
        jobs.enqueue(KIND, run_after=run_after, connection=connection)


class Sender:
    """Sends the outbox to each endpoint in batches, honouring its threshold and backoff."""

    def __init__(
        self,
        db: Database,
        jobs: JobQueue,
        settings: NotificationsSettings,
        post: Post,
        policies: PolicySender | None = None,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.settings = settings
        self.post = post
        self.policies = policies  # per-project webhook policies, on the same outbox

    def run(self, check_cancelled: Callable[[], None] = lambda: None) -> dict[str, Any]:
        """Deliver what each endpoint is due; queue the next run for those that still wait."""
        sent: dict[str, int] = {}
        next_try: list[datetime] = []
        for endpoint in self.settings.active:
            check_cancelled()
            sent[endpoint.name], retry = self._drain(endpoint, check_cancelled)
            if retry is not None:
                next_try.append(retry)
        cursors: list[str] = []
        if self.policies is not None:
            policy_sent, policy_retries, cursors = self.policies.run(check_cancelled)
            sent.update(policy_sent)
            next_try.extend(policy_retries)
        self._purge_delivered(cursors)
        self.jobs.purge_history(JOB_HISTORY, kind=KIND)
        if next_try:
            with self.db.write() as connection:
                wake_sender(self.jobs, connection, run_after=min(next_try))
        return {"sent": sent}

    def _drain(
        self, endpoint: NotificationEndpoint, check_cancelled: Callable[[], None]
    ) -> tuple[int, datetime | None]:
        """Events sent to `endpoint`, and when to try again (None: it is caught up)."""
        sent = 0
        while True:
            check_cancelled()
            cursor = self._cursor(endpoint.name)
            if cursor.retry_after is not None and cursor.retry_after > utcnow():
                return sent, cursor.retry_after
            rows = self._batch(cursor.last_event_id)
            if not rows:
                return sent, None
            wanted = [
                row
                for row in rows
                if row.action in REGISTRY2_ACTIONS and not endpoint.ignores(row.action, row.media_type)
            ]
            last_id = rows[-1].id
            if not wanted:  # all ignored here: move on without a request
                self._advance(endpoint.name, last_id)
                continue
            if not self._send(endpoint, wanted, last_id):
                return sent, self._cursor(endpoint.name).retry_after or utcnow() + RETRY_SOON
            sent += len(wanted)

    def _send(self, endpoint: NotificationEndpoint, rows: list[Any], last_id: int) -> bool:
        body = json.dumps({"events": [row.payload for row in rows]}, separators=(",", ":")).encode()
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            status = self.post(endpoint.url, body, endpoint.headers, endpoint.timeout.seconds)
            if not 200 <= status < 300:
                error = f"the endpoint answered {status}"
        except Exception as exc:  # any failure to deliver: keep the events, log why
            error = _describe(exc)
        elapsed = int((time.monotonic() - started) * 1000)
        ok = error is None
        with self.db.write() as connection:
            connection.execute(
                insert(_DELIVERIES).values(
                    endpoint=endpoint.name,
                    attempted_at=utcnow(),
                    events=len(rows),
                    first_event_id=rows[0].id,
                    last_event_id=rows[-1].id,
                    status_code=status,
                    error=None if error is None else error[:ERROR_LENGTH],
                    duration_ms=elapsed,
                )
            )
            if ok:
                _set_cursor(connection, endpoint.name, last_event_id=last_id, failures=0, retry_after=None)
            else:
                failures = self._cursor(endpoint.name, connection).failures + 1
                wait = endpoint.backoff.delta if failures >= endpoint.threshold else RETRY_SOON
                _set_cursor(connection, endpoint.name, failures=failures, retry_after=utcnow() + wait)
                log.warning("notification endpoint %s: %s (%d in a row)", endpoint.name, error, failures)
            trim_log(connection, endpoint.name, self.settings.delivery_log)
        return ok

    def _cursor(self, name: str, connection: Connection | None = None) -> Any:
        if connection is None:
            with self.db.write() as own:
                return self._cursor(name, own)
        row = connection.execute(select(_CURSORS).where(_CURSORS.c.endpoint == name)).first()
        if row is None:
            connection.execute(insert(_CURSORS).values(endpoint=name, last_event_id=0, failures=0))
            row = connection.execute(select(_CURSORS).where(_CURSORS.c.endpoint == name)).one()
        return row

    def _batch(self, after: int) -> list[Any]:
        with self.db.read() as connection:
            query = select(_EVENTS).where(_EVENTS.c.id > after).order_by(_EVENTS.c.id)
            return list(connection.execute(query.limit(self.settings.batch)))

    def _advance(self, name: str, last_id: int) -> None:
        with self.db.write() as connection:
            _set_cursor(connection, name, last_event_id=last_id)

    def _purge_delivered(self, policy_cursors: list[str]) -> None:
        """Delete the events every active endpoint and enabled policy has passed (all of them, with
        neither), except the newest row: SQLite gives the next row of an emptied table id 1 again
        (no AUTOINCREMENT), which every cursor has passed already, so it would never be sent."""
        names = [endpoint.name for endpoint in self.settings.active] + policy_cursors
        with self.db.write() as connection:
            newest = connection.execute(select(func.max(_EVENTS.c.id))).scalar()
            if newest is None:
                return
            if names:
                passed = connection.execute(
                    select(func.min(_CURSORS.c.last_event_id)).where(_CURSORS.c.endpoint.in_(names))
                ).scalar()
                known = connection.execute(
                    select(func.count()).select_from(_CURSORS).where(_CURSORS.c.endpoint.in_(names))
                ).scalar()
                if passed is None or known != len(names):
                    return  # an endpoint has not started yet: it still needs every event
                connection.execute(delete(_EVENTS).where(_EVENTS.c.id <= min(passed, newest - 1)))
            else:
                connection.execute(delete(_EVENTS).where(_EVENTS.c.id < newest))


def _set_cursor(connection: Connection, name: str, **values: Any) -> None:
    connection.execute(update(_CURSORS).where(_CURSORS.c.endpoint == name).values(**values))


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the endpoint's timeout"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class DeliveryLog:
    """What `GET /api/v1/notifications` and `dockyard notifications list|log` show."""

    def __init__(self, db: Database, settings: NotificationsSettings) -> None:
        self.db = db
        self.settings = settings

    def endpoints(self) -> list[EndpointStatus]:
        with self.db.read() as connection:
            newest = connection.execute(select(func.max(_EVENTS.c.id))).scalar() or 0
            cursors = {row.endpoint: row for row in connection.execute(select(_CURSORS))}
            statuses = []
            for endpoint in self.settings.endpoints:
                cursor = cursors.get(endpoint.name)
                after = cursor.last_event_id if cursor is not None else 0
                pending = (
                    connection.execute(
                        select(func.count()).select_from(_EVENTS).where(_EVENTS.c.id > after)
                    ).scalar()
                    if newest > after
                    else 0
                )
                last = self._deliveries(connection, endpoint.name, 1)
                statuses.append(
                    EndpointStatus(
                        name=endpoint.name,
                        url=endpoint.url,
                        disabled=endpoint.disabled,
                        pending=int(pending or 0),
                        failures=cursor.failures if cursor is not None else 0,
                        retry_after=cursor.retry_after if cursor is not None else None,
                        last=last[0] if last else None,
                    )
                )
        return statuses

    def deliveries(self, endpoint: str, limit: int = 100) -> list[Delivery]:
        with self.db.read() as connection:
            return self._deliveries(connection, endpoint, limit)

    @staticmethod
    def _deliveries(connection: Connection, endpoint: str, limit: int) -> list[Delivery]:
        rows = connection.execute(
            select(_DELIVERIES)
            .where(_DELIVERIES.c.endpoint == endpoint)
            .order_by(_DELIVERIES.c.id.desc())
            .limit(limit)
        )
        return [Delivery(**{key: getattr(row, key) for key in Delivery.__dataclass_fields__}) for row in rows]


def trim_log(connection: Connection, name: str, keep: int) -> None:
    """Keep the newest `keep` deliveries of one endpoint or policy cursor in the delivery log."""
    oldest_kept = connection.execute(
        select(_DELIVERIES.c.id)
        .where(_DELIVERIES.c.endpoint == name)
        .order_by(_DELIVERIES.c.id.desc())
        .offset(keep - 1)
        .limit(1)
    ).scalar()
    if oldest_kept is not None:
        connection.execute(
            delete(_DELIVERIES).where(_DELIVERIES.c.endpoint == name, _DELIVERIES.c.id < oldest_kept)
        )
