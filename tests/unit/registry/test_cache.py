"""The hot-path caches: a stale answer never outlives the write that made it stale, in any process."""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.registry.cache import (
    ENTRY_OVERHEAD,
    ChangeFeed,
    GenerationCache,
    InProcessChangeFeed,
    LocalChangeFeed,
    Topic,
)


@pytest.fixture(params=["in-process", "local-file"])
def feed(request: pytest.FixtureRequest, tmp_path: Path) -> ChangeFeed:
    if request.param == "in-process":
        return InProcessChangeFeed()
    return LocalChangeFeed(tmp_path / "run" / "changes")


# --- change feeds -----------------------------------------------------------------------------


def test_bump_changes_only_its_topic(feed: ChangeFeed) -> None:
    before = {topic: feed.generation(topic) for topic in Topic}
    feed.bump(Topic.MANIFESTS)
    assert feed.generation(Topic.MANIFESTS) != before[Topic.MANIFESTS]
    assert feed.generation(Topic.BLOB_DELETES) == before[Topic.BLOB_DELETES]
    middle = feed.generation(Topic.MANIFESTS)
    feed.bump(Topic.BLOB_DELETES)
    assert feed.generation(Topic.BLOB_DELETES) != before[Topic.BLOB_DELETES]
    assert feed.generation(Topic.MANIFESTS) == middle


def test_every_bump_gives_a_new_generation(feed: ChangeFeed) -> None:
    seen = {feed.generation(Topic.MANIFESTS)}
    for _ in range(200):
        feed.bump(Topic.MANIFESTS)
        generation = feed.generation(Topic.MANIFESTS)
        assert generation not in seen
        seen.add(generation)


def test_local_feeds_on_one_file_see_each_others_bumps(tmp_path: Path) -> None:
    path = tmp_path / "changes"
    first, second = LocalChangeFeed(path), LocalChangeFeed(path)
    for writer, reader in [(first, second), (second, first)]:
        for topic in Topic:
            before = reader.generation(topic)
            writer.bump(topic)
            assert reader.generation(topic) != before
            assert reader.generation(topic) == writer.generation(topic)


def test_local_feed_keeps_generations_when_reopened(tmp_path: Path) -> None:
    # A restarted worker must not go back to a generation another worker cached under.
    path = tmp_path / "changes"
    LocalChangeFeed(path).bump(Topic.MANIFESTS)
    before = LocalChangeFeed(path).generation(Topic.MANIFESTS)
    assert before != 0
    assert LocalChangeFeed(path).generation(Topic.MANIFESTS) == before


def test_local_feed_file_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "run" / "changes"
    old_umask = os.umask(0)
    try:
        LocalChangeFeed(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size >= 8 * len(Topic)


def test_local_feed_grows_a_short_file(tmp_path: Path) -> None:
    path = tmp_path / "changes"
    path.write_bytes(b"\x01")
    feed = LocalChangeFeed(path)
    feed.bump(Topic.BLOB_DELETES)
    assert path.stat().st_size >= 8 * len(Topic)
    assert LocalChangeFeed(path).generation(Topic.BLOB_DELETES) == feed.generation(Topic.BLOB_DELETES)


def _child_worker(path: str, conn: Connection) -> None:
    """A second process: reports what it sees, bumps when asked."""
    feed = LocalChangeFeed(Path(path))
    cache: GenerationCache[str, str] = GenerationCache(feed, Topic.MANIFESTS)
    cache.put("k", "cached in child", cache.current_generation())
    while True:
        command = conn.recv()
        if command == "stop":
            return
        if command == "bump":
            feed.bump(Topic.MANIFESTS)
            conn.send(feed.generation(Topic.MANIFESTS))
        elif command == "read":
            conn.send((feed.generation(Topic.MANIFESTS), cache.get("k")))


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[Path, Callable[[str], Any]]]:
    path = tmp_path / "changes"
    LocalChangeFeed(path)  # create it first, as the server does before forking workers
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, no shared memory but the file
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_child_worker, args=(str(path), child_end))
    process.start()

    def ask(command: str) -> object:
        parent_end.send(command)
        assert parent_end.poll(30), "the child process did not answer"
        return parent_end.recv()

    try:
        yield path, ask
    finally:
        parent_end.send("stop")
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
    assert process.exitcode == 0


