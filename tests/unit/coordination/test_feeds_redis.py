"""What only RedisChangeFeed does besides the feed contract (test_feeds.py, test_caches.py), on a real
redis-server: the local read never talks to Redis, and while Redis is away nothing is cached (so
nothing can be stale); Sentinel URLs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.coordination.caches import GenerationCache
from dockyard.coordination.feeds_redis import CHANNEL, RedisChangeFeed
from dockyard.coordination.interfaces import Topic, generation_of, tag_key
from dockyard.coordination.redis_client import connect
from tests.support.redis import RedisSentinel, RedisServer

QUICK = 0.05  # the subscriber's poll and retry: a second by default, which each close() waited


def quick_feed(url: str) -> RedisChangeFeed:
    return RedisChangeFeed(connect(url), poll_seconds=QUICK, retry_seconds=QUICK)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def feeds(redis_server: RedisServer) -> Iterator[Callable[[], RedisChangeFeed]]:
    made: list[RedisChangeFeed] = []

    def make() -> RedisChangeFeed:
        feed = quick_feed(redis_server.url)
        made.append(feed)
        return feed

    yield make
    for feed in made:
        feed.close()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def cached(feed: RedisChangeFeed) -> GenerationCache[str, str]:
    return GenerationCache[str, str](generation_of(feed, Topic.MANIFESTS))


def remember(cache: GenerationCache[str, str], key: str, value: str) -> None:
    cache.put(key, value, cache.current_generation())


def test_nothing_is_cached_until_subscribed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # not started: nothing listens on its port
    feed = quick_feed(server.url)
    try:
        assert feed.degraded
        cache = cached(feed)
        remember(cache, "k", "v")
        assert cache.get("k") is None
        feed.bump(Topic.MANIFESTS)  # neither raises nor blocks the writer for long
        server.start()
        assert feed.wait_connected(5)
        remember(cache, "k", "v")
        assert cache.get("k") == "v"
    finally:
        feed.close()
        server.kill()


def test_redis_killed_then_restarted(redis_server: RedisServer, feeds: Callable[[], RedisChangeFeed]) -> None:
    writer, reader = feeds(), feeds()
    assert writer.wait_connected(5) and reader.wait_connected(5)
    cache = cached(reader)
    remember(cache, "k", "before")

    redis_server.kill()
    # The reader notices the dropped connection and stops caching: its old answers are gone,
    # and what it is given now is not kept.
    assert eventually(lambda: reader.degraded, timeout=3.0)
    assert cache.get("k") is None
    remember(cache, "k", "during")
    assert cache.get("k") is None
    started = time.monotonic()
    writer.bump(Topic.MANIFESTS)  # cannot publish: bumps locally, remembers to publish later
    assert time.monotonic() - started < 2.5
    assert writer.degraded

    redis_server.start()
    assert writer.wait_connected(5) and reader.wait_connected(5)
    remember(cache, "k", "after")
    assert cache.get("k") == "after"  # caching is back
    writer.bump(Topic.MANIFESTS)
    assert eventually(lambda: cache.get("k") is None, timeout=2.0)


def test_the_generation_read_costs_no_round_trip(feeds: Callable[[], RedisChangeFeed]) -> None:
    feed = feeds()
    assert feed.wait_connected(5)
    calls = 100_000
    started = time.perf_counter()
    for _ in range(calls):
        feed.generation(Topic.MANIFESTS)
    per_call = (time.perf_counter() - started) / calls
    # A loopback Redis round trip is ~50 us; a local read is well under a microsecond. The bound is
    # loose (slow CI) but far below any round trip.
    assert per_call < 10e-6, f"{per_call * 1e9:.0f} ns per generation()"


def test_sentinel_urls_name_the_sentinels_the_service_and_the_database() -> None:
    client = connect("redis+sentinel://:s3cret@127.0.0.1:26379,[::1]:26380/mymaster/2")
    pool = client.connection_pool
    assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "s3cret"
    sentinels = pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
    addresses = [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                 for s in sentinels]  # fmt: skip
    assert addresses == [("127.0.0.1", 26379), ("::1", 26380)]
    with pytest.raises(ValueError, match="SERVICE_NAME"):
        connect("redis+sentinel://127.0.0.1:26379")


def test_a_feed_through_a_real_sentinel(redis_server: RedisServer, tmp_path: Path) -> None:
    sentinel = RedisSentinel(tmp_path / "sentinel", redis_server)
    sentinel.start()
    try:
        writer = quick_feed(sentinel.url)
        reader = quick_feed(redis_server.url)  # the master, named directly
        try:
            assert writer.wait_connected(5) and reader.wait_connected(5)
            cache = cached(reader)
            remember(cache, "k", "v")
            writer.bump(Topic.MANIFESTS)
            assert eventually(lambda: cache.get("k") is None, timeout=2.0)
        finally:
            writer.close()
            reader.close()
    finally:
        sentinel.kill()


def test_a_node_of_an_earlier_version_hears_a_keyed_bump_as_its_whole_topic(
    redis_server: RedisServer, feeds: Callable[[], RedisChangeFeed]
) -> None:
    # A rolling upgrade: nodes of the version before keys read `Topic(int(data))` on CHANNEL only.
    earlier = connect(redis_server.url).pubsub()
    earlier.subscribe(CHANNEL)
    assert earlier.get_message(timeout=5)["type"] == "subscribe"
    feed = feeds()
    assert feed.wait_connected(5)
    for topic in (Topic.MANIFESTS, Topic.BLOB_DELETES, Topic.VERDICTS):
        feed.bump(topic, "team/a")
        message = earlier.get_message(timeout=5)
        assert message is not None and message["type"] == "message"
        assert Topic(int(message["data"])) is topic
    earlier.close()


def test_a_bump_from_a_node_of_an_earlier_version_moves_every_key(
    redis_server: RedisServer, feeds: Callable[[], RedisChangeFeed]
) -> None:
    feed = feeds()
    assert feed.wait_connected(5)
    before = feed.generation(Topic.MANIFESTS, "team/a")
    connect(redis_server.url).publish(CHANNEL, str(int(Topic.MANIFESTS)))  # what it publishes
    assert eventually(lambda: feed.generation(Topic.MANIFESTS, "team/a") != before)


def test_a_node_of_an_earlier_version_hears_a_tag_or_repository_bump_as_manifests(
    redis_server: RedisServer, feeds: Callable[[], RedisChangeFeed]
) -> None:
    # It knows no Topic.TAGS nor Topic.REPOSITORIES: its Topic.MANIFESTS covered tags and the catalog.
    earlier = connect(redis_server.url).pubsub()
    earlier.subscribe(CHANNEL)
    assert earlier.get_message(timeout=5)["type"] == "subscribe"
    feed = feeds()
    assert feed.wait_connected(5)
    feed.bump(Topic.TAGS, tag_key("team/a", "latest"), "team/a")
    feed.bump(Topic.REPOSITORIES)
    for _ in range(2):
        message = earlier.get_message(timeout=5)
        assert message is not None and message["type"] == "message"
        assert Topic(int(message["data"])) is Topic.MANIFESTS
    earlier.close()


def test_a_manifests_bump_from_a_node_of_an_earlier_version_moves_tags_and_repositories(
    redis_server: RedisServer, feeds: Callable[[], RedisChangeFeed]
) -> None:
    feed = feeds()
    assert feed.wait_connected(5)
    before = {topic: feed.generation(topic, "team/a") for topic in (Topic.TAGS, Topic.REPOSITORIES)}
    tag_before = feed.generation(Topic.TAGS, tag_key("team/a", "latest"))
    connect(redis_server.url).publish(CHANNEL, str(int(Topic.MANIFESTS)))  # what it publishes for a push
    assert eventually(lambda: feed.generation(Topic.TAGS, tag_key("team/a", "latest")) != tag_before)
    assert all(feed.generation(topic, "team/a") != value for topic, value in before.items())


def test_a_node_of_an_earlier_version_is_not_told_of_queued_jobs(
    redis_server: RedisServer, feeds: Callable[[], RedisChangeFeed]
) -> None:
    # Topic.JOBS only wakes job runners: that version would log each one as an unknown message.
    earlier = connect(redis_server.url).pubsub()
    earlier.subscribe(CHANNEL)
    assert earlier.get_message(timeout=5)["type"] == "subscribe"
    feed, runner = feeds(), feeds()
    assert feed.wait_connected(5) and runner.wait_connected(5)
    before = runner.generation(Topic.JOBS)
    feed.bump(Topic.JOBS)
    feed.bump(Topic.POLICIES)
    message = earlier.get_message(timeout=5)
    assert message is not None and Topic(int(message["data"])) is Topic.POLICIES
    assert eventually(lambda: runner.generation(Topic.JOBS) != before)  # this version hears it
    earlier.close()
