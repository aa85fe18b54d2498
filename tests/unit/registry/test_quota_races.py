"""A push that links content its project counts already, racing a delete that may stop counting it: on
PostgreSQL they run at once, and whichever order their locks fall in, the project must count exactly
what some repository of it still links (registry.usage, projects.quotas). SQLite runs one writer at a
time, so there these interleavings cannot happen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, delete, select

from dockyard.db.session import Database
from dockyard.projects.models import ProjectRow
from dockyard.projects.quotas import Quotas
from dockyard.registry.models import Repository, RepositoryBlob
from dockyard.registry.repository_writes import ensure_repository, link_blob
from dockyard.registry.usage import release
from tests.support.databases import lock_waits
from tests.unit.gc.fixtures import Env

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases

WAIT = 10.0
BLOB = b"a layer both repositories hold" * 100


@pytest.fixture
def env(database: Database, tmp_path: Path) -> Env:
    if database.dialect != "postgresql":
        pytest.skip("SQLite serialises write transactions: no interleaving to test")
    return Env.on(database, tmp_path / "storage")


class Paused(threading.Thread):
    """Runs `work` in a write transaction and holds it open, uncommitted, until `go` is set."""

    def __init__(self, database: Database, work: Callable[[Connection], None]) -> None:
        super().__init__(daemon=True)
        self.database, self.work = database, work
        self.inside, self.go = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.database.write() as connection:
                self.work(connection)
                self.inside.set()
                assert self.go.wait(WAIT)
        except BaseException as exc:  # reported by finish()
            self.error = exc
            self.inside.set()

    def finish(self) -> None:
        self.go.set()
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error


def _usage(database: Database) -> int:
    with database.read() as connection:
        used = connection.scalar(select(ProjectRow.quota_used_bytes).where(ProjectRow.name == "team"))
    return int(used or 0)


def _until_waiting(database: Database, done: Callable[[], bool]) -> None:
    """Until the other side waits for a lock of the paused one's transaction, or got past without."""
    deadline = time.monotonic() + WAIT
    while not done() and not lock_waits(database):
        assert time.monotonic() < deadline, "neither waiting for the other transaction nor done"
        time.sleep(0.01)


def _unlink_from_a(connection: Connection, digest: str) -> None:
    """What a blob DELETE in team/a does (Registry.delete_blob), in the caller's transaction."""
    repository_id, project_id = connection.execute(
        select(Repository.id, Repository.project_id).where(Repository.name == "team/a")
    ).one()
    link = (RepositoryBlob.repository_id == repository_id) & (RepositoryBlob.digest == digest)
    connection.execute(delete(RepositoryBlob).where(link))
    release(connection, project_id, [digest])


def test_a_link_charged_first_is_seen_by_the_release_that_follows(env: Env, database: Database) -> None:
    digest = env.push_blob("team/a", BLOB)["digest"]
    assert _usage(database) == len(BLOB)

    def link_into_b(connection: Connection) -> None:
        link_blob(connection, Quotas(database), ensure_repository(connection, "team/b"), digest, len(BLOB))

    mount = Paused(database, link_into_b)
    mount.start()
    assert mount.inside.wait(WAIT)
    unlink = Paused(database, lambda connection: _unlink_from_a(connection, digest))
    unlink.start()
    # It must wait for the mount to commit: it decides on what is linked.
    _until_waiting(database, unlink.inside.is_set)
    mount.finish()
    unlink.finish()
    assert _usage(database) == len(BLOB)  # team/b links it
    assert env.registry.blob_size("team/b", digest) == len(BLOB)


def test_a_release_first_is_waited_for_and_the_link_counts_afresh(env: Env, database: Database) -> None:
    digest = env.push_blob("team/a", BLOB)["digest"]
    unlink = Paused(database, lambda connection: _unlink_from_a(connection, digest))
    unlink.start()
    assert unlink.inside.wait(WAIT)  # uncommitted: the project still counts the blob, as far as others see
    mounted: list[int | None] = []
    mount = threading.Thread(target=lambda: mounted.append(env.registry.mount_blob("team/b", digest, None)))
    mount.start()
    _until_waiting(database, lambda: not mount.is_alive())  # waiting for the release
    unlink.finish()
    mount.join(WAIT)
    assert mounted == [len(BLOB)]
    assert _usage(database) == len(BLOB)  # counted again by the mount, after the release dropped it
