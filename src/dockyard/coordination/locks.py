"""Named locks with an expiry shared by the processes of one node: files in the datadir
(`FileLocks`). A claim names its holder process (host, pid, start time); with `free_dead_holders` a
claim whose process is gone (killed, crashed) is free at once rather than at its expiry, so a proxy
fetch killed mid-blob does not hold up the next pull of that blob for the lock's TTL (without it, a
claim stands until it expires: a lease such as the audit purge's outlives its holder on purpose).
`locks_redis.RedisLocks` shares them with every node (there a dead holder's claim lasts until it
expires); the contract both keep
(`interfaces.LockManager`, `DistributedLock`) is checked by `conformance.LockManagerConformance`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
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

    def __init__(
        self, directory: Path, clock: Callable[[], float] = time.time, free_dead_holders: bool = False
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.free_dead_holders = free_dead_holders

    def lock(self, name: str, ttl: float) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{check_name(name)}.lock"
        return FileLock(path, name, check_ttl(ttl), self.clock, self.free_dead_holders)

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
    def __init__(
        self, path: Path, name: str, ttl: float, clock: Callable[[], float], free_dead_holders: bool = False
    ) -> None:
        self.free_dead_holders = free_dead_holders
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
            held = claim.token and claim.expires > self.clock()
            if held and not (self.free_dead_holders and claim.holder_gone()):
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
    """The lock file's content: who holds it (token, and the holder process), until when (epoch
    seconds)."""

    def __init__(self, fd: int, token: str | None, expires: float, holder: str | None = None) -> None:
        self.fd = fd
        self.token = token
        self.expires = expires
        self.holder = holder  # "host pid starttime" of the process that claimed it

    @classmethod
    def read(cls, fd: int) -> _Claim:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            token, expires, holder = data.get("token"), float(data.get("expires", 0)), data.get("holder")
        except (ValueError, TypeError, AttributeError):
            token, expires, holder = None, 0.0, None  # a torn or foreign file: nobody's claim
        return cls(
            fd,
            token if isinstance(token, str) else None,
            expires,
            holder if isinstance(holder, str) else None,
        )

    def write(self, token: str | None, expires: float) -> None:
        body = {"token": token, "expires": expires, "holder": this_process() if token else None}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(body).encode(), 0)

    def holder_gone(self) -> bool:
        """The claiming process is known to be dead: it was on this host and its pid is free, or now
        another process's (a different start time). Unknown (another host, no /proc): not gone."""
        if self.holder is None:
            return False
        host, _, process = self.holder.partition(" ")
        pid, _, started = process.partition(" ")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        now = _start_time(int(pid))
        if now is None:
            return True
        return "?" not in (now, started) and now != started


def this_process() -> str:
    """This process as a lock's holder: host, pid and start time (pids are reused; the pair is not)."""
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {_start_time(pid) or '?'}"


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        return "?"  # cannot tell: treated as alive unless it is a different start time
    return fields[19].decode() if len(fields) > 19 else "?"
