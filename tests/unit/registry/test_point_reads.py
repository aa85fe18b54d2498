"""The hot paths' cache misses (manifest by tag or digest, blob size in a repository) read through
db.lookups on raw driver connections, on SQLite and PostgreSQL: they answer what was committed last,
refuse what a repository may not read, and on SQLite never make the event loop wait."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import BlobUnknown, ManifestUnknown
from dockyard.storage.models import Blob
from tests.support.registry import registry_parts
from tests.unit.gc.fixtures import Env

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases


@pytest.fixture
def env(database: Database, tmp_path: Path) -> Env:
    return Env.on(database, tmp_path / "storage")


def fresh_reader(env: Env, database: Database) -> Env:
    """Another process's registry on the same database: its caches are empty, so every read misses."""
    return Env(database, env.driver, env.feed, registry_parts(database, env.driver, env.feed))


def test_misses_answer_the_latest_commit_by_tag_digest_and_blob(env: Env, database: Database) -> None:
    first = env.push_image("team/app", "v1", [b"layer one"])
    reader = fresh_reader(env, database)
    assert reader.registry.get_manifest("team/app", "v1").digest == first
    assert reader.registry.get_manifest("team/app", first).digest == first
    layer_size = reader.registry.blob_size("team/app", env.push_blob("team/app", b"abc")["digest"])
    assert layer_size == 3
    # The tag moves: a reader on the same thread (the same lookup connection) sees the move at once.
    for round_number in range(3):
        moved = env.push_image("team/app", "v1", [f"layer {round_number}".encode()], seed=str(round_number))
        assert fresh_reader(env, database).registry.get_manifest("team/app", "v1").digest == moved


def test_misses_refuse_what_the_repository_cannot_read(env: Env, database: Database) -> None:
    digest = env.push_image("team/app", "v1", [b"layer"])
    layer = env.push_blob("team/app", b"only in app")["digest"]
    env.push_image("team/other", "v1", [b"other layer"])
    reader = fresh_reader(env, database).registry
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/other", digest)  # pushed to app only
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/app", "v2")
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/nothing", "v1")
    with pytest.raises(BlobUnknown):
        reader.blob_size("team/other", layer)  # not linked there
    with database.write() as connection:  # garbage collection tombstones it
        connection.execute(update(Blob).where(Blob.digest == layer).values(deleting_since=utcnow()))
    with pytest.raises(BlobUnknown):
        reader.blob_size("team/app", layer)


def test_the_loop_reads_sqlite_at_once_and_never_postgresql(env: Env, database: Database) -> None:
    digest = env.push_image("team/app", "v1", [b"layer"])
    layer = env.push_blob("team/app", b"abc")["digest"]
    reader = fresh_reader(env, database).registry
    record, size = reader.manifest_now("team/app", "v1"), reader.blob_size_now("team/app", layer)
    if database.dialect == "sqlite":
        assert record is not None and record.digest == digest and size == 3
        with pytest.raises(ManifestUnknown):
            reader.manifest_now("team/app", "nothing")
    else:  # a network round trip: the caller takes a worker thread
        assert record is None and size is None


def test_on_postgresql_the_loop_reads_in_its_batches_and_sqlite_leaves_it_to_now(
    env: Env, database: Database
) -> None:
    """`manifest_on_loop` / `blob_size_on_loop`: on PostgreSQL the misses of many requests at once are
    answered on the loop (db.lookups' pipelined batches), each with its own repository's row and the
    latest commit; on SQLite they are left to `manifest_now` (None: nothing to do on the loop)."""
    first = env.push_image("team/app", "v1", [b"layer"])
    other = env.push_image("team/other", "v1", [b"other layer"])
    layer = env.push_blob("team/app", b"abc")["digest"]
    reader = fresh_reader(env, database).registry

    async def many() -> list[object]:
        calls = [
            reader.manifest_on_loop("team/app", "v1"),
            reader.manifest_on_loop("team/other", "v1"),
            reader.manifest_on_loop("team/app", first),
            reader.manifest_on_loop("team/other", first),  # pushed to app only
            reader.manifest_on_loop("team/app", "v2"),
            reader.blob_size_on_loop("team/app", layer),
            reader.blob_size_on_loop("team/other", layer),  # not linked there
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(many())
    if database.dialect == "sqlite":
        assert answers == [None] * 7
        return
    digests = [answer.digest if hasattr(answer, "digest") else answer for answer in answers[:3]]
    assert digests == [first, other, first]
    assert isinstance(answers[3], ManifestUnknown) and isinstance(answers[4], ManifestUnknown)
    assert answers[5] == 3 and isinstance(answers[6], BlobUnknown)
    moved = env.push_image("team/app", "v1", [b"moved"], seed="moved")
    answer = asyncio.run(fresh_reader(env, database).registry.manifest_on_loop("team/app", "v1"))
    assert answer is not None and answer.digest == moved
    assert reader.cached_manifest("team/other", "v1") is not None  # what the loop read is cached


def test_on_sqlite_a_read_that_would_wait_is_left_to_a_thread(env: Env, database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("SQLite only: PostgreSQL lookups never run on the loop (test above)")
    digest = env.push_image("team/app", "v1", [b"layer"])
    reader = fresh_reader(env, database).registry
    # Another process takes the database for itself (what WAL recovery or an exclusive writer does):
    # a reader must wait. On the loop it may not: it hands over, and the thread's read waits instead.
    database.dispose()  # this process's connections let go of the file first, so the other can take it
    holder = sqlite3.connect(database.engine.url.database, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        assert reader.manifest_now("team/app", "v1") is None
        assert time.monotonic() - started < 1.0
        answers: list[str] = []
        thread = threading.Thread(target=lambda: answers.append(reader.get_manifest("team/app", "v1").digest))
        thread.start()
        time.sleep(0.3)
        assert not answers  # still waiting for the lock
    finally:
        holder.execute("COMMIT")
        holder.close()
    thread.join(timeout=30)
    assert answers == [digest]
