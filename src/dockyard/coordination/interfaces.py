"""The contracts of coordination between processes and nodes: the change feed that invalidates
per-process caches, those caches, named locks, and the one way to get a Redis client.

Each Protocol has an in-process (or one-node) implementation and a Redis one, and one conformance
suite both pass (`coordination/conformance.py`):

- `ChangeFeed`: `feeds.InProcessChangeFeed` (one process), `feeds.LocalChangeFeed` (a file the
  node's workers map); `feeds_redis.RedisChangeFeed` (every node).
- `InvalidatedCache`: `caches.GenerationCache`, over whichever feed the process has;
  `KeyedInvalidatedCache`: `caches.KeyedGenerationCache`, whose entries follow their own key's
  generation (a repository's, or a tag's), so a write to one repository keeps the others' answers.
- `LockManager`: `locks.FileLocks` (files in the datadir); `locks_redis.RedisLocks` (every node).
- `TokenBuckets`: `buckets.InProcessBuckets` (one process); `buckets_redis.RedisBuckets` (every node).
- `Slots`: `slots.FileSlots` (files in the datadir); `slots_redis.RedisSlots` (every node).
- `RedisConnect`: `redis_client.connect`, the only place a Redis client is made.

Domain packages depend on these Protocols only; the composition root (`dockyard.services`,
`dockyard.app`) picks the implementations from Settings. Nothing here imports redis-py: its
modules load only in processes configured for Redis.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import redis

K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)
V = TypeVar("V")


# --- the change feed ------------------------------------------------------------------------------
class Topic(IntEnum):
    """What changed. A write bumps its topic after its transaction commits; caches of answers that
    the write could make stale follow that topic. Writes confined to one repository bump the topic
    with the repository's name as key (`ChangeFeed.bump(topic, *keys)`), or, for one tag, with the
    tag's key (`tag_key`)."""

    # A repository's manifests and tags as a whole (key: repository): lookups by tag and by digest,
    # tag lists. Deletes of manifests (their tags go with them), the pull-through cache's stores.
    MANIFESTS = 0
    BLOB_DELETES = 1  # blob links removed: positive blob-existence answers (key: repository)
    POLICIES = 2  # project policies read on hot paths: quota limits, tag immutability rules
    AUTH = 3  # accounts, credentials, roles, signing keys: remembered logins, tokens, key rings
    # Untagged manifests deleted (garbage collection): answers by digest only. No tag, tag list or
    # catalog changes, so the caches of lookups by tag stay (a GC would otherwise empty them all).
    UNTAGGED_DELETES = 4
    # The pull policies' cached decisions (key: repository): a verdict on an artifact stored (a
    # signature's, a scan result) bumps it with the artifact's repository; trusted keys or a
    # project's trust policy changed, the whole topic.
    VERDICTS = 5
    # One tag pushed, moved or deleted: bumped with two keys, `tag_key(repository, tag)` (the lookups
    # of that tag) and the repository's name (its tag lists). The repository's other tags, its
    # manifests by digest and the catalog stay cached.
    TAGS = 6
    # A repository created: the catalog (whole topic).
    REPOSITORIES = 7
    # A job queued or a schedule set (after its transaction commits): no cache follows it; job
    # runners watch it so a job queued by another process or node starts at once, not at their
    # next poll.
    JOBS = 8


# A topic's keys share this many counters (a power of two): a keyed bump moves its key's slot only,
# so it also drops the answers of the other keys in that slot (1 in KEY_SLOTS of them), never fewer.
KEY_SLOTS = 4096


def key_slot(key: str) -> int:
    """The slot of `key` among a topic's KEY_SLOTS counters, the same in every process and node
    (crc32: `hash()` of a str is salted per process)."""
    return zlib.crc32(key.encode()) & (KEY_SLOTS - 1)


def tag_key(repository: str, tag: str) -> str:
    """The key of one tag's answers on Topic.TAGS (no repository name has a colon, no tag either)."""
    return f"{repository}:{tag}"


