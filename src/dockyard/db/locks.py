"""Named locks with an expiry, for work that one process at a time should do: across a node's worker
processes (`FileLocks`, files in the datadir) or across every node (`RedisLocks`, with Redis).

The contract (`LockManager`, `DistributedLock`), which `tests/unit/db/test_locks.py` checks for both:

- `acquire(wait=0)` takes the lock for `ttl` seconds if nobody holds it (or the holder's time ran
  out), waiting up to `wait` seconds; True when this holder has it.
- The holder's claim expires after `ttl` seconds unless `extend`ed: a process that died or hung
  while holding it does not block the others for good. Pick `ttl` longer than the work.
- `release()` and `extend()` check the holder's token: a holder whose claim expired and was taken
  by another gets `LockLost`, and never releases the other's claim.

Each lock object is one claim (one token); make a new one per attempt with `manager.lock(name, ttl)`.
Not reentrant.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # redis-py loads only in processes configured for Redis (they hand in a client)
    import redis

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_POLL_SECONDS = 0.05


class LockLost(Exception):
    """The lock was not held by this claim: never taken, released already, or expired and taken by another."""


class DistributedLock(Protocol):
    name: str

    def acquire(self, wait: float = 0.0) -> bool: ...

    def release(self) -> None: ...

    def extend(self, ttl: float | None = None) -> None:
        """Restart the claim's time to live (`ttl`, default the lock's own) from now."""
        ...


class LockManager(Protocol):
    def lock(self, name: str, ttl: float) -> DistributedLock: ...


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


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"lock name {name!r}: lower-case letters, digits, '.', '_' and '-' only")
    return name


def _ttl(ttl: float) -> float:
    if ttl <= 0:
        raise ValueError(f"a lock's ttl must be positive, got {ttl}")
    return ttl


def _poll(attempt: Callable[[], bool], wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


# --- one node: files ------------------------------------------------------------------------------
class FileLocks:
    """Locks shared by the processes of one host: `<directory>/<name>.lock` holds the claim's token and
    expiry (wall-clock), read and written under a short flock so claims never interleave."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def lock(self, name: str, ttl: float) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(self.directory / f"{check_name(name)}.lock", name, _ttl(ttl), self.clock)


class FileLock:
    def __init__(self, path: Path, name: str, ttl: float, clock: Callable[[], float]) -> None:
        self.path = path
        self.name = name
        self.ttl = ttl
        self.clock = clock
        self.token = secrets.token_hex(16)

    def acquire(self, wait: float = 0.0) -> bool:
        return _poll(self._try_acquire, wait)

    def release(self) -> None:
        with self._claim() as claim:
            if not self._mine(claim):
                raise LockLost(self.name)
            claim.write(None, 0.0)

    def extend(self, ttl: float | None = None) -> None:
        with self._claim() as claim:
            if not self._mine(claim):
                raise LockLost(self.name)
            claim.write(self.token, self.clock() + _ttl(ttl or self.ttl))

    def _try_acquire(self) -> bool:
        with self._claim() as claim:
            if claim.token and claim.expires > self.clock():
                return False
            claim.write(self.token, self.clock() + self.ttl)
            return True

    def _mine(self, claim: _Claim) -> bool:
        return claim.token == self.token and claim.expires > self.clock()

    @contextlib.contextmanager
    def _claim(self) -> Iterator[_Claim]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for one read and one write: microseconds
            yield _Claim.read(fd)
        finally:
            os.close(fd)  # closing drops the flock


class _Claim:
    """The lock file's content: who holds it and until when (epoch seconds)."""

    def __init__(self, fd: int, token: str | None, expires: float) -> None:
        self.fd = fd
        self.token = token
        self.expires = expires

    @classmethod
    def read(cls, fd: int) -> _Claim:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            token, expires = data.get("token"), float(data.get("expires", 0))
        except (ValueError, TypeError, AttributeError):
            token, expires = None, 0.0  # a torn or foreign file: nobody's claim
        return cls(fd, token if isinstance(token, str) else None, expires)

    def write(self, token: str | None, expires: float) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"token": token, "expires": expires}).encode(), 0)


# --- every node: Redis ----------------------------------------------------------------------------
class RedisLocks:
    """Locks shared by every node through Redis: redis-py's Lock (SET NX PX with a random token;
    release and extend are Lua scripts that check the token)."""

    def __init__(self, client: redis.Redis, prefix: str = "dockyard:lock:") -> None:
        self.client = client
        self.prefix = prefix

    def lock(self, name: str, ttl: float) -> RedisLock:
        return RedisLock(self.client, self.prefix + check_name(name), name, _ttl(ttl))


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
            self._lock.extend(_ttl(ttl or self.ttl), replace_ttl=True)
        except LockError:
            raise LockLost(self.name) from None
