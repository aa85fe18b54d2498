"""Pull events wait in memory and reach the outbox in batches: written by the thread within its
interval, kept when the write fails, bounded during an outage, and written at close."""

from __future__ import annotations

import time

import pytest

from dockyard.webhooks import pulls
from dockyard.webhooks.interfaces import Event, RequestInfo
from dockyard.webhooks.pulls import PullEvents

REQUEST = RequestInfo("r", "192.0.2.1:1", "h", "GET", "ua")


class Outbox:
    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.failing = False

    def record(self, events: list[Event]) -> None:
        if self.failing:
            raise ConnectionError("database down")
        self.batches.append(list(events))


def pull(n: int) -> Event:
    return Event("pull", {"repository": "team/app", "digest": f"sha256:{n:064x}"}, REQUEST, "")


def test_the_thread_writes_pulls_in_one_batch_within_its_interval() -> None:
    outbox = Outbox()
    events = PullEvents(outbox, interval=0.1)
    for n in range(5):
        events.note(pull(n))
    assert outbox.batches == []  # note does no I/O
    deadline = time.monotonic() + 5
    while not outbox.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [[e.target["digest"] for e in batch] for batch in outbox.batches] == [
        [pull(n).target["digest"] for n in range(5)]
    ]
    events.close()


def test_a_failed_write_keeps_the_events_and_close_writes_them() -> None:
    outbox = Outbox()
    events = PullEvents(outbox, interval=3600)
    events.note(pull(1))
    outbox.failing = True
    assert events.flush() == 0 and events.pending == 1
    events.note(pull(2))
    outbox.failing = False
    events.close()
    assert [e.target["digest"] for e in outbox.batches[0]] == [
        pull(1).target["digest"],
        pull(2).target["digest"],
    ]
    events.note(pull(3))  # after close: written at once
    assert len(outbox.batches) == 2


def test_an_outage_cannot_grow_the_process_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulls, "MAX_PENDING", 3)
    outbox = Outbox()
    outbox.failing = True
    events = PullEvents(outbox, interval=3600)
    for n in range(5):
        events.note(pull(n))
    assert events.pending == 3 and events.dropped == 2
    outbox.failing = False
    events.close()
    assert [e.target["digest"] for e in outbox.batches[0]] == [pull(n).target["digest"] for n in (2, 3, 4)]
