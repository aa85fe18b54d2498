"""Project events for webhook policies from the services that decide them (projects.interfaces.
ProjectEvents): quota warnings (in the pushing transaction), quota and immutability refusals (noted
without I/O: their transaction rolls back; they reach the outbox with the next batch of pulls, within
a second), retention runs (from the job, after the run). Only events some enabled policy of the project
wants are recorded; a refusal repeated by a retrying client is recorded once per REPEAT seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Connection

from dockyard.webhooks.interfaces import EVENT_BY_NAME, Event, RequestInfo
from dockyard.webhooks.policies import WebhookPolicies
from dockyard.webhooks.pulls import PullEvents
from dockyard.webhooks.services import Outbox, append, wake_sender

NO_REQUEST = RequestInfo(id="", addr="", host="", method="", useragent="")
REPEAT = 60.0  # seconds: the same refusal (project, event, repository, tag) is recorded once in this time
_MAX_REMEMBERED = 10_000


class ProjectEventSink:
    """One per process; `attach` hands it the outbox and the batch once the job queue exists."""

    def __init__(self, policies: WebhookPolicies) -> None:
        self.policies = policies
        self.outbox: Outbox | None = None
        self.batch: PullEvents | None = None
        self._recent: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def attach(self, outbox: Outbox, batch: PullEvents | None) -> None:
        self.outbox = outbox
        self.batch = batch

    def _event(self, project: str, event: str, data: dict[str, Any], io: bool = True) -> Event | None:
        """The event, unless no enabled policy of the project wants it. Without `io`, an uncached
        project's event is kept (the outbox purges what no policy wants) rather than read for."""
        action = EVENT_BY_NAME[event].action
        if self.outbox is None:
            return None
        if (io or self.policies.cached(project)) and action not in self.policies.wanted(project):
            return None
        return Event(action, {"project": project, **data}, NO_REQUEST, "", project=project)

    def in_transaction(self, connection: Connection, project: str, event: str, data: dict[str, Any]) -> None:
        built = self._event(project, event, data)
        if built is None or self.outbox is None:
            return
        append(connection, [self.outbox.row(built)])
        wake_sender(self.outbox.jobs, connection)

    def note(self, project: str, event: str, data: dict[str, Any]) -> None:
        key = (project, event, str(data.get("repository", "")), str(data.get("tag", "")))
        now = time.monotonic()
        with self._lock:
            if now - self._recent.get(key, -REPEAT) < REPEAT:
                return
            if len(self._recent) >= _MAX_REMEMBERED:
                self._recent.clear()
            self._recent[key] = now
        built = self._event(project, event, data, io=False)  # maybe on the event loop: no query
        if built is not None and self.batch is not None:
            self.batch.note(built)

    def record(self, project: str, event: str, data: dict[str, Any]) -> None:
        """In a transaction of its own (a job's event: retention runs)."""
        built = self._event(project, event, data)
        if built is not None and self.outbox is not None:
            self.outbox.record([built])
