"""The change-feed contract (`ChangeFeedConformance`) on each feed: this process's, the node's file,
and Redis (every node)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.coordination.conformance import ChangeFeedConformance, Views
from dockyard.coordination.feeds import InProcessChangeFeed, LocalChangeFeed
from dockyard.coordination.feeds_redis import RedisChangeFeed


class TestInProcessChangeFeed(ChangeFeedConformance):
    @pytest.fixture
    def views(self) -> Views:
        feed = InProcessChangeFeed()  # one process: every view is the same feed
        return lambda: feed


class TestLocalChangeFeed(ChangeFeedConformance):
    @pytest.fixture
    def views(self, tmp_path: Path) -> Views:
        return lambda: LocalChangeFeed(tmp_path / "run" / "changes")  # each: another worker's mapping


class TestRedisChangeFeed(ChangeFeedConformance):
    @pytest.fixture
    def views(self, redis_feeds: Callable[[], RedisChangeFeed]) -> Views:
        return redis_feeds
