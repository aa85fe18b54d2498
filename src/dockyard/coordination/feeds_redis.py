"""A change feed shared by every node through Redis pub/sub (`interfaces.ChangeFeed`), for the
caches in `caches`.

The hot path reads `generation()` on every cached manifest GET, so it never talks to Redis: each
process keeps its own counters, and a background thread moves them when another process (on any
node) publishes a bump. A bump is INCR of a Redis key and PUBLISH, in one round trip.

A bump is published on `KEYED_CHANNEL` as "topic key [key ...]" (a repository; a tag and its
repository), or as "topic" for the whole topic, and, in the same round trip, on `CHANNEL` as "+topic":
a node of the version before keys (during a rolling upgrade) reads that as its whole topic
(`int("+0") == 0`) and drops all it cached, as it always did; this version ignores it (its twin on
the keyed channel counts). The topics that version does not know (Topic.TAGS, Topic.REPOSITORIES) are
told to it as Topic.MANIFESTS, what it followed for them (Topic.JOBS, which only wakes job runners,
not at all); its own bumps (a topic's number on `CHANNEL`) move the whole topic here, and its
Topic.MANIFESTS those two as well.

Correctness when Redis is away: a process that is not subscribed might miss another node's bump,
so until its subscription is confirmed it is *degraded*: `generation()` returns a new value on
every call, which makes `GenerationCache` drop and never keep anything (every read goes to the
DB: slower, never stale). On (re)subscription every counter is bumped, since messages may have been
missed meanwhile. A bump this process could not publish is published again once Redis is back.
"""

from __future__ import annotations

import itertools
import logging
import threading
import zlib

import redis

from dockyard.coordination.interfaces import KEY_SLOTS, Topic, key_slot
from dockyard.coordination.redis_client import TIMEOUT

log = logging.getLogger("dockyard.cache.redis")

CHANNEL = "dockyard:changes"
KEYED_CHANNEL = f"{CHANNEL}:keyed"
GENERATION_KEY = "dockyard:generation:{}"  # one counter per topic, INCRed by every bump
RETRY_SECONDS = 1.0  # between reconnection attempts of the subscriber
POLL_SECONDS = 1.0  # the subscriber's longest wait for a message: how late it notices `close()`
_SLOT_MASK = KEY_SLOTS - 1
# What nodes of the version before keys followed for the topics they do not know: its MANIFESTS
# covered tags, tag lists and the catalog. Its bump of that topic moves those topics here.
_EARLIER_TOPIC: dict[Topic, Topic | None] = {
    Topic.TAGS: Topic.MANIFESTS,
    Topic.REPOSITORIES: Topic.MANIFESTS,
    Topic.JOBS: None,  # wakes job runners only: nothing to tell a version that would warn of it
}
_EARLIER_MEANT = {Topic.MANIFESTS: (Topic.MANIFESTS, Topic.TAGS, Topic.REPOSITORIES)}


