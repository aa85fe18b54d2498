"""The per-process cache's contract (`InvalidatedCacheConformance`) on each change feed, then what
the cache does whatever its feed: interleavings of readers and writers, bounds by bytes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.coordination.caches import ENTRY_OVERHEAD, GenerationCache, KeyedGenerationCache
from dockyard.coordination.conformance import InvalidatedCacheConformance, Views
from dockyard.coordination.feeds import InProcessChangeFeed, LocalChangeFeed
from dockyard.coordination.feeds_redis import RedisChangeFeed
from dockyard.coordination.interfaces import Topic, generation_of


class TestCacheOnInProcessFeed(InvalidatedCacheConformance):
    @pytest.fixture
    def views(self) -> Views:
        feed = InProcessChangeFeed()
        return lambda: feed


class TestCacheOnLocalFeed(InvalidatedCacheConformance):
    @pytest.fixture
    def views(self, tmp_path: Path) -> Views:
        return lambda: LocalChangeFeed(tmp_path / "run" / "changes")


class TestCacheOnRedisFeed(InvalidatedCacheConformance):
    @pytest.fixture
    def views(self, redis_feeds: Callable[[], RedisChangeFeed]) -> Views:
        return redis_feeds


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
        generation_of(feed, Topic.MANIFESTS), max_bytes=bound * ENTRY_OVERHEAD
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
    cache: GenerationCache[str, int] = GenerationCache(generation_of(reader_feed, Topic.MANIFESTS))
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


def test_a_put_before_any_get_after_a_bump_is_kept() -> None:
    feed = InProcessChangeFeed()
    cache: GenerationCache[str, str] = GenerationCache(generation_of(feed, Topic.MANIFESTS))
    cache.put("a", "old", cache.current_generation())
    feed.bump(Topic.MANIFESTS)
    cache.put("b", "fresh", cache.current_generation())
    assert cache.get("b") == "fresh"
    assert cache.get("a") is None


def test_the_cache_keeps_within_its_bytes_dropping_the_oldest_first() -> None:
    feed = InProcessChangeFeed()
    weigh: Callable[[str, str], int] = lambda key, value: len(value)  # noqa: E731
    cache: GenerationCache[str, str] = GenerationCache(
        generation_of(feed, Topic.MANIFESTS), max_bytes=10_000, weigh=weigh
    )
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
    cache: GenerationCache[str, int] = GenerationCache(generation_of(feed, Topic.MANIFESTS), max_bytes=0)
    cache.put("a", 1, cache.current_generation())
    assert cache.get("a") is None and len(cache) == 0


def test_without_a_generation_source_only_expiries_count() -> None:
    now = [1000.0]
    cache: GenerationCache[str, str] = GenerationCache(None, clock=lambda: now[0])
    cache.put("k", "v", 12345, expires_at=now[0] + 30)  # nothing to check the generation against
    assert cache.get("k") == "v"
    now[0] += 31
    assert cache.get("k") is None


def test_an_expiry_needs_a_clock() -> None:
    cache: GenerationCache[str, str] = GenerationCache(None)
    with pytest.raises(ValueError, match="clock"):
        cache.put("k", "v", None, expires_at=1.0)


def test_clear_forgets_everything_now() -> None:
    feed = InProcessChangeFeed()
    cache: GenerationCache[str, str] = GenerationCache(generation_of(feed, Topic.AUTH))
    cache.put("token", "verified", cache.current_generation())
    cache.clear()
    assert cache.get("token") is None
    cache.put("token", "verified again", cache.current_generation())
    assert cache.get("token") == "verified again"


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_generation_of_topics_moves_with_each_of_them_and_no_other(count: int) -> None:
    feed = InProcessChangeFeed()
    followed = list(Topic)[:count]
    generation = generation_of(feed, *followed)
    for topic in Topic:
        before = generation()
        feed.bump(topic)
        assert (generation() != before) == (topic in followed)


def test_gets_and_hits_are_counted_for_the_hit_ratio() -> None:
    cache: GenerationCache[str, int] = GenerationCache(None)
    assert cache.get("a") is None
    cache.put("a", 1, None)
    assert cache.get("a") == 1
    assert cache.get("a") == 1
    assert (cache.lookups, cache.hits) == (3, 2)


@pytest.mark.parametrize("kind", ["generations", "keyed"])
def test_full_caches_take_puts_from_several_threads_at_once(kind: str) -> None:
    """The event loop and the point-read threads (PostgreSQL) put into the same registry caches. Once
    full, a put walks the entries to drop the dead ones: a thread switch in the middle of that walk and
    another thread's put failed the walking request with "dictionary changed size during iteration"
    (a 500 now and then at 50,000 repositories read at random)."""
    cache: GenerationCache[tuple[str, int], int] | KeyedGenerationCache[tuple[str, int], int]
    if kind == "generations":
        cache = GenerationCache(lambda: 1, 500 * ENTRY_OVERHEAD, clock=lambda: 0.0)
    else:
        cache = KeyedGenerationCache(lambda key: 1, 500 * ENTRY_OVERHEAD)
    failures: list[BaseException] = []
    until = time.monotonic() + 1.0

    def put_many(thread: str) -> None:
        number = 0
        while time.monotonic() < until:
            try:
                cache.put((thread, number), number, 1)
            except BaseException as failure:
                failures.append(failure)
                return
            number += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: the race shows in 1 s
    try:
        threads = [threading.Thread(target=put_many, args=(f"t{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert 0 < len(cache) <= 500 and cache.weight <= 500 * ENTRY_OVERHEAD
    assert cache.weight == len(cache) * ENTRY_OVERHEAD  # no put's weight lost to another's eviction


def test_a_put_into_a_full_cache_does_not_walk_every_entry() -> None:
    """A put that must make room drops the oldest entries without asking every entry's generation:
    that walk (a Python call per entry) stalled the event loop for 10-20 ms at 15,000 entries, once
    every few thousand misses (the p99 of manifest GETs at 50,000 repositories)."""
    asked: list[tuple[str, int]] = []

    def generation(key: tuple[str, int]) -> int:
        asked.append(key)
        return 1

    cache: KeyedGenerationCache[tuple[str, int], int] = KeyedGenerationCache(
        generation, 15_000 * ENTRY_OVERHEAD
    )
    for number in range(15_000):
        cache.put(("repository", number), number, 1)
    asked.clear()
    cache.put(("repository", 15_000), 15_000, 1)  # full: this one evicts
    assert len(asked) == 1  # only the put's own check of its answer
    assert len(cache) < 15_000 and cache.get(("repository", 15_000)) == 15_000
    assert cache.get(("repository", 0)) is None  # the oldest went first
    assert cache.get(("repository", 14_999)) == 14_999


def test_dead_entries_are_dropped_when_a_lookup_finds_them() -> None:
    generations = {"a": 1, "b": 1}
    cache: KeyedGenerationCache[tuple[str], str] = KeyedGenerationCache(
        lambda key: generations[key[0]], 10 * ENTRY_OVERHEAD
    )
    cache.put(("a",), "old a", 1)
    cache.put(("b",), "b", 1)
    generations["a"] = 2  # a write to "a"
    assert len(cache) == 2 and cache.weight == 2 * ENTRY_OVERHEAD  # nothing walks the cache for it
    assert cache.get(("a",)) is None
    assert len(cache) == 1 and cache.weight == ENTRY_OVERHEAD
    assert cache.get(("b",)) == "b"
    now = [0.0]
    expiring: GenerationCache[str, str] = GenerationCache(None, 10 * ENTRY_OVERHEAD, clock=lambda: now[0])
    expiring.put("k", "v", None, expires_at=5.0)
    now[0] = 6.0
    assert len(expiring) == 1 and expiring.get("k") is None and len(expiring) == 0
