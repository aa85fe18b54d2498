"""Processes writing to one SQLite file queue on its lock file (db.writer_queue): a write waits for the
one in flight in another process and then commits; a process killed in the middle of a write (its
forked children still running) does not keep the others waiting. SQLite only: on PostgreSQL nothing
queues on a file (its writers are unchanged)."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.db.writer_queue import LOCK_SUFFIX
from dockyard.jobs.models import JobRow
from dockyard.jobs.queue import JobQueue
from tests.support.sqlite_template import copy_migrated_sqlite


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "dockyard.db"
    copy_migrated_sqlite(path)
    database = Database(build_engine(f"sqlite:///{path}"))
    yield database
    database.dispose()


def _forked(database: Database) -> None:
    """In a forked child: no connection of the parent's pool is used here (SQLite's rule)."""
    database.engine.dispose(close=False)


def _jobs(database: Database) -> int:
    with database.read() as connection:
        return int(connection.scalar(select(func.count()).select_from(JobRow)) or 0)


def _lock_file(database: Database) -> Path:
    return Path(f"{database.engine.url.database}{LOCK_SUFFIX}")


def _taken(path: Path) -> bool:
    """Whether some process holds the lock on `path` now (a try from a description of our own)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases it if this took it
    return False


def _wait_for(condition: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def _write_in_thread(database: Database, queue: JobQueue) -> threading.Thread:
    def write() -> None:
        with database.write() as connection:
            queue.enqueue("echo", connection=connection)

    thread = threading.Thread(target=write, daemon=True)  # daemon: a hung write must not hang pytest
    thread.start()
    return thread


def test_a_write_holds_the_lock_file_and_another_process_waits_for_it(
    database: Database, tmp_path: Path
) -> None:
    queue = JobQueue(database)
    holding, release = tmp_path / "holding", tmp_path / "release"
    pid = os.fork()
    if pid == 0:  # the child: hold a write transaction until told to end it
        code = 1
        try:
            _forked(database)
            with database.write() as connection:
                queue.enqueue("echo", connection=connection)
                holding.touch()
                while not release.exists():
                    time.sleep(0.01)
            code = 0
        finally:
            os._exit(code)
    try:
        assert _wait_for(holding.exists)
        assert _taken(_lock_file(database))  # the child's write holds it
        writer = _write_in_thread(database, queue)
        writer.join(0.3)
        assert writer.is_alive()  # queued behind the child's transaction
        release.touch()
        writer.join(20)
        assert not writer.is_alive()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _jobs(database) == 2
    assert not _taken(_lock_file(database))  # nobody holds it between writes


def test_a_process_killed_in_a_write_leaves_the_others_writing(database: Database, tmp_path: Path) -> None:
    """Killed (SIGKILL) inside a write transaction, while a child it forked lives on with the
    descriptors it inherited: the kernel drops the killed process's lock, and its transaction (never
    committed) is gone; the next write goes through."""
    queue = JobQueue(database)
    with database.write() as connection:  # this process's own writer (and lock file) exist before the fork
        queue.enqueue("echo", connection=connection)
    holding, child_pid_file = tmp_path / "holding", tmp_path / "child"
    pid = os.fork()
    if pid == 0:  # the writer to kill
        try:
            _forked(database)
            with database.write() as connection:
                queue.enqueue("echo", connection=connection)
                child = os.fork()
                if child == 0:  # lives on after its parent is killed, with what it inherited open
                    while True:
                        time.sleep(1)
                child_pid_file.write_text(str(child))
                holding.touch()
                while True:
                    time.sleep(1)
        finally:
            os._exit(1)
    child = 0
    try:
        assert _wait_for(holding.exists)
        child = int(child_pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        writer = _write_in_thread(database, queue)
        writer.join(20)
        assert not writer.is_alive()
    finally:
        if child:  # not ours to wait for: its parent was killed, it went to init
            os.kill(child, signal.SIGKILL)
    assert _jobs(database) == 2  # the first write and the last; the killed one's is not there
