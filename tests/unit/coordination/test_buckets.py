"""The token-bucket contract (`TokenBucketsConformance`) on both implementations: one process's own
buckets, and a real Redis (every worker and node). Two stores of one Redis stand for two nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from dockyard.coordination.buckets import InProcessBuckets
from dockyard.coordination.buckets_redis import RETRY_REDIS_SECONDS, RedisBuckets
from dockyard.coordination.conformance import Stores, TokenBucketsConformance
from dockyard.coordination.interfaces import TokenBuckets
from dockyard.coordination.redis_client import connect
from tests.support.redis import RedisServer


class TestInProcessBuckets(TokenBucketsConformance):
    @pytest.fixture
    def stores(self) -> Stores:
        shared = InProcessBuckets()  # one process: every view is the same object
        return lambda: shared


class TestRedisBuckets(TokenBucketsConformance):
    @pytest.fixture
    def stores(self, redis_server: RedisServer) -> Iterator[Stores]:
        clients: list[redis.Redis] = []

        def make() -> TokenBuckets:
            clients.append(redis.Redis.from_url(redis_server.url))
            return RedisBuckets(clients[-1])

        yield make
        for client in clients:
            client.close()


def test_in_process_buckets_stay_bounded_and_forget_full_ones_first() -> None:
    now = [0.0]
    buckets = InProcessBuckets(clock=lambda: now[0], max_buckets=10)
    buckets.take("busy", 0.001, 1)  # empty for a long time: worth remembering
    for address in range(100):  # a flood of new addresses, each full again a millisecond later
        now[0] += 0.01
        buckets.take(f"a{address}", 1000, 5)
        assert len(buckets) <= 10
    assert buckets.take("busy", 0.001, 1) > 0  # not forgotten while the flood came


def test_redis_away_falls_back_to_this_process_buckets(caplog: pytest.LogCaptureFixture) -> None:
    # Nobody listens. The registry's own client (redis_client.connect) fails at once; redis-py's
    # defaults would retry with backoff for seconds first.
    client = connect("redis://127.0.0.1:1/0")
    buckets = RedisBuckets(client)
    assert buckets.take("alice", 0.01, 2) == 0.0
    assert buckets.take("alice", 0.01, 2) == 0.0
    assert buckets.take("alice", 0.01, 2) > 0  # still limited, by this process
    assert sum("Redis unavailable" in record.message for record in caplog.records) == 1  # once a minute


def test_redis_is_tried_again_only_every_few_seconds_after_a_failure() -> None:
    calls: list[str] = []

    class Unreachable:
        def register_script(self, script: str) -> object:
            def run(keys: list[str], args: list[object]) -> int:
                calls.append(keys[0])
                raise redis.ConnectionError("timed out")  # a Redis that hangs: each try costs a timeout

            return run

    now = [0.0]
    buckets = RedisBuckets(Unreachable(), clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(50):
        buckets.take("alice", 100, 100)
    assert len(calls) == 1
    now[0] += RETRY_REDIS_SECONDS
    buckets.take("alice", 100, 100)
    assert len(calls) == 2


def test_redis_buckets_expire_once_full_again(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    RedisBuckets(client, prefix="expiry-test:").take("alice", 10, 2)
    ttl = client.pttl("expiry-test:alice")
    assert 0 < ttl <= 1100  # one token to refill at 10/s, plus a second of slack
    client.close()
