"""Project events for webhook policies: a refusal is noted without a query (it may come from the event
loop) and once per minute per repository and tag; a known project that wants nothing records nothing."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.webhooks.interfaces import Event
from dockyard.webhooks.producers import ProjectEventSink

pytestmark = pytest.mark.db_independent


class Policies:
    def __init__(self, known: dict[str, frozenset[str]]) -> None:
        self.known = known

    def cached(self, project: str) -> bool:
        return project in self.known

    def wanted(self, project: str) -> frozenset[str]:
        if project not in self.known:
            raise AssertionError("a query where none may be made")
        return self.known[project]


class Batch:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def note(self, event: Event) -> None:
        self.events.append(event)


def sink(known: dict[str, frozenset[str]]) -> tuple[ProjectEventSink, Batch]:
    batch = Batch()
    events = ProjectEventSink(Policies(known))  # type: ignore[arg-type]
    events.attach(object(), batch)  # type: ignore[arg-type]
    return events, batch


def test_refusals_are_noted_without_a_query_and_not_repeated() -> None:
    events, batch = sink({"quiet": frozenset({"push"}), "loud": frozenset({"immutable"})})
    data: dict[str, Any] = {"repository": "new/app", "tag": "v1", "rule": 1, "operation": "push"}
    events.note("new", "immutable_refusal", data)  # not cached: kept, no query
    events.note("new", "immutable_refusal", data)  # the same refusal again: once a minute
    events.note("quiet", "immutable_refusal", {**data, "repository": "quiet/app"})  # not wanted
    events.note("loud", "immutable_refusal", {**data, "repository": "loud/app"})
    events.note("loud", "immutable_refusal", {**data, "repository": "loud/app", "tag": "v2"})
    assert [(e.project, e.target["tag"]) for e in batch.events] == [
        ("new", "v1"),
        ("loud", "v1"),
        ("loud", "v2"),
    ]
    assert all(e.action == "immutable" for e in batch.events)