class ChangeFeed(Protocol):
    """A counter per topic, and per key of a topic, that every process following the same feed sees
    move.

    - `generation(topic)` and `generation(topic, key)` are cheap (no I/O: read on every cached
      hot-path request).
    - After `bump(topic)` returns, this process's `generation(topic)` and `generation(topic, key)`
      for every key differ from every value they returned before; other processes on the feed see
      them move within the feed's delay.
    - After `bump(topic, *keys)` returns, the same holds for `generation(topic)` and
      `generation(topic, key)` of each of `keys`, but `generation(topic, other)` does not move for a
      key `other` in another slot (`key_slot`): a write to one repository leaves the others' cached
      answers alone.
    - A bump of one topic never moves another topic's generations in this process (remote bumps of
      the others aside).
    - A feed that cannot guarantee delivery (Redis away) must return a new generation on every
      read until it can again: caches then keep nothing, so nothing served is stale.
    """

    def generation(self, topic: Topic, key: str | None = None) -> int: ...

    def bump(self, topic: Topic, *keys: str) -> None: ...


Generation = Callable[[], int]
"""A number that moves whenever what a cache holds may have become stale (`generation_of`)."""

KeyedGeneration = Callable[[Any], int]
"""The same for the answers under one cache key (about one repository or one tag), read from the
key itself: `keyed_generation_of`, `tag_generation_of`."""


def generation_of(feed: ChangeFeed, *topics: Topic) -> Generation:
    """The generation source of answers that depend on `topics`: it moves when any of them does
    (their generations side by side in one int: each is below 2**64)."""
    # One and two topics (every cache today) without a loop: this is read on every cache hit.
    if len(topics) == 1:
        topic = topics[0]
        return lambda: feed.generation(topic)
    if len(topics) == 2:
        first, second = topics
        return lambda: (feed.generation(first) << 64) | feed.generation(second)

    def generation() -> int:
        combined = 0
        for topic in topics:
            combined = (combined << 64) | feed.generation(topic)
        return combined

    return generation


def keyed_generation_of(feed: ChangeFeed, *topics: Topic, at: int = 0) -> KeyedGeneration:
    """The generation source of answers about one repository that depend on `topics`, read from a
    cache's key (the repository at `key[at]`): it moves when a bump of any of them names the
    repository (or its slot), or names no key."""
    # One and two topics (every cache today) without a loop: this is read on every cache hit.
    read = feed.generation
    if len(topics) == 1:
        topic = topics[0]
        return lambda key: read(topic, key[at])
    if len(topics) == 2:
        first, second = topics
        return lambda key: (read(first, key[at]) << 64) | read(second, key[at])

    def generation(key: tuple[Any, ...]) -> int:
        combined = 0
        for topic in topics:
            combined = (combined << 64) | feed.generation(topic, key[at])
        return combined

    return generation


def tag_generation_of(feed: ChangeFeed) -> KeyedGeneration:
    """The generation source of answers about one tag, read from a (repository, tag) key: it moves
    with a write to the whole repository (Topic.MANIFESTS with its name) and with one to that tag
    (Topic.TAGS with `tag_key`), not with a write to another tag."""
    manifests, tags, read = Topic.MANIFESTS, Topic.TAGS, feed.generation
    # tag_key(*key), written out: this is read on every cache hit.
    return lambda key: (read(manifests, key[0]) << 64) | read(tags, f"{key[0]}:{key[1]}")


def tag_list_generation_of(feed: ChangeFeed, at: int = 0) -> KeyedGeneration:
    """The generation source of a repository's tag lists (the repository at `key[at]`): it moves with a
    write to the whole repository and with a write to any of its tags (Topic.TAGS with its name)."""
    manifests, tags, read = Topic.MANIFESTS, Topic.TAGS, feed.generation
    return lambda key: (read(manifests, key[at]) << 64) | read(tags, key[at])


# --- per-process caches ---------------------------------------------------------------------------
class InvalidatedCache(Protocol[K_contra, V]):
    """A per-process cache that forgets everything when its generation source moves.

    The protocol that keeps it correct: note `current_generation()` *before* reading the source of
    truth, and hand that number to `put`. A value computed across a change (the generation moved
    meanwhile) is not kept, so a stale answer never outlives the write that made it stale.
    `put(..., expires_at=t)` also bounds how long a value is served (the cache's clock).
    """

    def current_generation(self) -> int: ...

    def get(self, key: K_contra) -> V | None: ...

    def put(
        self, key: K_contra, value: V, generation: int | None, expires_at: float | None = None
    ) -> None: ...


class KeyedInvalidatedCache(Protocol[K_contra, V]):
    """A per-process cache whose entries each follow the generation of their own key (that of the
    repository of a (repository, reference) key, or of the tag): a change to one repository drops
    that repository's entries only.

    The same protocol as `InvalidatedCache`, per key: note `current_generation(key)` *before*
    reading the source of truth and hand it to `put`; an answer computed across a change to its
    key's generation is not kept, and an entry is not served once that generation moved.
    """

    def current_generation(self, key: K_contra) -> int: ...

    def get(self, key: K_contra) -> V | None: ...

    def put(self, key: K_contra, value: V, generation: int, expires_at: float | None = None) -> None: ...


