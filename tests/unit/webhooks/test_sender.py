"""The outbox and the sender on SQLite and PostgreSQL, with a scripted listener: a batch counts as sent
only on a 2xx, threshold and backoff as registry:2 has them, ignores move the cursor without a request,
the delivery log is trimmed, and delivered events are deleted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from dockyard.config.notifications_settings import NotificationsSettings
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.models import JobRow
from dockyard.jobs.queue import JobQueue
from dockyard.webhooks.interfaces import Event, RequestInfo
from dockyard.webhooks.models import NotificationCursorRow, NotificationEventRow
from dockyard.webhooks.services import KIND, DeliveryLog, Outbox, Sender, append

pytestmark = pytest.mark.db_independent
REQUEST = RequestInfo("req-1", "192.0.2.7:4000", "registry.example", "PUT", "skopeo/1.13")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Listener:
    """Answers each POST with the next scripted status (an exception: raised), then 200."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, list[str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, list[str]], timeout: float) -> int:
        import json

        self.bodies.append(json.loads(body))
        self.headers.append(headers)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer

    def event_ids(self, upto: int | None = None) -> list[str]:
        return [e["id"] for body in self.bodies[:upto] for e in body["events"]]


def settings(**endpoint: Any) -> NotificationsSettings:
    return NotificationsSettings.model_validate(
        {"endpoints": [{"name": "hook", "url": "https://hook.example/", **endpoint}], "delivery_log": 3}
    )


def event(action: str = "push", media_type: str | None = MANIFEST, repo: str = "team/app") -> Event:
    target = {"repository": repo, "digest": "sha256:" + "a" * 64}
    if media_type is not None:
        target["mediaType"] = media_type
    return Event(action, target, REQUEST, "alice")


@pytest.fixture
def jobs(database: Database) -> JobQueue:
    return JobQueue(database, known_kinds=[KIND])


def record(database: Database, jobs: JobQueue, *events: Event) -> None:
    Outbox(database, jobs, {"addr": "node-1:5000", "instanceID": "i-1"}).record(list(events))


def queued_notify_jobs(database: Database) -> int:
    with database.read() as connection:
        query = select(func.count()).where(JobRow.kind == KIND, JobRow.status == "queued")
        return int(connection.execute(query).scalar() or 0)


def outbox_size(database: Database) -> int:
    with database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(NotificationEventRow)).scalar() or 0)


def test_recording_queues_one_sender_job_and_the_envelope_is_registry2s(
    database: Database, jobs: JobQueue
) -> None:
    record(database, jobs, event())
    record(database, jobs, event("delete", None))
    assert queued_notify_jobs(database) == 1  # one waiting sender serves both

    listener = Listener()
    Sender(database, jobs, settings(headers={"X-Token": "t"}), listener).run()
    (envelope,) = listener.bodies
    first = envelope["events"][0]
    assert set(first) == {"id", "timestamp", "action", "target", "request", "actor", "source"}
    assert first["request"] == {
        "id": "req-1", "addr": "192.0.2.7:4000", "host": "registry.example", "method": "PUT",
        "useragent": "skopeo/1.13",
    }  # fmt: skip
    assert first["actor"] == {"name": "alice"}
    assert first["source"] == {"addr": "node-1:5000", "instanceID": "i-1"}
    assert [e["action"] for e in envelope["events"]] == ["push", "delete"]
    assert listener.headers == [{"X-Token": ["t"]}]
    assert outbox_size(database) == 1  # delivered everywhere: deleted, but for the newest (ids go on)


def test_a_failed_batch_is_sent_again_and_backoff_follows_the_threshold(
    database: Database, jobs: JobQueue
) -> None:
    record(database, jobs, event(), event())
    listener = Listener(500, ConnectionError("refused"), 503)
    sender = Sender(database, jobs, settings(threshold=2, backoff="1h"), listener)

    sender.run()  # first failure: below the threshold, retried about a second later
    assert len(listener.bodies) == 1
    log = DeliveryLog(database, sender.settings)
    (status,) = log.endpoints()
    assert (status.failures, status.pending) == (1, 2)
    assert status.retry_after is not None

    _due_now(database)
    sender.run()  # second failure: the threshold, so an hour's backoff
    (status,) = log.endpoints()
    assert status.failures == 2
    assert status.retry_after is not None and status.last is not None
    assert status.last.error is not None and "refused" in status.last.error
    sender.run()  # backing off: no request
    assert len(listener.bodies) == 2
    assert queued_notify_jobs(database) == 1  # the sender queued itself for when the backoff ends

    _due_now(database)
    sender.run()  # 503, then (next run) 200
    _due_now(database)
    sender.run()
    assert listener.event_ids(1) == listener.event_ids()[-2:]  # the same two events each time
    (status,) = log.endpoints()
    assert (status.failures, status.pending, status.retry_after) == (0, 0, None)
    codes = [delivery.status_code for delivery in log.deliveries("hook")]
    assert codes == [200, 503, None]  # newest first, trimmed to notifications.delivery_log (3)
    assert outbox_size(database) == 1


