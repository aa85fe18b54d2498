"""Write transactions on a SQLite file share one kept Connection (db.session): each still commits or
rolls back on its own, a failed one leaves nothing behind for the next, and a forked child writes on a
connection of its own."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, insert, select

from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.jobs.models import JobRow
from dockyard.jobs.queue import JobQueue


def _jobs(database: Database) -> int:
    with database.read() as connection:
        return int(connection.scalar(select(func.count()).select_from(JobRow)) or 0)


def test_each_write_commits_or_rolls_back_on_its_own(database: Database) -> None:
    queue = JobQueue(database)

    class Abandoned(Exception):
        pass

    with database.write() as connection:
        queue.enqueue("echo", connection=connection)
    with pytest.raises(Abandoned), database.write() as connection:
        queue.enqueue("echo", connection=connection)
        raise Abandoned
    with pytest.raises(sa_exc.IntegrityError), database.write() as connection:
        queue.enqueue("echo", connection=connection)
        connection.execute(insert(JobRow).values(id=None))  # NOT NULL columns missing: refused
    with database.write() as connection:
        queue.enqueue("echo", connection=connection)
    assert _jobs(database) == 2


def test_writes_from_many_threads_all_commit(database: Database) -> None:
    queue = JobQueue(database)

    def push() -> None:
        for _ in range(20):
            with database.write() as connection:
                queue.enqueue("echo", connection=connection)

    threads = [threading.Thread(target=push) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _jobs(database) == 80


def test_a_forked_child_writes_on_a_connection_of_its_own(database: Database) -> None:
    queue = JobQueue(database)
    with database.write() as connection:  # the parent's kept connection exists now
        queue.enqueue("echo", connection=connection)
    pid = os.fork()
    if pid == 0:  # the child: a write must commit, and leave the parent's connection alone
        code = 1
        try:
            with database.write() as connection:
                queue.enqueue("echo", connection=connection)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with database.write() as connection:  # the parent's own connection still works
        queue.enqueue("echo", connection=connection)
    assert _jobs(database) == 3


@pytest.mark.db_independent  # reason: SQLite's own write lock, on a file of its own
def test_each_kept_write_takes_sqlites_write_lock_as_it_begins(tmp_path: Path) -> None:
    """The kept Connection's transactions begin IMMEDIATE, the first and every later one: a writer
    outside sees the lock taken before the block wrote anything."""
    database = Database(build_engine(f"sqlite:///{tmp_path / 'kept.db'}"))
    other = sqlite3.connect(tmp_path / "kept.db", timeout=0, isolation_level=None)
    try:
        for _ in range(3):
            with database.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.execute("BEGIN IMMEDIATE")  # free again once the write ended
            other.execute("ROLLBACK")
    finally:
        other.close()
        database.dispose()