def test_a_bump_in_another_process_is_seen_here(child: tuple[Path, Callable[[str], Any]]) -> None:
    path, ask = child
    feed = LocalChangeFeed(path)
    cache: GenerationCache[str, str] = GenerationCache(feed, Topic.MANIFESTS)
    cache.put("k", "cached in parent", cache.current_generation())
    blob_generation = feed.generation(Topic.BLOB_DELETES)

    child_generation = ask("bump")
    assert feed.generation(Topic.MANIFESTS) == child_generation
    assert cache.get("k") is None  # the other process's write dropped our answer
    assert feed.generation(Topic.BLOB_DELETES) == blob_generation


def test_a_bump_here_is_seen_in_another_process(child: tuple[Path, Callable[[str], Any]]) -> None:
    path, ask = child
    feed = LocalChangeFeed(path)
    generation, cached = ask("read")
    assert generation == feed.generation(Topic.MANIFESTS)
    assert cached == "cached in child"

    feed.bump(Topic.MANIFESTS)
    generation, cached = ask("read")
    assert generation == feed.generation(Topic.MANIFESTS)
    assert cached is None


# --- the generation cache ---------------------------------------------------------------------


def test_put_then_get(feed: ChangeFeed) -> None:
    cache: GenerationCache[str, int] = GenerationCache(feed, Topic.MANIFESTS)
    assert cache.get("a") is None
    cache.put("a", 1, cache.current_generation())
    cache.put("b", 2, cache.current_generation())
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, None)


def test_a_bump_drops_every_answer(feed: ChangeFeed) -> None:
    cache: GenerationCache[str, int] = GenerationCache(feed, Topic.MANIFESTS)
    for key in "abc":
        cache.put(key, 1, cache.current_generation())
    feed.bump(Topic.MANIFESTS)
    assert [cache.get(key) for key in "abc"] == [None, None, None]


def test_a_bump_on_another_topic_keeps_answers(feed: ChangeFeed) -> None:
    cache: GenerationCache[str, int] = GenerationCache(feed, Topic.MANIFESTS)
    cache.put("a", 1, cache.current_generation())
    feed.bump(Topic.BLOB_DELETES)
    assert cache.get("a") == 1


def test_an_answer_read_before_a_write_is_not_served_after_it(feed: ChangeFeed) -> None:
    # The race the protocol exists for: the reader notes the generation, queries, and a write
    # commits and bumps before the reader stores its (now stale) answer.
    cache: GenerationCache[str, str] = GenerationCache(feed, Topic.MANIFESTS)
    generation = cache.current_generation()
    stale = "digest-before-retag"
    feed.bump(Topic.MANIFESTS)
    cache.put("latest", stale, generation)
    assert cache.get("latest") is None


def test_a_late_stale_put_does_not_replace_a_fresh_answer(feed: ChangeFeed) -> None:
    cache: GenerationCache[str, str] = GenerationCache(feed, Topic.MANIFESTS)
    slow_reader_generation = cache.current_generation()
    feed.bump(Topic.MANIFESTS)  # a retag commits
    fast_reader_generation = cache.current_generation()
    cache.put("latest", "new", fast_reader_generation)
    cache.put("latest", "old", slow_reader_generation)  # the slow reader finishes last
    assert cache.get("latest") == "new"


def test_a_put_before_any_get_after_a_bump_is_kept(feed: ChangeFeed) -> None:
    cache: GenerationCache[str, str] = GenerationCache(feed, Topic.MANIFESTS)
    cache.put("a", "old", cache.current_generation())
    feed.bump(Topic.MANIFESTS)
    cache.put("b", "fresh", cache.current_generation())
    assert cache.get("b") == "fresh"
    assert cache.get("a") is None


