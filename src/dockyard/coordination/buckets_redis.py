"""Token buckets shared by every worker and node through Redis (`interfaces.TokenBuckets`).

One Lua script per take: refill, take and store run inside Redis, atomically, so two nodes taking
from one bucket at once never both spend its last token (no read-modify-write race). The script
reads Redis' own clock (`TIME`), so the nodes' clocks need not agree. A bucket's key expires once
it would be full again: idle clients cost Redis nothing. If Redis goes away, this process's own
buckets (`InProcessBuckets`) limit until it is back (Redis is tried again every few seconds).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis

from dockyard.coordination.buckets import InProcessBuckets
from dockyard.coordination.interfaces import check_bucket

log = logging.getLogger("dockyard.coordination.buckets")

KEY_PREFIX = "dockyard:bucket:"
_WARN_EVERY_SECONDS = 60.0
# After Redis failed, how long this process's own buckets answer before Redis is tried again: a Redis
# that hangs would otherwise hold every request for the client's timeout.
RETRY_REDIS_SECONDS = 5.0

# KEYS[1] the bucket; ARGV rate (tokens/s), burst. Returns the wait in microseconds (0: taken).
# Numbers go back to Redis as strings (a Lua number handed to Redis would lose its fraction).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
if tokens == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - tonumber(state[2])) * rate)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return wait
"""


class RedisBuckets:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = KEY_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self._take = client.register_script(_TAKE)
        self._local = InProcessBuckets(clock)
        self._clock = clock
        self._last_warning = -math.inf
        self._redis_after = -math.inf

    def take(self, key: str, rate: float, burst: int) -> float:
        check_bucket(rate, burst)
        if self._clock() < self._redis_after:
            return self._local.take(key, rate, burst)
        try:
            wait = self._take(keys=[self.prefix + key], args=[repr(float(rate)), burst])
        except redis.RedisError as exc:
            self._redis_after = self._clock() + RETRY_REDIS_SECONDS
            self._warn(exc)
            return self._local.take(key, rate, burst)
        return int(wait) / 1_000_000

    def _warn(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._last_warning >= _WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("Redis unavailable, request limits are this process's own until it is back: %s", exc)
