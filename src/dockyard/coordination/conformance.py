"""The one conformance suite per coordination Protocol, which every implementation passes unchanged.

Use them by subclassing in a test module and overriding one fixture::

    class TestMyFeed(ChangeFeedConformance):
        @pytest.fixture
        def views(self): ...  # each call: another process's (or node's) view of one shared feed

    class TestMyLocks(LockManagerConformance):
        @pytest.fixture
        def managers(self): ...  # each call: another process's (or node's) manager of shared locks

    class TestMyBuckets(TokenBucketsConformance):
        @pytest.fixture
        def stores(self): ...  # each call: another process's (or node's) view of shared buckets

    class TestMySlots(SlotsConformance):
        @pytest.fixture
        def pools(self): ...  # each call: another process's (or node's) view of shared pools

`InvalidatedCacheConformance` runs the per-process cache (`caches.GenerationCache`) on a feed's
views, so it shows the cache's contract holds on that feed, across processes included. A feed that
has one process only (`InProcessChangeFeed`) gives the same object for every view.

A feed may deliver another view's bump later (Redis: pub/sub), never never: cross-view checks wait
up to `DELIVERY_SECONDS`. A view must be ready when handed out (the Redis feed subscribed).

It imports pytest, so it is for tests only: nothing in the running registry imports it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from dockyard.coordination.caches import ENTRY_OVERHEAD, MIB, GenerationCache, KeyedGenerationCache
from dockyard.coordination.interfaces import (
    ChangeFeed,
    LockLost,
    LockManager,
    Slots,
    TokenBuckets,
    Topic,
    generation_of,
    holding,
    key_slot,
    keyed_generation_of,
    tag_generation_of,
    tag_key,
)

Views = Callable[[], ChangeFeed]
Managers = Callable[[], LockManager]
Stores = Callable[[], TokenBuckets]
Pools = Callable[[], Slots]
DELIVERY_SECONDS = 5.0
# Two repositories in different slots of the keyed counters (key_slot): a write to one must not
# move the other's generation.
REPOSITORY_A, REPOSITORY_B = "team/a", "team/b"


def eventually(condition: Callable[[], bool], timeout: float = DELIVERY_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --- ChangeFeed -----------------------------------------------------------------------------------
class ChangeFeedConformance:
    @pytest.fixture
    def views(self) -> Views:
        raise NotImplementedError("override `views`: a factory of views of one shared feed")

    def test_a_bump_moves_its_topic_here_at_once(self, views: Views) -> None:
        feed = views()
        for topic in Topic:
            before = feed.generation(topic)
            feed.bump(topic)
            assert feed.generation(topic) != before  # no waiting for a round trip

    def test_every_bump_gives_a_new_generation(self, views: Views) -> None:
        feed = views()
        seen = {feed.generation(Topic.MANIFESTS)}
        for _ in range(200):
            feed.bump(Topic.MANIFESTS)
            generation = feed.generation(Topic.MANIFESTS)
            assert generation not in seen
            seen.add(generation)

    def test_a_bump_leaves_the_other_topics_alone(self, views: Views) -> None:
        writer, reader = views(), views()
        for bumped in Topic:
            before = {topic: reader.generation(topic) for topic in Topic}
            writer.bump(bumped)
            assert eventually(lambda: reader.generation(bumped) != before[bumped])  # noqa: B023
            after = {topic: reader.generation(topic) for topic in Topic if topic != bumped}
            assert after == {topic: value for topic, value in before.items() if topic != bumped}

    def test_a_bump_reaches_every_view(self, views: Views) -> None:
        writer, readers = views(), [views() for _ in range(3)]
        before = [reader.generation(Topic.POLICIES) for reader in readers]
        writer.bump(Topic.POLICIES)
        for reader, generation in zip(readers, before, strict=True):
            assert eventually(lambda: reader.generation(Topic.POLICIES) != generation)  # noqa: B023

    def test_each_view_bumps_and_every_other_sees_it(self, views: Views) -> None:
        first, second = views(), views()
        for writer, reader in [(first, second), (second, first)]:
            before = reader.generation(Topic.AUTH)
            writer.bump(Topic.AUTH)
            assert eventually(lambda: reader.generation(Topic.AUTH) != before)  # noqa: B023

    def test_a_keyed_bump_moves_its_key_and_its_topic_here_at_once(self, views: Views) -> None:
        feed = views()
        for topic in Topic:
            before = (feed.generation(topic), feed.generation(topic, REPOSITORY_A))
            feed.bump(topic, REPOSITORY_A)
            assert feed.generation(topic) != before[0]
            assert feed.generation(topic, REPOSITORY_A) != before[1]

    def test_a_keyed_bump_leaves_the_other_keys_alone(self, views: Views) -> None:
        assert key_slot(REPOSITORY_A) != key_slot(REPOSITORY_B)
        writer, reader = views(), views()
        # A repository's manifests, and the pull decisions a verdict stored in it drops.
        for topic in (Topic.MANIFESTS, Topic.MANIFESTS, Topic.VERDICTS, Topic.VERDICTS):
            other = reader.generation(topic, REPOSITORY_B)
            bumped = reader.generation(topic, REPOSITORY_A)
            writer.bump(topic, REPOSITORY_A)
            assert eventually(lambda: reader.generation(topic, REPOSITORY_A) != bumped)  # noqa: B023
            assert reader.generation(topic, REPOSITORY_B) == other

    def test_a_keyed_bump_reaches_every_view(self, views: Views) -> None:
        writer, readers = views(), [views() for _ in range(3)]
        before = [
            (reader.generation(Topic.MANIFESTS), reader.generation(Topic.MANIFESTS, REPOSITORY_A))
            for reader in readers
        ]
        writer.bump(Topic.MANIFESTS, REPOSITORY_A)
        for reader, (topic, key) in zip(readers, before, strict=True):
            assert eventually(lambda: reader.generation(Topic.MANIFESTS, REPOSITORY_A) != key)  # noqa: B023
            assert eventually(lambda: reader.generation(Topic.MANIFESTS) != topic)  # noqa: B023

    def test_a_bump_of_the_whole_topic_moves_every_key(self, views: Views) -> None:
        writer, reader = views(), views()
        keys = [REPOSITORY_A, REPOSITORY_B, "library/alpine", ""]
        before = {key: reader.generation(Topic.MANIFESTS, key) for key in keys}
        writer.bump(Topic.MANIFESTS)
        for key in keys:
            assert eventually(lambda: reader.generation(Topic.MANIFESTS, key) != before[key])  # noqa: B023

    def test_a_bump_of_several_keys_moves_each_of_them_only(self, views: Views) -> None:
        # A tag write: the tag's key and its repository's (the tag lists), never the other tags.
        latest, v1 = tag_key(REPOSITORY_A, "latest"), tag_key(REPOSITORY_A, "v1")
        assert len({key_slot(key) for key in (latest, v1, REPOSITORY_A, REPOSITORY_B)}) == 4
        writer, reader = views(), views()
        before = {key: reader.generation(Topic.TAGS, key) for key in (latest, v1, REPOSITORY_A, REPOSITORY_B)}
        writer.bump(Topic.TAGS, latest, REPOSITORY_A)
        assert eventually(lambda: reader.generation(Topic.TAGS, latest) != before[latest])
        assert eventually(lambda: reader.generation(Topic.TAGS, REPOSITORY_A) != before[REPOSITORY_A])
        assert reader.generation(Topic.TAGS, v1) == before[v1]
        assert reader.generation(Topic.TAGS, REPOSITORY_B) == before[REPOSITORY_B]


# --- InvalidatedCache -----------------------------------------------------------------------------
class InvalidatedCacheConformance:
    @pytest.fixture
    def views(self) -> Views:
        raise NotImplementedError("override `views`: a factory of views of one shared feed")

    @staticmethod
    def cache(
        feed: ChangeFeed,
        *topics: Topic,
        max_bytes: int = MIB,
        clock: Callable[[], float] | None = None,
    ) -> GenerationCache[str, str]:
        source = generation_of(feed, *(topics or (Topic.MANIFESTS,)))
        return GenerationCache[str, str](source, max_bytes, clock=clock)

    def test_put_then_get(self, views: Views) -> None:
        cache = self.cache(views())
        assert cache.get("a") is None
        cache.put("a", "1", cache.current_generation())
        cache.put("b", "2", cache.current_generation())
        assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("1", "2", None)

    def test_a_bump_here_drops_every_answer_at_once(self, views: Views) -> None:
        feed = views()
        cache = self.cache(feed)
        for key in "abc":
            cache.put(key, "1", cache.current_generation())
        feed.bump(Topic.MANIFESTS)
        assert [cache.get(key) for key in "abc"] == [None, None, None]
        assert len(cache) == 0

    def test_a_bump_in_another_view_drops_the_answers_here(self, views: Views) -> None:
        writer, reader = views(), views()
        cache = self.cache(reader)
        cache.put("latest", "sha256:old", cache.current_generation())
        writer.bump(Topic.MANIFESTS)
        assert eventually(lambda: cache.get("latest") is None)

    def test_a_bump_of_another_topic_keeps_the_answers(self, views: Views) -> None:
        writer, reader = views(), views()
        cache = self.cache(reader, Topic.BLOB_DELETES)
        cache.put("sha256:abc", "3", cache.current_generation())
        writer.bump(Topic.MANIFESTS)
        probe = self.cache(reader)  # waits for the bump to arrive, then checks the other cache
        probe.put("p", "p", probe.current_generation())
        writer.bump(Topic.MANIFESTS)
        assert eventually(lambda: probe.get("p") is None)
        assert cache.get("sha256:abc") == "3"

    def test_a_cache_of_several_topics_follows_each(self, views: Views) -> None:
        feed = views()
        cache = self.cache(feed, Topic.MANIFESTS, Topic.UNTAGGED_DELETES)
        for topic in (Topic.MANIFESTS, Topic.UNTAGGED_DELETES):
            cache.put("k", "v", cache.current_generation())
            feed.bump(topic)
            assert cache.get("k") is None

    def test_an_answer_read_before_a_write_is_not_served_after_it(self, views: Views) -> None:
        # The race the protocol exists for: the reader notes the generation, queries, and a write
        # commits and bumps before the reader stores its (now stale) answer.
        feed = views()
        cache = self.cache(feed)
        generation = cache.current_generation()
        feed.bump(Topic.MANIFESTS)
        cache.put("latest", "digest-before-retag", generation)
        assert cache.get("latest") is None

    def test_a_late_stale_put_does_not_replace_a_fresh_answer(self, views: Views) -> None:
        feed = views()
        cache = self.cache(feed)
        slow_reader_generation = cache.current_generation()
        feed.bump(Topic.MANIFESTS)  # a retag commits
        cache.put("latest", "new", cache.current_generation())
        cache.put("latest", "old", slow_reader_generation)  # the slow reader finishes last
        assert cache.get("latest") == "new"

    def test_an_entry_is_not_served_past_its_expiry(self, views: Views) -> None:
        now = [1000.0]
        cache = self.cache(views(), clock=lambda: now[0])
        cache.put("login", "alice", cache.current_generation(), expires_at=now[0] + 30)
        cache.put("forever", "bob", cache.current_generation())
        now[0] += 29.9
        assert cache.get("login") == "alice"
        now[0] += 0.1
        assert cache.get("login") is None
        assert cache.get("forever") == "bob"

    def test_the_cache_stays_within_its_bound_keeping_the_newest(self, views: Views) -> None:
        cache = self.cache(views(), max_bytes=5 * ENTRY_OVERHEAD)
        for key in range(100):
            cache.put(str(key), str(key), cache.current_generation())
            assert cache.get(str(key)) == str(key)  # the newest answer is always kept
            held = [k for k in range(key + 1) if cache.get(str(k)) is not None]
            assert len(held) <= 5
        assert cache.weight <= 5 * ENTRY_OVERHEAD

    def test_a_full_cache_drops_its_oldest_entries_and_serves_no_expired_one(self, views: Views) -> None:
        # Room is made by insertion order alone: no put walks every entry for the expired ones (a
        # stall of the event loop in a large cache); an expired entry is dropped when a lookup finds it.
        now = [1000.0]
        cache = self.cache(views(), max_bytes=4 * ENTRY_OVERHEAD, clock=lambda: now[0])
        generation = cache.current_generation()
        cache.put("oldest", "1", generation)
        for key in "abc":
            cache.put(key, "short", generation, expires_at=now[0] + 1)
        now[0] += 2
        cache.put("new", "2", generation)
        assert cache.weight <= 4 * ENTRY_OVERHEAD
        assert (cache.get("oldest"), cache.get("new")) == (None, "2")
        assert [cache.get(key) for key in "abc"] == [None, None, None]
        assert len(cache) == 1

    # --- KeyedGenerationCache: entries per repository -------------------------------------------
    @staticmethod
    def keyed(
        feed: ChangeFeed, *topics: Topic, max_bytes: int = MIB
    ) -> KeyedGenerationCache[tuple[str, str], str]:
        source = keyed_generation_of(feed, *(topics or (Topic.MANIFESTS,)))
        return KeyedGenerationCache[tuple[str, str], str](source, max_bytes)

    def test_a_write_to_one_repository_keeps_the_others_answers(self, views: Views) -> None:
        writer, reader = views(), views()
        cache = self.keyed(reader)
        for key in [(REPOSITORY_A, "latest"), (REPOSITORY_A, "v1"), (REPOSITORY_B, "latest")]:
            cache.put(key, "old", cache.current_generation(key))
        writer.bump(Topic.MANIFESTS, REPOSITORY_A)
        assert eventually(lambda: cache.get((REPOSITORY_A, "latest")) is None)
        assert cache.get((REPOSITORY_A, "v1")) is None
        assert cache.get((REPOSITORY_B, "latest")) == "old"

    def test_a_keyed_write_here_drops_the_repository_at_once(self, views: Views) -> None:
        feed = views()
        cache = self.keyed(feed)
        cache.put((REPOSITORY_A, "latest"), "old", cache.current_generation((REPOSITORY_A, "latest")))
        feed.bump(Topic.MANIFESTS, REPOSITORY_A)
        assert cache.get((REPOSITORY_A, "latest")) is None

    def test_a_whole_topic_write_drops_every_repository(self, views: Views) -> None:
        writer, reader = views(), views()
        cache = self.keyed(reader)
        for key in [(REPOSITORY_A, "latest"), (REPOSITORY_B, "latest")]:
            cache.put(key, "old", cache.current_generation(key))
        writer.bump(Topic.MANIFESTS)
        assert eventually(lambda: cache.get((REPOSITORY_A, "latest")) is None)
        assert eventually(lambda: cache.get((REPOSITORY_B, "latest")) is None)

    def test_a_keyed_answer_read_before_its_write_is_not_served_after_it(self, views: Views) -> None:
        feed = views()
        cache = self.keyed(feed, Topic.MANIFESTS, Topic.UNTAGGED_DELETES)
        for topic in (Topic.MANIFESTS, Topic.UNTAGGED_DELETES):
            key = (REPOSITORY_A, "latest")
            generation = cache.current_generation(key)
            feed.bump(topic, REPOSITORY_A)  # the write commits before the reader stores its answer
            cache.put(key, "digest-before-retag", generation)
            assert cache.get(key) is None
            cache.put(key, "fresh", cache.current_generation(key))
            feed.bump(topic, REPOSITORY_A)
            assert cache.get(key) is None

    def test_a_keyed_cache_stays_within_its_bound_dropping_the_oldest_first(self, views: Views) -> None:
        feed = views()
        cache = self.keyed(feed, max_bytes=4 * ENTRY_OVERHEAD)
        for key in [(REPOSITORY_B, "1"), (REPOSITORY_A, "2"), (REPOSITORY_A, "3"), (REPOSITORY_B, "4")]:
            cache.put(key, key[1], cache.current_generation(key))
        feed.bump(Topic.MANIFESTS, REPOSITORY_A)
        cache.put((REPOSITORY_B, "5"), "5", cache.current_generation((REPOSITORY_B, "5")))
        assert cache.weight <= 4 * ENTRY_OVERHEAD
        assert [cache.get((REPOSITORY_B, tag)) for tag in "145"] == [None, "4", "5"]
        assert [cache.get((REPOSITORY_A, tag)) for tag in "23"] == [None, None]  # moved: never served

    # --- KeyedGenerationCache: entries per tag ---------------------------------------------------
    def test_a_tag_write_keeps_the_repositorys_other_tags(self, views: Views) -> None:
        writer, reader = views(), views()
        cache = KeyedGenerationCache[tuple[str, str], str](tag_generation_of(reader))
        keys = [(REPOSITORY_A, "latest"), (REPOSITORY_A, "v1"), (REPOSITORY_B, "latest")]
        for key in keys:
            cache.put(key, "old", cache.current_generation(key))
        writer.bump(Topic.TAGS, tag_key(REPOSITORY_A, "latest"), REPOSITORY_A)
        assert eventually(lambda: cache.get((REPOSITORY_A, "latest")) is None)
        assert [cache.get(key) for key in keys[1:]] == ["old", "old"]
        writer.bump(Topic.MANIFESTS, REPOSITORY_A)  # a write to the whole repository (a delete)
        assert eventually(lambda: cache.get((REPOSITORY_A, "v1")) is None)
        assert cache.get((REPOSITORY_B, "latest")) == "old"

    def test_a_tag_answer_read_before_its_write_is_not_served_after_it(self, views: Views) -> None:
        feed = views()
        cache = KeyedGenerationCache[tuple[str, str], str](tag_generation_of(feed))
        key = (REPOSITORY_A, "latest")
        for topic, keys in [(Topic.TAGS, (tag_key(*key), REPOSITORY_A)), (Topic.MANIFESTS, (REPOSITORY_A,))]:
            generation = cache.current_generation(key)
            feed.bump(topic, *keys)  # the write commits before the reader stores its answer
            cache.put(key, "digest-before-retag", generation)
            assert cache.get(key) is None


# --- LockManager ----------------------------------------------------------------------------------
class LockManagerConformance:
    @pytest.fixture
    def managers(self) -> Managers:
        raise NotImplementedError("override `managers`: a factory of managers of one set of locks")

    def test_only_one_holder_at_a_time(self, managers: Managers) -> None:
        first, second = managers().lock("purge", 30), managers().lock("purge", 30)
        assert first.acquire()
        assert not second.acquire()
        assert not first.acquire()  # not reentrant
        first.release()
        assert second.acquire()
        second.release()

    def test_different_names_do_not_conflict(self, managers: Managers) -> None:
        one, other = managers().lock("gc", 30), managers().lock("audit-purge", 30)
        assert one.acquire() and other.acquire()
        one.release()
        other.release()

    def test_an_expired_claim_is_free_and_its_old_holder_cannot_release_the_new_one(
        self, managers: Managers
    ) -> None:
        stale, fresh = managers().lock("purge", 0.1), managers().lock("purge", 30)
        assert stale.acquire()
        time.sleep(0.2)
        assert fresh.acquire()  # the old holder hung past its ttl
        with pytest.raises(LockLost):
            stale.release()
        with pytest.raises(LockLost):
            stale.extend()
        assert not managers().lock("purge", 30).acquire()  # still the fresh holder's
        fresh.release()

    def test_extend_keeps_a_claim_alive(self, managers: Managers) -> None:
        # Extended every tenth of a second with a ttl of one: a loaded CI machine oversleeps by a good
        # part of a second, but rarely by nine tenths.
        ttl = 1.0
        lock = managers().lock("long-work", ttl)
        assert lock.acquire()
        taken = time.monotonic()
        while time.monotonic() - taken < 1.3 * ttl:
            time.sleep(ttl / 10)
            lock.extend()  # LockLost once the claim ran out
        assert not managers().lock("long-work", 30).acquire()  # past its first ttl: still held
        lock.release()

    def test_release_of_a_claim_never_taken_or_released_twice_is_refused(self, managers: Managers) -> None:
        lock = managers().lock("purge", 30)
        with pytest.raises(LockLost):
            lock.release()
        assert lock.acquire()
        lock.release()
        with pytest.raises(LockLost):
            lock.release()

    def test_acquire_can_wait_for_the_holder(self, managers: Managers) -> None:
        holder, waiter = managers().lock("purge", 0.3), managers().lock("purge", 30)
        assert holder.acquire()
        assert not waiter.acquire(wait=0.05)
        started = time.monotonic()
        assert waiter.acquire(wait=5)  # the holder's claim runs out
        assert time.monotonic() - started < 3
        waiter.release()

    def test_holding_releases_at_the_end(self, managers: Managers) -> None:
        manager = managers()
        with holding(manager.lock("job", 30)) as held:
            assert held
            with holding(managers().lock("job", 30)) as also:
                assert not also
        assert managers().lock("job", 30).acquire()

    def test_bad_names_and_ttls_are_refused(self, managers: Managers) -> None:
        for name in ("../etc/passwd", "", "UPPER", "a/b", "x" * 129, "a\nb", "purge\n"):
            with pytest.raises(ValueError, match="lock name"):
                managers().lock(name, 30)
        for ttl in (0, -1):
            with pytest.raises(ValueError, match="ttl"):
                managers().lock("ok", ttl)


# --- TokenBuckets ---------------------------------------------------------------------------------
class TokenBucketsConformance:
    """Buckets refill in real time (Redis' clock): rates here are fast or slow enough that a loaded
    machine's pauses do not change the answers."""

    @pytest.fixture
    def stores(self) -> Stores:
        raise NotImplementedError("override `stores`: a factory of views of one set of buckets")

    @staticmethod
    def key() -> str:
        return f"test-{uuid.uuid4().hex}"  # a bucket of its own per test: one store may serve them all

    def test_a_full_bucket_gives_its_burst_then_says_how_long_to_wait(self, stores: Stores) -> None:
        buckets, key = stores(), self.key()
        assert [buckets.take(key, 0.01, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = buckets.take(key, 0.01, 3)
        assert 90 < wait <= 100  # one token at 0.01/s: 100 s, less what trickled in meanwhile
        assert buckets.take(key, 0.01, 3) > 90  # a refused take spends nothing, and still waits

    def test_it_refills_at_its_rate(self, stores: Stores) -> None:
        buckets, key = stores(), self.key()
        assert buckets.take(key, 5, 1) == 0.0
        wait = buckets.take(key, 5, 1)
        assert 0 < wait <= 0.2
        time.sleep(wait + 0.05)
        assert buckets.take(key, 5, 1) == 0.0

    def test_it_never_holds_more_than_its_burst(self, stores: Stores) -> None:
        buckets, key = stores(), self.key()
        assert buckets.take(key, 2, 2) == 0.0
        time.sleep(1.6)  # 3.2 tokens' worth of time; the bucket holds 2
        # A token comes every 0.5 s: the three takes would need a pause that long between them to
        # see one more (at 50/s a loaded machine's 20 ms pause did, now and then).
        assert [buckets.take(key, 2, 2) == 0.0 for _ in range(3)] == [True, True, False]

    def test_buckets_are_separate(self, stores: Stores) -> None:
        buckets, alice, bob = stores(), self.key(), self.key()
        assert buckets.take(alice, 0.01, 1) == 0.0
        assert buckets.take(alice, 0.01, 1) > 0
        assert buckets.take(bob, 0.01, 1) == 0.0  # alice's empty bucket is not bob's

    def test_every_view_spends_from_the_same_bucket(self, stores: Stores) -> None:
        first, second, key = stores(), stores(), self.key()
        assert first.take(key, 0.01, 2) == 0.0
        assert second.take(key, 0.01, 2) == 0.0
        assert first.take(key, 0.01, 2) > 0
        assert second.take(key, 0.01, 2) > 0

    def test_concurrent_takes_never_spend_more_than_the_burst(self, stores: Stores) -> None:
        views, key = [stores() for _ in range(4)], self.key()
        taken: list[bool] = []
        lock = threading.Lock()

        def spend(buckets: TokenBuckets) -> None:
            for _ in range(25):
                ok = buckets.take(key, 0.001, 20) == 0.0
                with lock:
                    taken.append(ok)

        threads = [threading.Thread(target=spend, args=(view,)) for view in views]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(taken) == 100 and taken.count(True) == 20

    def test_bad_rates_and_bursts_are_refused(self, stores: Stores) -> None:
        buckets = stores()
        for rate, burst in ((0, 1), (-1, 1), (1, 0)):
            with pytest.raises(ValueError, match="token bucket"):
                buckets.take(self.key(), rate, burst)


# --- Slots ----------------------------------------------------------------------------------------
class SlotsConformance:
    @pytest.fixture
    def pools(self) -> Pools:
        raise NotImplementedError("override `pools`: a factory of views of one set of pools")

    @staticmethod
    def name() -> str:
        return f"test-{uuid.uuid4().hex}"  # pools of their own per test: one store may serve them all

    def test_a_pool_holds_its_size_and_a_release_makes_room(self, pools: Pools) -> None:
        slots, pool = pools(), self.name()
        assert slots.claim([(pool, 2)], "u1", 60) is None
        assert slots.claim([(pool, 2)], "u2", 60) is None
        assert slots.claim([(pool, 2)], "u3", 60) == pool
        slots.release([pool], "u1")
        assert slots.claim([(pool, 2)], "u3", 60) is None

    def test_a_holder_claiming_again_keeps_its_one_place(self, pools: Pools) -> None:
        slots, pool = pools(), self.name()
        assert slots.claim([(pool, 1)], "u1", 60) is None
        assert slots.claim([(pool, 1)], "u1", 60) is None  # a PATCH of the same upload
        assert slots.claim([(pool, 1)], "u2", 60) == pool

    def test_a_place_expires_unless_claimed_again(self, pools: Pools) -> None:
        slots, pool = pools(), self.name()
        assert slots.claim([(pool, 1)], "abandoned", 0.3) is None
        assert slots.claim([(pool, 1)], "next", 60) == pool
        time.sleep(0.5)  # the client went away
        assert slots.claim([(pool, 1)], "next", 60) is None
        assert slots.claim([(pool, 1)], "abandoned", 60) == pool  # its place is gone: it must wait

    def test_claim_takes_every_pool_or_none(self, pools: Pools) -> None:
        slots, mine, total = pools(), self.name(), self.name()
        assert slots.claim([(mine, 5), (total, 1)], "u1", 60) is None
        assert slots.claim([(mine, 5), (total, 1)], "u2", 60) == total
        slots.release([mine, total], "u1")
        assert slots.claim([(mine, 1), (total, 1)], "u2", 60) is None  # u2 took no place in `mine` before

    def test_release_of_what_is_not_held_does_nothing(self, pools: Pools) -> None:
        slots, pool = pools(), self.name()
        slots.release([pool], "nobody")
        assert slots.claim([(pool, 1)], "u1", 60) is None
        slots.release([pool], "someone-else")
        assert slots.claim([(pool, 1)], "u2", 60) == pool

    def test_every_view_shares_the_pools(self, pools: Pools) -> None:
        first, second, pool = pools(), pools(), self.name()
        assert first.claim([(pool, 1)], "u1", 60) is None
        assert second.claim([(pool, 1)], "u2", 60) == pool
        second.release([pool], "u1")  # the PUT landed on another worker
        assert second.claim([(pool, 1)], "u2", 60) is None

    def test_concurrent_claims_never_overfill_a_pool(self, pools: Pools) -> None:
        views, pool = [pools() for _ in range(4)], self.name()
        won: list[str] = []
        lock = threading.Lock()

        def claim(slots: Slots, worker: int) -> None:
            for n in range(10):
                holder = f"w{worker}-{n}"
                if slots.claim([(pool, 7)], holder, 60) is None:
                    with lock:
                        won.append(holder)

        threads = [threading.Thread(target=claim, args=(view, i)) for i, view in enumerate(views)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 7