def test_the_cache_stays_within_its_bound(feed: ChangeFeed) -> None:
    cache: GenerationCache[int, int] = GenerationCache(feed, Topic.MANIFESTS, max_bytes=5 * ENTRY_OVERHEAD)
    for key in range(100):
        cache.put(key, key, cache.current_generation())
        assert cache.get(key) == key  # the newest answer is always kept
        held = [k for k in range(key + 1) if cache.get(k) is not None]
        assert len(held) <= 5
        assert all(cache.get(k) == k for k in held)


# A model of the registry's use: `begin` notes the generation then reads the DB, `finish` stores
# that answer, `write` changes the DB then bumps, `get` must never see anything but the DB's value.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("begin"), st.sampled_from("abc")),
        st.tuples(st.just("finish"), st.integers(0, 5)),
        st.tuples(st.just("write"), st.sampled_from("abc")),
        st.tuples(st.just("get"), st.sampled_from("abc")),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(OPERATIONS, st.integers(1, 4))
def test_no_interleaving_serves_a_stale_answer(operations: list[tuple[str, object]], bound: int) -> None:
    feed = InProcessChangeFeed()
    cache: GenerationCache[str, int] = GenerationCache(
        feed, Topic.MANIFESTS, max_bytes=bound * ENTRY_OVERHEAD
    )
    database: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    in_flight: list[tuple[str, int, int]] = []
    for operation, argument in operations:
        if operation == "begin":
            key = str(argument)
            generation = cache.current_generation()
            in_flight.append((key, generation, database[key]))
        elif operation == "finish" and in_flight:
            key, generation, value = in_flight.pop(int(str(argument)) % len(in_flight))
            cache.put(key, value, generation)
        elif operation == "write":
            database[str(argument)] += 1
            feed.bump(Topic.MANIFESTS)
        elif operation == "get":
            key = str(argument)
            cached = cache.get(key)
            assert cached is None or cached == database[key]


def test_the_same_interleavings_hold_across_two_local_feeds(tmp_path: Path) -> None:
    # Writer and reader in different workers: each has its own LocalChangeFeed on the file.
    path = tmp_path / "changes"
    writer_feed, reader_feed = LocalChangeFeed(path), LocalChangeFeed(path)
    cache: GenerationCache[str, int] = GenerationCache(reader_feed, Topic.MANIFESTS)
    database = {"latest": 0}
    for _ in range(50):
        generation = cache.current_generation()
        answer = database["latest"]
        database["latest"] += 1
        writer_feed.bump(Topic.MANIFESTS)
        cache.put("latest", answer, generation)
        assert cache.get("latest") in (None, database["latest"])
        cache.put("latest", database["latest"], cache.current_generation())
        assert cache.get("latest") == database["latest"]


# --- bounded by memory ------------------------------------------------------------------------


def test_the_cache_keeps_within_its_bytes_dropping_the_oldest_first() -> None:
    feed = InProcessChangeFeed()
    weigh: Callable[[str, str], int] = lambda key, value: len(value)  # noqa: E731
    cache: GenerationCache[str, str] = GenerationCache(feed, Topic.MANIFESTS, max_bytes=10_000, weigh=weigh)
    generation = cache.current_generation()
    for index in range(100):
        cache.put(f"k{index}", "x" * 1000, generation)  # ten fit
        assert cache.weight <= 10_000
    assert cache.get("k99") == "x" * 1000  # the newest stay
    assert cache.get("k0") is None  # the oldest went
    cache.put("huge", "x" * 20_000, generation)  # more than the whole budget: never kept
    assert cache.get("huge") is None and cache.weight <= 10_000
    cache.put("k99", "y", generation)  # replacing an entry frees what the old one weighed
    assert cache.get("k99") == "y" and cache.weight <= 9 * 1000 + 1


def test_a_cache_of_no_bytes_keeps_nothing() -> None:
    feed = InProcessChangeFeed()
    cache: GenerationCache[str, int] = GenerationCache(feed, Topic.MANIFESTS, max_bytes=0)
    cache.put("a", 1, cache.current_generation())
    assert cache.get("a") is None and len(cache) == 0
