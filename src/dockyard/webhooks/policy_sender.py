"""Delivery to per-project webhook policies: part of the `notify` job (webhooks/services.Sender), on the
same outbox and cursors as registry:2 endpoints (docs/webhooks.md).

Each enabled policy has a cursor (`policy:<id>`) and is sent its project's events of the types it
wants, one request per event, in order. A failed attempt waits `webhooks.backoff`, doubling up to
`webhooks.max_backoff`; after `webhooks.attempts` the event is given up (logged) and the next follows,
so a target that stays down cannot hold the outbox forever. Every attempt is in the policy's delivery
log: time, event type, attempt, status code or error, duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, func, insert, select, update

from dockyard.config.notifications_settings import WebhooksSettings
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.models import ProjectRow
from dockyard.webhooks.formats import headers_for, render
from dockyard.webhooks.interfaces import (
    EVENT_BY_ACTION,
    EVENT_BY_NAME,
    Delivery,
    WebhookPolicy,
    policy_cursor,
)
from dockyard.webhooks.models import (
    ERROR_LENGTH,
    NotificationCursorRow,
    NotificationDeliveryRow,
    NotificationEventRow,
)
from dockyard.webhooks.policies import WebhookPolicies, forget_policy
from dockyard.webhooks.services import trim_log

log = logging.getLogger("dockyard.webhooks")
_EVENTS = cast(Table, NotificationEventRow.__table__)
_CURSORS = cast(Table, NotificationCursorRow.__table__)
_DELIVERIES = cast(Table, NotificationDeliveryRow.__table__)
BATCH = 100
# (url, body, headers, timeout, verify TLS) -> status code
PolicyPost = Callable[[str, bytes, list[tuple[str, str]], float, bool], int]
Observe = Callable[[str], None]  # a delivery's result: delivered | failed | gave_up


class PolicySender:
    def __init__(
        self,
        db: Database,
        policies: WebhookPolicies,
        settings: WebhooksSettings,
        post: PolicyPost,
        source: str,
        observe: Observe | None = None,
    ) -> None:
        self.db = db
        self.policies = policies
        self.settings = settings
        self.post = post
        self.source = source  # the registry's URL: CloudEvents' `source`
        self.observe = observe or (lambda result: None)

    def run(self, check_cancelled: Callable[[], None]) -> tuple[dict[str, int], list[datetime], list[str]]:
        """Events sent per policy, when to try again, and the cursors of every enabled policy."""
        sent: dict[str, int] = {}
        retries: list[datetime] = []
        enabled = self.policies.enabled()
        self._forget_gone({policy.id for policy in enabled})
        for policy in enabled:
            check_cancelled()
            count, retry = self._drain(policy, check_cancelled)
            sent[f"{policy.project}/{policy.name}"] = count
            if retry is not None:
                retries.append(retry)
        return sent, retries, [policy.cursor for policy in enabled]

    def _drain(
        self, policy: WebhookPolicy, check_cancelled: Callable[[], None]
    ) -> tuple[int, datetime | None]:
        actions = [EVENT_BY_NAME[name].action for name in policy.events]
        public = self._public(policy.project)
        sent = 0
        while True:
            check_cancelled()
            with self.db.write() as connection:
                cursor = _cursor(connection, policy.cursor)
                newest = connection.execute(select(func.max(_EVENTS.c.id))).scalar() or 0
            if cursor.retry_after is not None and cursor.retry_after > utcnow():
                return sent, cursor.retry_after
            with self.db.read() as connection:
                rows = list(
                    connection.execute(
                        select(_EVENTS)
                        .where(
                            _EVENTS.c.project == policy.project,
                            _EVENTS.c.id > cursor.last_event_id,
                            _EVENTS.c.id <= newest,
                            _EVENTS.c.action.in_(actions),
                        )
                        .order_by(_EVENTS.c.id)
                        .limit(BATCH)
                    )
                )
            failures = int(cursor.failures)
            for row in rows:
                attempt = failures + 1
                ok = self._attempt(policy, row, attempt, public)
                if ok or attempt >= self.settings.attempts:
                    if not ok:
                        log.warning(
                            "webhook %s/%s: gave up event %d after %d attempts",
                            policy.project,
                            policy.name,
                            row.id,
                            attempt,
                        )
                        self.observe("gave_up")
                    self._move(policy.cursor, last_event_id=row.id, failures=0, retry_after=None)
                    failures = 0
                    sent += int(ok)
                    continue
                wait = min(
                    self.settings.backoff.seconds * 2 ** (attempt - 1), self.settings.max_backoff.seconds
                )
                retry = utcnow() + timedelta(seconds=wait)
                self._move(policy.cursor, failures=attempt, retry_after=retry)
                return sent, retry
            if len(rows) < BATCH:  # nothing else of this policy's up to `newest`
                self._move(policy.cursor, last_event_id=newest)
                return sent, None

    def _attempt(self, policy: WebhookPolicy, row: Any, attempt: int, public: bool) -> bool:
        status, error, elapsed = self.send(policy, row.payload, row.action, public)
        ok = error is None
        self.observe("delivered" if ok else "failed")
        if not ok:
            log.warning("webhook %s/%s: %s (attempt %d)", policy.project, policy.name, error, attempt)
        self._log(policy, row.id, EVENT_BY_ACTION[row.action].name, attempt, status, error, elapsed)
        return ok

    def send(
        self, policy: WebhookPolicy, payload: dict[str, Any], action: str, public: bool
    ) -> tuple[int | None, str | None, int]:
        """POST one event: (status code or None, error or None, milliseconds)."""
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            secrets = self.policies.secrets(policy.id)
            rendered = render(policy.format, payload, action, policy.project, public, self.source)
            headers = headers_for(rendered, str(payload.get("id", "")), secrets.secret, secrets.headers)
            status = self.post(
                policy.url, rendered.body, headers, self.settings.timeout.seconds, not policy.skip_tls_verify
            )
            if not 200 <= status < 300:
                error = f"the target answered {status}"
        except Exception as exc:  # any failure to deliver: logged, retried
            error = describe(exc)
        return status, error, int((time.monotonic() - started) * 1000)

    def test(self, policy: WebhookPolicy, actor: str) -> Delivery:
        """A test delivery (a push event of `<project>/webhook-test:test`), logged as event `test`."""
        payload = {
            "id": f"test-{time.time_ns()}",
            "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
            "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "0" * 64,
                "size": 0,
                "repository": f"{policy.project}/webhook-test",
                "url": f"{self.source}/v2/{policy.project}/webhook-test/manifests/sha256:{'0' * 64}",
                "tag": "test",
            },
            "actor": {"name": actor},
        }
        status, error, elapsed = self.send(policy, payload, "push", self._public(policy.project))
        self.observe("delivered" if error is None else "failed")
        delivery_id = self._log(policy, 0, "test", 1, status, error, elapsed)
        return Delivery(delivery_id, policy.cursor, utcnow(), 1, 0, 0, status, error, elapsed, "test", 1)

    def _log(
        self,
        policy: WebhookPolicy,
        event_id: int,
        event: str,
        attempt: int,
        status: int | None,
        error: str | None,
        elapsed: int,
    ) -> int:
        with self.db.write() as connection:
            delivery_id = connection.execute(
                insert(_DELIVERIES)
                .values(
                    endpoint=policy.cursor,
                    attempted_at=utcnow(),
                    events=1,
                    first_event_id=event_id,
                    last_event_id=event_id,
                    status_code=status,
                    error=None if error is None else error[:ERROR_LENGTH],
                    duration_ms=elapsed,
                    event=event,
                    attempt=attempt,
                )
                .returning(_DELIVERIES.c.id)
            ).scalar_one()
            trim_log(connection, policy.cursor, self.settings.delivery_log)
        return int(delivery_id)

    def _move(self, name: str, **values: Any) -> None:
        with self.db.write() as connection:
            connection.execute(update(_CURSORS).where(_CURSORS.c.endpoint == name).values(**values))

    def _public(self, project: str) -> bool:
        with self.db.read() as connection:
            return bool(
                connection.execute(select(ProjectRow.public).where(ProjectRow.name == project)).scalar()
            )

    def _forget_gone(self, enabled: set[int]) -> None:
        """Cursors and logs of policies deleted with their project (disabled ones keep theirs)."""
        with self.db.write() as connection:
            names = connection.execute(
                select(_CURSORS.c.endpoint).where(_CURSORS.c.endpoint.like("policy:%"))
            ).scalars()
            ids = {int(name.split(":", 1)[1]) for name in names if name.split(":", 1)[1].isdigit()}
            if not ids - enabled:
                return
            from dockyard.webhooks.models import WebhookPolicyRow

            existing = set(
                connection.execute(select(WebhookPolicyRow.id).where(WebhookPolicyRow.id.in_(ids))).scalars()
            )
            for gone in ids - existing:
                forget_policy(connection, gone)


def _cursor(connection: Connection, name: str) -> Any:
    row = connection.execute(select(_CURSORS).where(_CURSORS.c.endpoint == name)).first()
    if row is None:  # a policy from before its cursor existed: start at the newest event
        newest = connection.execute(select(func.max(_EVENTS.c.id))).scalar() or 0
        connection.execute(insert(_CURSORS).values(endpoint=name, last_event_id=newest, failures=0))
        row = connection.execute(select(_CURSORS).where(_CURSORS.c.endpoint == name)).one()
    return row


def describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within webhooks.timeout"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def policy_deliveries(db: Database, policy_id: int, limit: int) -> list[Delivery]:
    """A policy's delivery log, newest first."""
    with db.read() as connection:
        rows = connection.execute(
            select(_DELIVERIES)
            .where(_DELIVERIES.c.endpoint == policy_cursor(policy_id))
            .order_by(_DELIVERIES.c.id.desc())
            .limit(limit)
        )
        return [Delivery(**{key: getattr(row, key) for key in Delivery.__dataclass_fields__}) for row in rows]
