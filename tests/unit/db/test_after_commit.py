"""`Database.after_commit`: what others may act on only once a write transaction committed (a job queued
in a push's transaction: the runners told of it must find it)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from dockyard.db.session import Database
from dockyard.jobs.models import JobRow
from dockyard.jobs.queue import JobQueue


def _jobs(database: Database) -> int:
    with database.read() as connection:
        return int(connection.scalar(select(func.count()).select_from(JobRow)) or 0)


def test_callbacks_run_once_after_the_commit_and_never_after_a_rollback(database: Database) -> None:
    queue = JobQueue(database)
    seen: list[int] = []
    with database.write() as connection:
        queue.enqueue("echo", connection=connection)
        database.after_commit(connection, lambda: seen.append(_jobs(database)))
        database.after_commit(connection, lambda: seen.append(-1))
        assert seen == []
    assert seen == [1, -1]  # in order; another connection already sees the row

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), database.write() as connection:
        queue.enqueue("echo", connection=connection)
        database.after_commit(connection, lambda: seen.append(2))
        raise Abandoned
    with database.write() as connection:  # its pooled connection again: nothing left over
        pass
    assert seen == [1, -1] and _jobs(database) == 1
