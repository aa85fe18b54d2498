"""Graceful drain: what a node's processes share so that SIGTERM takes it out of the balancer first.

`dockyard serve` (the main process) handles SIGTERM by creating a flag file; every worker process
answers `/readyz` with 503 as soon as it sees the flag, so the balancer sends new requests elsewhere,
while requests already in flight (a 10 GB upload, a long pull) go on. Each worker counts its in-flight
requests in a small memory-mapped file of its own (allocated, never sparse: see dockyard.datadir); the
main process adds them up and stops the workers when the sum reaches zero or `http.drain_timeout` has
passed (cli/server.py).

Files, not pipes or signals to workers: the workers are the server's processes, spawned by it, and a
file is the one thing every one of them can see without the server's help. Everything lives in
`<datadir>/run/drain/`, is per node, and is cleared when `serve` starts.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.datadir import map_file

if TYPE_CHECKING:
    from dockyard.config.settings import Settings

log = logging.getLogger("dockyard.drain")
FLAG = "draining"
_COUNTER_PREFIX = "inflight-"
_SLOT = struct.Struct("<q")
# Probes are not work to wait for: a balancer keeps checking /readyz during the drain.
UNCOUNTED_PATHS = frozenset({"/readyz", "/healthz"})


def drain_directory(settings: Settings) -> Path:
    """Where `serve` and its workers share the drain flag and in-flight counts."""
    return settings.datadir / "run" / "drain"


# This process's id, kept up to date across forks: `add` runs twice per request, and os.getpid() is a
# system call each time.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class DrainState:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._flag = directory / FLAG
        self._counter: mmap.mmap | bytearray | None = None
        self._counter_pid = 0

    # --- main process ----------------------------------------------------------------------------
    def reset(self) -> None:
        """At start: not draining, no counters left by a previous run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._flag.unlink(missing_ok=True)
        for path in self.directory.glob(_COUNTER_PREFIX + "*"):
            path.unlink(missing_ok=True)

    def begin(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._flag.touch()

    def in_flight(self) -> int:
        """Requests in flight in the node's live worker processes (a dead worker's count is void)."""
        total = 0
        for path in self.directory.glob(_COUNTER_PREFIX + "*"):
            pid = path.name.removeprefix(_COUNTER_PREFIX)
            if not pid.isdigit() or not _alive(int(pid)):
                continue
            with contextlib.suppress(OSError, struct.error):
                total += max(0, _SLOT.unpack(path.read_bytes()[: _SLOT.size])[0])
        return total

    # --- worker processes ------------------------------------------------------------------------
    def draining(self) -> bool:
        return self._flag.exists()

    def add(self, delta: int) -> None:
        """Move this process's in-flight count (its file is made on first use, after any fork)."""
        counter = self._counter
        if counter is None or self._counter_pid != _pid:
            counter = self._own_counter()
        value = _SLOT.unpack_from(counter, 0)[0] + delta
        _SLOT.pack_into(counter, 0, value)

    def _own_counter(self) -> mmap.mmap | bytearray:
        pid = _pid
        if self._counter is None or self._counter_pid != pid:
            path = self.directory / f"{_COUNTER_PREFIX}{pid}"
            try:
                self._counter = map_file(path, _SLOT.size, truncate=True)
            except OSError as exc:
                # A full disk must not cost the request: count privately (the drain then cannot
                # wait for this process's requests; the workers' kill timeout still bounds it).
                log.warning(
                    "cannot create %s (%s): this worker's requests are not counted for the drain",
                    path,
                    exc.strerror or exc,
                )
                self._counter = bytearray(_SLOT.size)
            self._counter_pid = pid
        return self._counter


class InFlightMiddleware:
    """Counts the HTTP requests this process is serving (probes excepted), for the drain to wait on.
    One event loop per process: a plain add, no lock."""

    def __init__(self, app: ASGIApp, state: DrainState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNCOUNTED_PATHS:
            await self.app(scope, receive, send)
            return
        self.state.add(1)
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.add(-1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