class RedisChangeFeed:
    """Implements `ChangeFeed`. One per process: its subscriber thread starts at construction."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        channel: str = CHANNEL,
        poll_seconds: float = POLL_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._client = client
        self._channel = channel
        self._poll_seconds = poll_seconds  # tests shorten both: each close() waits up to a poll
        self._retry_seconds = retry_seconds
        self._keyed_channel = f"{channel}:keyed"  # KEYED_CHANNEL for the default channel
        self._counter = itertools.count(1)
        self._values = [0] * len(Topic)
        self._keys = [[0] * KEY_SLOTS for _ in Topic]
        self._degraded = True  # until the subscription is confirmed
        self._ticks = itertools.count(1 << 62)  # generations while degraded: new on every read
        self._unpublished: set[Topic] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._listen_forever, name="redis-change-feed", daemon=True)
        self._thread.start()

    # --- ChangeFeed -----------------------------------------------------------------------------
    def generation(self, topic: Topic, key: str | None = None) -> int:
        if self._degraded:
            return next(self._ticks)
        if key is None:
            return self._values[topic]
        return self._keys[topic][zlib.crc32(key.encode()) & _SLOT_MASK]  # key_slot(key), written out

    def bump(self, topic: Topic, *keys: str) -> None:
        self._bump_locally(topic, keys)  # this process sees its own write at once, Redis or not
        try:
            self._publish(topic, keys)
        except redis.RedisError as exc:
            log.warning("cannot publish a cache invalidation (%s); caching is off until Redis is back", exc)
            with self._lock:
                self._unpublished.add(topic)  # published again as the whole topic
            self._degraded = True

    # --- for health checks, tests and shutdown --------------------------------------------------
    @property
    def degraded(self) -> bool:
        return self._degraded

    def wait_connected(self, timeout: float) -> bool:
        """True once subscribed (caching is on)."""
        return self._connected.wait(timeout)

    def ping(self) -> None:
        """Raises redis.RedisError if Redis does not answer."""
        self._client.ping()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=TIMEOUT + max(self._poll_seconds, self._retry_seconds))
        self._client.close()

    # --- internals ------------------------------------------------------------------------------
    def _bump_locally(self, topic: Topic, keys: tuple[str, ...] = ()) -> None:
        with self._lock:
            value = next(self._counter)
            if not keys:
                self._keys[topic] = [value] * KEY_SLOTS
            for key in keys:
                self._keys[topic][key_slot(key)] = value
            self._values[topic] = value

    def _publish(self, topic: Topic, keys: tuple[str, ...] = ()) -> None:
        earlier = _EARLIER_TOPIC.get(topic, topic)  # what nodes of the version before keys know it as
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(GENERATION_KEY.format(int(topic)))
        if earlier is not None:
            pipe.publish(self._channel, f"+{int(earlier)}")  # for nodes of an earlier version
        pipe.publish(self._keyed_channel, " ".join((str(int(topic)), *keys)))  # no keys: the whole topic
        pipe.execute()

    def _listen_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except (redis.RedisError, OSError) as exc:
                if not self._degraded:
                    log.warning("lost the Redis change feed (%s); caching is off until it is back", exc)
            except Exception:  # a bug must not stop invalidation silently: degrade and retry
                log.exception("Redis change feed listener failed")
            self._go_degraded()
            self._stopping.wait(self._retry_seconds)

    def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            channels = (self._channel, self._keyed_channel)
            pubsub.subscribe(*channels)
            while not self._stopping.is_set():
                if self._unpublished and self._connected.is_set():
                    self._resume()  # a bump failed to publish while we stayed subscribed
                message = pubsub.get_message(timeout=self._poll_seconds)
                if message is None:
                    continue
                # One confirmation per channel, each with how many are subscribed: resume at the
                # last (resuming at each would reset every cache again just after the first).
                if message["type"] == "subscribe" and int(message["data"]) == len(channels):
                    self._resume()
                elif message["type"] == "message":
                    self._on_message(message["channel"], message["data"])
        finally:
            pubsub.close()

    def _on_message(self, channel: bytes | str, data: bytes | str) -> None:
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        name = channel.decode(errors="replace") if isinstance(channel, bytes) else channel
        keyed = name == self._keyed_channel
        if not keyed and text.startswith("+"):
            return  # a bump told to earlier versions: its twin on the keyed channel counts here
        number, *keys = text.split(" ") if keyed else (text,)
        try:
            topic = Topic(int(number))
        except ValueError:
            log.warning("ignoring an unknown change-feed message %r", data)
            return
        if keyed:
            self._bump_locally(topic, tuple(keys))  # no keys: the whole topic
            return
        for meant in _EARLIER_MEANT.get(topic, (topic,)):
            self._bump_locally(meant)  # a whole topic, from a node of an earlier version

    def _resume(self) -> None:
        """Subscribed: anything may have changed while we were not, so every cache starts afresh."""
        with self._lock:
            pending = set(self._unpublished)
        for topic in pending:
            self._publish(topic)  # a failure raises and the listener retries
            with self._lock:
                self._unpublished.discard(topic)
        for topic in Topic:
            self._bump_locally(topic)
        self._degraded = False
        self._connected.set()
        log.info("Redis change feed subscribed; caching is on")

    def _go_degraded(self) -> None:
        self._degraded = True
        self._connected.clear()
