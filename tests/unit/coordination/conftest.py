"""The module's redis-server (tests/unit/conftest.py) seen as feeds: each test keeps to its own keys (lock
prefix) or only counts changes it makes itself (feeds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dockyard.coordination.feeds_redis import RedisChangeFeed
from dockyard.coordination.redis_client import connect
from tests.support.redis import RedisServer

# The feed's subscriber polls (and retries) every second by default: each close() waited up to that.
QUICK = 0.05


@pytest.fixture
def redis_feeds(redis_server: RedisServer) -> Iterator[Callable[[], RedisChangeFeed]]:
    """Each call: another process's (or node's) feed on the module's Redis, subscribed."""
    made: list[RedisChangeFeed] = []

    def make() -> RedisChangeFeed:
        feed = RedisChangeFeed(
            connect(redis_server.url), channel=f"test:{id(made)}", poll_seconds=QUICK, retry_seconds=QUICK
        )
        made.append(feed)
        assert feed.wait_connected(5), "the Redis change feed did not subscribe"
        return feed

    yield make
    for feed in made:
        feed.close()
