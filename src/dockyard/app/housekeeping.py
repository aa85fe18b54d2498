"""Work one process of the node (or of the cluster, with Redis) does in the background: the locks
that pick it, the hourly audit purge, the sweep of the proxy's idle lock files; and, in each worker,
returning the heap's free pages to the system after work (`trim_heap_forever`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

# The composition without HTTP lives in dockyard.services (the job runner builds it without the web
# stack); these names stay importable from here too.
from dockyard.config.settings import Settings
from dockyard.coordination.interfaces import LockManager
from dockyard.coordination.locks import FileLocks
from dockyard.lifecycle import libc
from dockyard.proxy.cache import LOCK_PREFIX as PROXY_LOCK_PREFIX
from dockyard.services import (
    Services,
)

if TYPE_CHECKING:  # ldap3 loads only where LDAP is configured
    pass

log = logging.getLogger("dockyard.app")


AUDIT_PURGE_SECONDS = 3600


PROXY_LOCK_SWEEP_SECONDS = 600


def build_locks(
    settings: Settings, free_dead_holders: bool = False
) -> tuple[LockManager, Callable[[], None]]:
    """Locks for work one process should do at a time: cluster-wide through Redis when configured,
    else among this node's workers (files in the datadir; `free_dead_holders`: a claim of a process
    that died is free at once, see coordination.locks). With the function that closes them."""
    if settings.redis.url:
        from dockyard.coordination.locks_redis import RedisLocks
        from dockyard.coordination.redis_client import connect

        client = connect(settings.redis.url)
        return RedisLocks(client), client.close
    return FileLocks(settings.datadir / "run" / "locks", free_dead_holders=free_dead_holders), lambda: None


async def purge_audit_forever(services: Services, locks: LockManager) -> None:
    """Drop audit events past the retention period, hourly, in one worker of the cluster (with Redis)
    or of the node: whoever takes the hour's lease first. The lease is not released after the purge
    but runs out just before the next hour's attempts, so the others skip this hour's purge."""
    lease = AUDIT_PURGE_SECONDS - 60
    while True:
        try:
            if await asyncio.to_thread(locks.lock("audit-purge", lease).acquire):
                purged = await asyncio.to_thread(
                    services.audit.purge_older_than, services.settings.audit.retention.delta
                )
                if purged:
                    log.info(
                        "purged %d audit events older than %s", purged, services.settings.audit.retention
                    )
        except Exception:  # Redis unreachable included: skipped this hour, tried again the next
            log.exception("audit purge failed")
        await asyncio.sleep(AUDIT_PURGE_SECONDS)


async def sweep_proxy_locks_forever(locks: FileLocks) -> None:
    """The pull-through cache's fetch locks are files named per blob and manifest: the ones idle for an
    hour go, every ten minutes (in each worker: the sweep is idempotent)."""
    while True:
        await asyncio.sleep(PROXY_LOCK_SWEEP_SECONDS)
        try:
            swept = await asyncio.to_thread(locks.sweep, PROXY_LOCK_PREFIX, 3600)
            if swept:
                log.debug("swept %d idle proxy lock files", swept)
        except Exception:
            log.exception("sweeping the proxy's lock files failed")


HEAP_TRIM_SECONDS = 1.0
HEAP_TRIM_AFTER_CPU = 0.05  # seconds of this process's CPU since the last trim: it did some work


async def trim_heap_forever(
    interval: float = HEAP_TRIM_SECONDS, after_cpu: float = HEAP_TRIM_AFTER_CPU
) -> None:
    """Give the pages of freed memory back to the system, at most once a `interval`, after the worker
    has done some work (`after_cpu` seconds of CPU since the last time; an idle worker never wakes for
    it). glibc returns only the free memory at the top of each arena by itself: request bodies, their
    hashing threads and password checks leave free holes inside the arenas, which stay resident (a
    worker kept 1-8 MiB of them after `python -m bench.memory`'s load, and its peak, the management
    API built while a password is hashed, sat on top of them). `malloc_trim(0)` releases those pages
    (the memory stays in the arena for the next allocations); with a heap of a worker's size it costs
    well under a millisecond, in a thread of the pool. Not glibc (musl, another OS): nothing. One per
    process: an app built while another runs in the same process (tests build many) leaves it to that
    one, as the CPU it counts is the whole process's."""
    try:
        trim = libc().malloc_trim
    except (OSError, AttributeError):
        return
    loop = asyncio.get_running_loop()
    if _trimming and not _trimming[0].is_closed():
        return
    _trimming[:] = [loop]
    try:
        worked_until = time.process_time()
        while True:
            await asyncio.sleep(interval)
            if time.process_time() - worked_until < after_cpu:
                continue
            with contextlib.suppress(OSError):
                await asyncio.to_thread(trim, 0)
            worked_until = time.process_time()
    finally:
        if _trimming and _trimming[0] is loop:
            _trimming.clear()


# The event loop of the process's trimmer (trim_heap_forever), if any: a loop that closed before its
# trimmer's `finally` ran (a test client's) leaves it here, and the next trimmer takes over.
_trimming: list[asyncio.AbstractEventLoop] = []