def test_events_after_the_outbox_was_emptied_are_sent(database: Database, jobs: JobQueue) -> None:
    """Regression: purging every delivered row let SQLite give the next event id 1 again, below every
    endpoint's cursor, so it was never sent."""
    listener = Listener()
    sender = Sender(database, jobs, settings(), listener)
    for round in range(3):
        record(database, jobs, event(repo=f"team/app{round}"))
        sender.run()
    repos = [e["target"]["repository"] for body in listener.bodies for e in body["events"]]
    assert repos == ["team/app0", "team/app1", "team/app2"]


def test_ignored_events_move_the_cursor_without_a_request(database: Database, jobs: JobQueue) -> None:
    record(database, jobs, event(media_type="application/octet-stream"), event("delete", None))
    listener = Listener()
    ignoring = settings(ignoredmediatypes=["application/octet-stream"], ignore={"actions": ["delete"]})
    Sender(database, jobs, ignoring, listener).run()
    assert listener.bodies == []
    (status,) = DeliveryLog(database, ignoring).endpoints()
    assert status.pending == 0 and status.last is None


def test_a_down_endpoint_holds_back_no_other(database: Database, jobs: JobQueue) -> None:
    two = NotificationsSettings.model_validate(
        {"endpoints": [{"name": "down", "url": "https://a.example/"}, {"name": "up", "url": "https://b/"}]}
    )
    calls: list[str] = []

    def post(url: str, body: bytes, headers: dict[str, list[str]], timeout: float) -> int:
        calls.append(url)
        if "a.example" in url:
            raise TimeoutError("no answer")
        return 204

    record(database, jobs, event())
    Sender(database, jobs, two, post).run()
    statuses = {s.name: s for s in DeliveryLog(database, two).endpoints()}
    assert statuses["up"].pending == 0 and statuses["down"].pending == 1
    assert statuses["down"].last is not None
    assert statuses["down"].last.error == "no answer within the endpoint's timeout"
    assert outbox_size(database) == 1  # kept for the endpoint that has not received it


def _due_now(database: Database) -> None:
    with database.write() as connection:
        connection.execute(update(NotificationCursorRow).values(retry_after=None))


def test_finished_notify_jobs_are_kept_an_hour_other_jobs_longer(database: Database) -> None:
    jobs = JobQueue(database, known_kinds=[KIND, "gc"])
    old = [jobs.enqueue(KIND), jobs.enqueue("gc")]
    recent = jobs.enqueue(KIND)
    with database.write() as connection:
        finished = {"status": "succeeded"}
        connection.execute(
            update(JobRow)
            .where(JobRow.id.in_(old))
            .values(**finished, finished_at=utcnow() - timedelta(hours=2))
        )
        connection.execute(update(JobRow).where(JobRow.id == recent).values(**finished, finished_at=utcnow()))
    Sender(database, jobs, settings(), Listener()).run()
    with database.read() as connection:
        left = {row.id for row in connection.execute(select(JobRow.id))}
    assert old[0] not in left and {old[1], recent} <= left


def test_outbox_writers_take_turns_so_ids_commit_in_order(database: Database, jobs: JobQueue) -> None:
    """Were a later event's id committed while an earlier id is still open, a sender could move an
    endpoint's cursor past the earlier one, which would then never be sent."""
    import threading

    row = {"created_at": utcnow(), "action": "push", "media_type": MANIFEST, "payload": {"id": "first"}}
    second_done = threading.Event()
    with database.write() as connection:
        append(connection, [row])  # the first writer, not committed yet
        second = threading.Thread(target=lambda: (record(database, jobs, event()), second_done.set()))
        second.start()
        assert not second_done.wait(0.5), "a second outbox write committed while the first was open"
    second.join(timeout=10)
    assert second_done.is_set()
    with database.read() as connection:
        ids = connection.execute(select(NotificationEventRow.id, NotificationEventRow.payload)).all()
    ordered = sorted(ids)
    assert ordered[0].payload == {"id": "first"}  # the first writer's id is the smaller