# --- locks ----------------------------------------------------------------------------------------
class LockLost(Exception):
    """The lock was not held by this claim: never taken, released already, or expired and taken by another."""


class DistributedLock(Protocol):
    """One claim on a named lock, with an expiry.

    - `acquire(wait=0)` takes the lock for `ttl` seconds if nobody holds it (or the holder's time
      ran out), waiting up to `wait` seconds; True when this claim has it. Not reentrant.
    - The claim expires after `ttl` seconds unless `extend`ed: a process that died or hung while
      holding it does not block the others for good. Pick `ttl` longer than the work.
    - `release()` and `extend()` check the claim's token: a claim that expired and was taken by
      another gets `LockLost`, and never releases the other's claim.
    """

    name: str

    def acquire(self, wait: float = 0.0) -> bool: ...

    def release(self) -> None: ...

    def extend(self, ttl: float | None = None) -> None:
        """Restart the claim's time to live (`ttl`, default the lock's own) from now."""
        ...


class LockManager(Protocol):
    def lock(self, name: str, ttl: float) -> DistributedLock:
        """A new claim (one token) on `name` (`check_name`); ValueError for a bad name or ttl <= 0.
        Make a new one per attempt."""
        ...


_LOCK_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    if not _LOCK_NAME.fullmatch(name):  # not `$`: it lets a trailing newline through
        raise ValueError(f"lock name {name!r}: lower-case letters, digits, '.', '_' and '-' only")
    return name


def check_ttl(ttl: float) -> float:
    if ttl <= 0:
        raise ValueError(f"a lock's ttl must be positive, got {ttl}")
    return ttl


@contextlib.contextmanager
def holding(lock: DistributedLock, wait: float = 0.0) -> Iterator[bool]:
    """`with holding(manager.lock("gc", 600)) as held: if held: ...`; released at the end (a claim
    that expired meanwhile is not an error here: the work is done)."""
    held = lock.acquire(wait)
    try:
        yield held
    finally:
        if held:
            with contextlib.suppress(LockLost):
                lock.release()


# --- rate limits ----------------------------------------------------------------------------------
class TokenBuckets(Protocol):
    """Token buckets by key (the request limits of /v2), shared by the processes using one store.

    - `take(key, rate, burst)`: the bucket holds at most `burst` tokens and gains `rate` tokens a
      second; a bucket never used (or forgotten) is full. Takes one token and returns 0.0, or, when
      there is less than one, takes nothing and returns the seconds until there is one (> 0).
    - Atomic across its processes: however many take from one bucket at once, no more than
      `burst + rate * elapsed` takes succeed in total.
    - Buckets idle long enough to be full again may be forgotten (the answer is the same).
    - It does not raise when its store is away: it limits with this process's own buckets until
      the store is back (and says so in the log).
    """

    def take(self, key: str, rate: float, burst: int) -> float: ...


def check_bucket(rate: float, burst: int) -> None:
    if rate <= 0 or burst < 1:
        raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got rate={rate}, burst={burst}")


Pool = tuple[str, int]  # a pool of places: its name and how many it holds


class Slots(Protocol):
    """Places with an expiry in named pools of limited size (the concurrent uploads of /v2).

    - `claim(pools, holder, ttl)`: take a place for `holder` in each of `pools`, or in none of them.
      None when held; else the name of the first pool that is full. A holder already in a pool keeps
      its place there (its expiry starts again).
    - A place expires `ttl` seconds after its last claim: a holder that went away gives it back.
    - `release(names, holder)`: gives the holder's places back; nothing happens where it has none.
    - Atomic across its processes: a pool never holds more unexpired places than its size.
    - Raises when its store is unreachable: the caller decides (the /v2 edge lets the upload go on).
    """

    def claim(self, pools: Sequence[Pool], holder: str, ttl: float) -> str | None: ...

    def release(self, names: Sequence[str], holder: str) -> None: ...


# --- Redis ----------------------------------------------------------------------------------------
class RedisConnect(Protocol):
    """The one Redis client factory (`redis_client.connect`): every Redis-backed implementation
    here and in the domains (the login limiter) gets its client from it, so redis://, rediss://,
    unix:// and Sentinel URLs, timeouts and health checks are handled once."""

    def __call__(self, url: str) -> redis.Redis: ...
