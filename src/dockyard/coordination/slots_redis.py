"""Places in pools of limited size shared by every worker and node through Redis (`interfaces.Slots`).

A pool is a sorted set: member the holder, score when its place expires (Redis' clock). A claim is
one Lua script (drop the expired, check every pool, then take a place in each), so two nodes never
both take a pool's last place. A pool's key expires after the longest place in it: nothing lingers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dockyard.coordination.interfaces import Pool

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "dockyard:slots:"

# KEYS the pools; ARGV holder, ttl (seconds), then each pool's size. Returns 0, or the 1-based index
# of the first full pool.
_CLAIM = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local holder = ARGV[1]
local ttl = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.6f', now))
  if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= tonumber(ARGV[i + 2]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, string.format('%.6f', now + ttl), holder)
  redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
end
return 0
"""


class RedisSlots:
    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)

    def claim(self, pools: Sequence[Pool], holder: str, ttl: float) -> str | None:
        if not pools:
            return None
        keys = [self.prefix + name for name, _ in pools]
        full = int(self._claim(keys=keys, args=[holder, repr(float(ttl)), *(size for _, size in pools)]))
        return pools[full - 1][0] if full else None

    def release(self, names: Sequence[str], holder: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.zrem(self.prefix + name, holder)
        pipe.execute()
