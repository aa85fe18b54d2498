"""Named locks with an expiry shared by every node through Redis (`interfaces.LockManager`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.coordination.interfaces import LockLost, check_name, check_ttl

if TYPE_CHECKING:  # redis-py loads only in processes configured for Redis (they hand in a client)
    import redis


class RedisLocks:
    """redis-py's Lock: SET NX PX with a random token; release and extend are Lua scripts that
    check the token."""

    def __init__(self, client: redis.Redis, prefix: str = "dockyard:lock:") -> None:
        self.client = client
        self.prefix = prefix

    def lock(self, name: str, ttl: float) -> RedisLock:
        return RedisLock(self.client, self.prefix + check_name(name), name, check_ttl(ttl))


class RedisLock:
    def __init__(self, client: redis.Redis, key: str, name: str, ttl: float) -> None:
        self.name = name
        self.ttl = ttl
        # thread_local=False: a claim taken in one thread may be released from another (asyncio.to_thread).
        self._lock = client.lock(key, timeout=ttl, blocking=False, thread_local=False)

    def acquire(self, wait: float = 0.0) -> bool:
        """Raises redis.RedisError when Redis cannot be reached: the caller decides whether to skip."""
        if wait <= 0:
            return bool(self._lock.acquire(blocking=False))
        return bool(self._lock.acquire(blocking=True, blocking_timeout=wait))

    def release(self) -> None:
        from redis.exceptions import LockError

        try:
            self._lock.release()
        except LockError:  # LockNotOwnedError included: expired, or taken by another
            raise LockLost(self.name) from None

    def extend(self, ttl: float | None = None) -> None:
        from redis.exceptions import LockError

        try:
            self._lock.extend(check_ttl(ttl or self.ttl), replace_ttl=True)
        except LockError:
            raise LockLost(self.name) from None
