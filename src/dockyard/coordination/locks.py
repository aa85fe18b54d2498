"""Named locks with an expiry shared by the processes of one node: files in the datadir
(`FileLocks`). `locks_redis.RedisLocks` shares them with every node; the contract both keep
(`interfaces.LockManager`, `DistributedLock`) is checked by `conformance.LockManagerConformance`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dockyard.coordination.interfaces import LockLost, check_name, check_ttl

_POLL_SECONDS = 0.05


def _poll(attempt: Callable[[], bool], wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


class FileLocks:
    """Locks shared by the processes of one host: `<directory>/<name>.lock` holds the claim's token and
    expiry (wall-clock), read and written under a short flock so claims never interleave."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def lock(self, name: str, ttl: float) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(self.directory / f"{check_name(name)}.lock", name, check_ttl(ttl), self.clock)

    def sweep(self, prefix: str, idle: float) -> int:
        """Remove the files of locks named `prefix...` that nobody holds and nobody has touched for
        `idle` seconds (the file's mtime: every acquire, extend and release writes it). Locks named per
        object, such as the pull-through cache's per blob, would otherwise pile up. How many went.
        Checked and removed under the file's flock. A claim racing the removal (it opened the old file
        just before) may then coexist with one on a new file: use it only for locks where two holders
        at once cost duplicate work, never damage."""
        check_name(prefix)
        removed = 0
        now, wall = self.clock(), time.time()
        for path in self.directory.glob(f"{prefix}*.lock"):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                claim = _Claim.read(fd)
                if claim.expires <= now and os.fstat(fd).st_mtime + idle < wall:
                    path.unlink(missing_ok=True)
                    removed += 1
            finally:
                os.close(fd)
        return removed


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
            claim.write(self.token, self.clock() + check_ttl(ttl or self.ttl))

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
