"""The hot paths' cache misses (manifest by tag or digest, blob size in a repository) read through
db.lookups on raw driver connections, on SQLite and PostgreSQL: they answer what was committed last,
refuse what a repository may not read, and never make the event loop wait (SQLite: read on the loop
at once, or in a thread when it would wait; PostgreSQL: the loop's pipelined batches)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import BlobUnknown, ManifestUnknown
from dockyard.registry import services
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


async def no_thread(fn: Callable[..., Any], *args: Any) -> Any:
    raise AssertionError(f"a miss was handed to a thread: {fn.__qualname__}")


class Threads:
    """`in_thread` for `*_async`: runs the call in a thread (as the /v2 point-read threads do), and
    notes what it was handed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn.__name__)
        return await asyncio.to_thread(fn, *args)


def at_once(awaitable: Coroutine[Any, Any, Any]) -> Any:
    """The coroutine's answer when it gives it without ever suspending (no hop through the event loop,
    no thread); AssertionError when it suspends."""
    try:
        awaitable.send(None)
    except StopIteration as done:
        return done.value
    awaitable.close()
    raise AssertionError("it suspended: a hop through the event loop")


def test_on_sqlite_a_miss_is_read_on_the_loop_at_once(env: Env, database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("SQLite only: on PostgreSQL a lookup is a round trip (the loop's batches, below)")
    digest = env.push_image("team/app", "v1", [b"layer"])
    layer = env.push_blob("team/app", b"abc")["digest"]
    reader = fresh_reader(env, database).registry
    assert at_once(reader.manifest_async("team/app", "v1", no_thread)).digest == digest
    assert at_once(reader.manifest_async("team/app", digest, no_thread)).digest == digest
    assert at_once(reader.blob_size_async("team/app", layer, no_thread)) == 3
    with pytest.raises(ManifestUnknown):
        at_once(reader.manifest_async("team/app", "nothing", no_thread))
    with pytest.raises(BlobUnknown):
        at_once(reader.blob_size_async("team/other", layer, no_thread))
    assert reader.cached_manifest("team/app", "v1") is not None  # what the loop read is cached


def test_misses_of_many_requests_at_once_are_answered_on_the_loop(env: Env, database: Database) -> None:
    """`manifest_async` / `blob_size_async` on both databases, never a thread: on SQLite each read on
    the loop at once, on PostgreSQL the misses of many requests together (db.lookups' pipelined
    batches), each with its own repository's row and the latest commit."""
    first = env.push_image("team/app", "v1", [b"layer"])
    other = env.push_image("team/other", "v1", [b"other layer"])
    layer = env.push_blob("team/app", b"abc")["digest"]
    reader = fresh_reader(env, database).registry

    async def many() -> list[object]:
        calls = [
            reader.manifest_async("team/app", "v1", no_thread),
            reader.manifest_async("team/other", "v1", no_thread),
            reader.manifest_async("team/app", first, no_thread),
            reader.manifest_async("team/other", first, no_thread),  # pushed to app only
            reader.manifest_async("team/app", "v2", no_thread),
            reader.blob_size_async("team/app", layer, no_thread),
            reader.blob_size_async("team/other", layer, no_thread),  # not linked there
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(many())
    digests = [answer.digest if hasattr(answer, "digest") else answer for answer in answers[:3]]
    assert digests == [first, other, first]
    assert isinstance(answers[3], ManifestUnknown) and isinstance(answers[4], ManifestUnknown)
    assert answers[5] == 3 and isinstance(answers[6], BlobUnknown)
    moved = env.push_image("team/app", "v1", [b"moved"], seed="moved")
    answer = asyncio.run(fresh_reader(env, database).registry.manifest_async("team/app", "v1", no_thread))
    assert answer.digest == moved
    assert reader.cached_manifest("team/other", "v1") is not None  # what the loop read is cached
    assert reader.cached_blob_size("team/app", layer) == 3


def test_on_sqlite_a_read_that_would_wait_is_left_to_a_thread(
    env: Env, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop never waits for SQLite's lock: the lookup goes to a thread, once, and that thread's
    read waits; the name is checked once per read, whichever way it runs."""
    if database.dialect != "sqlite":
        pytest.skip("SQLite only: PostgreSQL lookups never run on the loop's thread (test above)")
    digest = env.push_image("team/app", "v1", [b"layer"])
    layer = env.push_blob("team/app", b"abc")["digest"]
    reader = fresh_reader(env, database).registry
    checked: list[str] = []
    monkeypatch.setattr(services, "validate_name", lambda name: checked.append(name))
    threads = Threads()
    # Another process takes the database for itself (what WAL recovery or an exclusive writer does):
    # a reader must wait. On the loop it may not: it hands over, and the thread's read waits instead.
    database.dispose()  # this process's connections let go of the file first, so the other can take it
    holder = sqlite3.connect(database.engine.url.database, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")

    async def scenario() -> tuple[Any, Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        reads = asyncio.gather(
            reader.manifest_async("team/app", "v1", threads),
            reader.blob_size_async("team/app", layer, threads),
        )
        await asyncio.sleep(0.3)
        assert not reads.done()  # still waiting for the lock, in their threads
        holder.execute("COMMIT")
        holder.close()  # its exclusive locking mode keeps the lock until then
        record, size = await reads
        ticker.cancel()
        return record, size, ticks

    try:
        record, size, ticks = asyncio.run(scenario())
    finally:
        holder.close()
    assert record.digest == digest and size == 3
    assert ticks >= 10  # the loop went on meanwhile
    assert threads.calls == ["_sqlite_one", "_sqlite_one"]  # the lookup alone, once each
    assert checked == ["team/app", "team/app"]
