"""Querying the audit log: filters, ordering, paging, retention, and writes inside a caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from dockyard.audit.interfaces import (
    ActorKind,
    AuditAction,
    AuditEvent,
    AuditFilter,
    AuditQueryInvalid,
    AuditResult,
    ResourceType,
)
from dockyard.audit.models import AuditEventRow
from dockyard.audit.services import AuditLog
from dockyard.db.session import Database
from dockyard.errors import PaginationInvalid

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def audit(database: Database) -> Iterator[AuditLog]:
    log = AuditLog(database, flush_interval=60)  # tests flush explicitly
    yield log
    log.close()


def event(minute: int, **fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "action": AuditAction.PULL,
        "actor": "alice",
        "actor_kind": ActorKind.USER,
        "resource_type": ResourceType.ARTIFACT,
        "resource_name": "team/app:1.0",
        "client_ip": "10.0.0.1",
        "occurred_at": T0 + timedelta(minutes=minute),
    }
    values.update(fields)
    return AuditEvent(**values)  # type: ignore[arg-type]


@pytest.fixture
def history(audit: AuditLog) -> list[AuditEvent]:
    """A small, varied history, recorded out of time order."""
    events = [
        event(3, action=AuditAction.PUSH, resource_name="team/app:2.0"),
        event(1, action=AuditAction.LOGIN, resource_type=None, resource_name=None),
        event(2),
        event(5, actor="bob", client_ip="2001:db8::7", resource_name="other/tool:latest"),
        event(
            4,
            actor="robot$team+ci",
            actor_kind=ActorKind.ROBOT,
            action=AuditAction.PUSH,
            result=AuditResult.DENIED,
            resource_name="team/app:3.0",
        ),
        event(6, actor="", actor_kind=ActorKind.ANONYMOUS, action=AuditAction.ACCESS_DENIED,
              result=AuditResult.DENIED, resource_name="Team/app:1.0", client_ip="192.0.2.9"),
        event(0, actor="admin", action=AuditAction.CREATE, resource_type=ResourceType.PROJECT,
              resource_name="team", detail={"public": False}),
    ]  # fmt: skip
    for item in events:
        audit.record(item)
    audit.flush()
    return events


def minutes(page_items: tuple[AuditEvent, ...]) -> list[int]:
    return [int((item.occurred_at - T0).total_seconds() // 60) for item in page_items]


def test_newest_first_by_default_with_every_field_read_back(
    audit: AuditLog, history: list[AuditEvent]
) -> None:
    page = audit.query()
    assert page.total == len(history)
    assert minutes(page.items) == [6, 5, 4, 3, 2, 1, 0]
    project = page.items[-1]
    assert project.id is not None
    assert (project.actor, project.actor_kind, project.action) == (
        "admin",
        ActorKind.USER,
        AuditAction.CREATE,
    )
    assert (project.resource_type, project.resource_name) == (ResourceType.PROJECT, "team")
    assert project.result is AuditResult.OK
    assert project.detail == {"public": False}
    assert project.occurred_at == T0  # timezone-aware UTC on both databases
    assert page.items[1].client_ip == "2001:db8::7"


def test_sorting_ascending_descending_and_by_other_keys(audit: AuditLog, history: list[AuditEvent]) -> None:
    assert minutes(audit.query(sort="occurred_at").items) == [0, 1, 2, 3, 4, 5, 6]
    by_actor = [item.actor for item in audit.query(sort="actor").items]
    # Byte order on both databases: "" < "admin" < "alice" < "bob" < "robot$..."
    assert by_actor == ["", "admin", "alice", "alice", "alice", "bob", "robot$team+ci"]
    names = [item.resource_name for item in audit.query(sort="-resource_name").items]
    # Upper case sorts before lower case (bytes), and events without a resource come last either way.
    assert names == ["team/app:3.0", "team/app:2.0", "team/app:1.0", "team", "other/tool:latest",
                     "Team/app:1.0", None]  # fmt: skip
    assert audit.query(sort="resource_name").items[-1].resource_name is None


def test_ties_keep_the_order_they_were_recorded_in(audit: AuditLog) -> None:
    for actor in ["first", "second", "third"]:
        audit.record(event(0, actor=actor))
    audit.flush()
    assert [item.actor for item in audit.query(sort="occurred_at").items] == ["first", "second", "third"]
    assert [item.actor for item in audit.query(sort="-occurred_at").items] == ["third", "second", "first"]


def test_pages_cover_everything_once(audit: AuditLog, history: list[AuditEvent]) -> None:
    seen: list[int] = []
    for number in (1, 2, 3):
        page = audit.query(page=number, page_size=3, sort="occurred_at")
        assert (page.total, page.page, page.page_size) == (7, number, 3)
        seen += minutes(page.items)
    assert seen == [0, 1, 2, 3, 4, 5, 6]
    assert audit.query(page=4, page_size=3).items == ()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (AuditFilter(actor="alice"), [3, 2, 1]),
        (AuditFilter(actor="ali"), []),  # actor is an exact match
        (AuditFilter(actor_kind=ActorKind.ROBOT), [4]),
        (AuditFilter(action=AuditAction.PUSH), [4, 3]),
        (AuditFilter(result=AuditResult.DENIED), [6, 4]),
        (AuditFilter(resource_type=ResourceType.PROJECT), [0]),
        (AuditFilter(resource_name="team/"), [4, 3, 2]),  # a prefix, and case-sensitive on both DBs
        (AuditFilter(resource_name="team"), [4, 3, 2, 0]),
        (AuditFilter(resource_name="team/app:2.0"), [3]),
        (AuditFilter(resource_name="%"), []),  # LIKE wildcards are plain characters
        (AuditFilter(client_ip="2001:db8::7"), [5]),
        (AuditFilter(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)), [3, 2]),
        (AuditFilter(action=AuditAction.PUSH, result=AuditResult.OK, resource_name="team/"), [3]),
    ],
)
def test_filters(
    audit: AuditLog, history: list[AuditEvent], filters: AuditFilter, expected: list[int]
) -> None:
    page = audit.query(filters)
    assert minutes(page.items) == expected
    assert page.total == len(expected)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"page": 0}, PaginationInvalid),
        ({"page_size": 0}, PaginationInvalid),
        ({"page_size": 1001}, PaginationInvalid),
        ({"sort": "detail"}, AuditQueryInvalid),
        ({"sort": "-password"}, AuditQueryInvalid),
    ],
)
def test_bad_queries_are_refused(audit: AuditLog, kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        audit.query(**kwargs)  # type: ignore[arg-type]


def test_purge_removes_only_events_older_than_the_age(audit: AuditLog, history: list[AuditEvent]) -> None:
    now = T0 + timedelta(hours=2, minutes=3)
    assert audit.purge_older_than("2h", now=now) == 3  # minutes 0, 1 and 2
    assert minutes(audit.query(sort="occurred_at").items) == [3, 4, 5, 6]
    assert audit.purge_older_than(timedelta(hours=2), now=now) == 0


def test_purge_takes_the_retention_setting_and_works_in_chunks(audit: AuditLog, database: Database) -> None:
    now = datetime.now(UTC)
    old = [
        {"occurred_at": now - timedelta(days=91, seconds=i), "actor": "a", "actor_kind": "user",
         "action": "pull", "result": "ok"}
        for i in range(12_001)
    ]  # fmt: skip
    with database.write() as connection:
        connection.execute(insert(AuditEventRow), old)
    audit.record(event(0, occurred_at=now - timedelta(days=89)))
    audit.flush()
    assert audit.purge_older_than("2160h") == 12_001  # the default retention, 90 days; chunks of 5000
    assert audit.query().total == 1


def test_purge_refuses_a_non_positive_age(audit: AuditLog) -> None:
    with pytest.raises(ValueError):
        audit.purge_older_than("0s")
    with pytest.raises(ValueError):
        audit.purge_older_than("ninety days")


def test_record_now_commits_and_rolls_back_with_the_callers_transaction(
    audit: AuditLog, database: Database
) -> None:
    with database.write() as connection:
        audit.record_now(connection, event(0, action=AuditAction.CREATE, resource_type=ResourceType.USER))
    with pytest.raises(RuntimeError), database.write() as connection:
        audit.record_now(connection, event(1, action=AuditAction.DELETE, resource_type=ResourceType.USER))
        raise RuntimeError("the change failed")
    assert [item.action for item in audit.query().items] == [AuditAction.CREATE]


def test_values_the_columns_cannot_hold_are_made_to_fit(audit: AuditLog) -> None:
    audit.record(
        event(
            0,
            actor="x" * 1000,
            resource_name="team/app\x00:tag",
            detail={"when": T0, "tags": {"a"}, "blob": "y" * 20_000},
        )
    )
    audit.record(event(1, detail={(1, 2): "tuple key"}))
    audit.flush()
    newer, older = audit.query().items
    assert older.actor == "x" * 255
    assert older.resource_name == "team/app:tag"
    assert older.detail is not None and older.detail["truncated"] is True
    assert older.detail["text"].startswith('{"when": "2026-03-01 12:00:00+00:00"')
    assert newer.detail is not None and newer.detail["unserialisable"] is True


def test_event_values_are_checked_where_they_are_made() -> None:
    with pytest.raises(ValueError):
        AuditEvent(action="pul", actor="a", actor_kind=ActorKind.USER)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AuditEvent(action=AuditAction.PULL, actor="a", actor_kind="person")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AuditEvent(AuditAction.PULL, "a", ActorKind.USER, occurred_at=datetime(2026, 1, 1))
    plain = AuditEvent(action="push", actor="a", actor_kind="robot", result="failed")  # type: ignore[arg-type]
    assert (plain.action, plain.actor_kind, plain.result) == (
        AuditAction.PUSH,
        ActorKind.ROBOT,
        AuditResult.FAILED,
    )
