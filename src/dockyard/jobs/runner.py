"""JobRunner: the threads that claim jobs and run their handlers, on any node.

One dispatcher thread per runner polls the queue (`poll_interval`), claims a job whenever a worker
thread is free, renews the leases of the jobs it runs, fires due schedules and purges old history.
Handlers run on a pool of `threads` worker threads.

A job queued in the runner's process wakes the dispatcher at once; one queued by another process
(an HTTP worker, a CLI command) or node moves the change feed's Topic.JOBS (`JobQueue.queued`), which
the waiting dispatcher looks at every WATCH_SECONDS (a read of shared memory, or of this process's
copy of Redis's counters): such a job starts within about that, not at the next poll. A job queued
to run later and a schedule start when due: the dispatcher waits no longer than until the first.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.base import utcnow
from dockyard.errors import ReadOnly, StorageFull
from dockyard.jobs import claims
from dockyard.jobs.claims import Claimed
from dockyard.jobs.context import RunningJob
from dockyard.jobs.interfaces import JobCancelled, JobKind, JobRecord, JobTimedOut, UnknownJobKind
from dockyard.jobs.queue import JobQueue
from dockyard.jobs.scheduling import fire_due_schedules
from dockyard.observability.metrics import JobMetrics

log = logging.getLogger("dockyard.jobs")
HISTORY_PURGE_SECONDS = 3600.0
FOLLOW_POLL_SECONDS = 0.5
WATCH_SECONDS = 0.1  # how often a waiting dispatcher looks whether another process queued a job
MIN_WAIT_SECONDS = 0.01  # between rounds, when a job comes due sooner
# Seconds after its start that a runner loads what its kinds' first jobs would (JobKind.warm_up): past
# the node's start, whose cores the HTTP workers' imports take; a job before then loads it itself.
WARM_UP_DELAY = 5.0

ProgressCallback = Callable[[JobRecord], None]


class JobRunner:
    def __init__(
        self,
        queue: JobQueue,
        kinds: Sequence[JobKind],
        *,
        node: str,
        threads: int = 2,
        poll_interval: float = 2.0,
        lease: timedelta = timedelta(seconds=60),
        history: timedelta = timedelta(hours=720),
        retry_base: float = 10.0,
        retry_cap: float = 3600.0,
        schedules: bool = True,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.queue = queue
        self.kinds = {kind.name: kind for kind in kinds}
        self.node = node
        self.threads = max(1, threads)
        self.poll_interval = poll_interval
        self.lease = lease
        self.history = history
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.schedules = schedules
        self.metrics = metrics
        self._limits = {kind.name: kind.concurrency for kind in kinds}
        queue.max_attempts.update({kind.name: kind.max_attempts for kind in kinds})
        self._stop = threading.Event()
        self._active: dict[int, RunningJob] = {}
        self._active_lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._last_history_purge: float | None = None  # purged at the first tick
        self._schedules_due = False  # default schedules still to create (start, or after a full disk)
        # When the first job queued to run later or schedule comes due (None: none will); read again
        # after a round something woke, and once it has passed (_until_next_due).
        self._next_due: datetime | None = None
        self._next_due_known = False

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Create the default schedules that are missing, then claim and run jobs in the background."""
        self._schedules_due = self.schedules
        try:
            # Read-only (db.readonly): the dispatcher creates them once the switch is off.
            if not self.queue.db.is_read_only():
                self._ensure_default_schedules()
        except StorageFull:  # the dispatcher tries again each round: a full disk must not stop the runner
            log.warning("job runner: storage is full; default schedules will be created when there is room")
        except ReadOnly:  # turned on between the check and the write: the dispatcher creates them later
            log.info("job runner: read-only; the default schedules are made once writes are back")
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dockyard-job")
        self._dispatcher = threading.Thread(target=self._dispatch_forever, name="dockyard-jobs", daemon=True)
        self._dispatcher.start()
        warm = [kind for kind in self.kinds.values() if kind.warm_up is not None]
        if warm:
            warming = threading.Thread(target=self._warm_up, args=(warm,), name="dockyard-warm", daemon=True)
            warming.start()
        log.info("job runner on %s: %d threads, kinds %s", self.node, self.threads, ", ".join(self.kinds))

    def _warm_up(self, kinds: list[JobKind]) -> None:
        """Load what the kinds' first jobs would (a replication run's HTTP client: ~130 ms of CPU that
        was its first run's), WARM_UP_DELAY after the start, unless the runner stops first."""
        if self._stop.wait(WARM_UP_DELAY):
            return
        for kind in kinds:
            try:
                assert kind.warm_up is not None
                kind.warm_up()
            except Exception:  # its first job loads it then, and fails there if it must
                log.warning("job runner: warming up %s failed", kind.name, exc_info=True)

    def _ensure_default_schedules(self) -> None:
        if not self._schedules_due:
            return
        for kind in self.kinds.values():
            if kind.default_schedule:
                self.queue.ensure_schedule(kind.name, kind.default_schedule, kind.default_params)
            else:
                self.queue.retire_default_schedule(kind.name)
        self._schedules_due = False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; ask running handlers to stop (their jobs go back to the queue) and wait."""
        self._stop.set()
        self.queue.wakeup.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        with self._active_lock:
            running = list(self._active.values())
        for job in running:
            job.lost = True  # check_cancelled() raises; the attempt is handed back below
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for job in running:
            self._hand_back(job)
        if running:
            self.queue.queued()  # the other runners take them now, not at their next poll

    # --- running one job here -----------------------------------------------------------------
    def run_job_here(
        self, job_id: int, timeout: float | None = None, on_progress: ProgressCallback | None = None
    ) -> JobRecord:
        """Run this job in the calling thread if it is still queued; if another worker runs it, follow it
        until it finishes. Returns the finished job; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_seen: tuple[str, int, int | None] | None = None
        while True:
            record = self.queue.get(job_id)
            if record.finished:
                return record
            if record.kind not in self.kinds:
                raise UnknownJobKind(f"job {job_id} is of kind {record.kind!r}, which this runner cannot run")
            if record.status == "queued":
                claimed = claims.claim_job(self.queue.db, job_id, self._limits, self._owner(), self.lease)
                if claimed is not None:
                    self._run(claimed, on_progress=self._local_progress(job_id, on_progress))
                    continue
            else:
                claims.reap_expired(self.queue.db)  # offline, nobody else takes back a dead worker's job
            seen = (record.status, record.progress_done, record.progress_total)
            if on_progress is not None and seen != last_seen:
                on_progress(record)
            last_seen = seen
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {record.status} after {timeout} seconds")
            time.sleep(FOLLOW_POLL_SECONDS)

    def run_pending(self) -> int:
        """Claim and run due jobs in the calling thread until none is left; how many ran (for tests
        and one-shot tools)."""
        count = 0
        while (
            claimed := claims.claim_next(self.queue.db, self._limits, self._owner(), self.lease)
        ) is not None:
            self._run(claimed)
            count += 1
        return count

    def tick(self) -> None:
        """One round of housekeeping: take back dead workers' jobs, fire due schedules, purge history."""
        claims.reap_expired(self.queue.db)
        if self.schedules:
            fire_due_schedules(self.queue.db, self.kinds, self.queue.max_attempts)
        last = self._last_history_purge
        if last is None or time.monotonic() - last >= HISTORY_PURGE_SECONDS:
            self._last_history_purge = time.monotonic()
            purged = self.queue.purge_history(self.history)
            if purged:
                log.info("purged %d finished jobs older than %s", purged, self.history)

    # --- the dispatcher -----------------------------------------------------------------------
    def _dispatch_forever(self) -> None:
        watch = QueuedElsewhere(self.queue.feed) if self.queue.feed is not None else None
        while not self._stop.is_set():
            self.queue.wakeup.clear()
            wait = min(self.poll_interval, self.lease.total_seconds() / 3)
            if watch is not None:
                watch.mark()  # what was queued before this round is the round's to find
            try:
                if self.queue.db.is_read_only():  # db.readonly: no job could record anything
                    if self._wait(watch, self.poll_interval):
                        self._next_due_known = False
                    continue
                self._ensure_default_schedules()
                self.tick()
                self._renew_leases()
                self._claim_while_free()
                if self.metrics:
                    self.metrics.heartbeat.set_to_current_time()
                wait = self._until_next_due(wait)
                self._next_due_known = True
            except StorageFull:  # one line, no traceback, for as long as the disk is full
                log.warning("job runner: storage is full; trying again")
            except ReadOnly:  # turned on during the round (after its check): the next round waits quietly
                log.info("job runner: the registry turned read-only during a round; waiting for writes")
            except Exception:
                log.exception("job runner: a round failed; trying again")
            if self._wait(watch, wait):
                self._next_due_known = False  # something was queued or set: maybe sooner

    def _until_next_due(self, wait: float) -> float:
        """`wait`, or less when a job queued to run later or a schedule comes due sooner: it then
        starts on time, not up to a poll late. Read (two indexed queries) only when something woke
        the round or the time read last has passed: what is queued here or told of wakes it."""
        now = utcnow()
        if not self._next_due_known or (self._next_due is not None and self._next_due <= now):
            self._next_due = claims.next_due_at(self.queue.db, self.kinds, self.schedules)
        if self._next_due is None:
            return wait
        return min(wait, max((self._next_due - now).total_seconds(), MIN_WAIT_SECONDS))

    def _wait(self, watch: QueuedElsewhere | None, seconds: float) -> bool:
        """Until `seconds` have passed (False), or a job was queued here (`queue.wakeup`) or
        elsewhere (True)."""
        if watch is None:
            return self.queue.wakeup.wait(seconds)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.queue.wakeup.wait(min(left, WATCH_SECONDS)) or watch.moved():
                return True
        return False

    def _claim_while_free(self) -> None:
        assert self._pool is not None
        while not self._stop.is_set():
            with self._active_lock:
                if len(self._active) >= self.threads:
                    return
            if not claims.has_due_work(self.queue.db, self.kinds):
                return
            claimed = claims.claim_next(self.queue.db, self._limits, self._owner(), self.lease)
            if claimed is None:
                return
            job = self._context(claimed)
            with self._active_lock:
                self._active[claimed.id] = job
            self._pool.submit(self._run_in_pool, job)

    def _run_in_pool(self, job: RunningJob) -> None:
        try:
            self._execute(job)
        finally:
            with self._active_lock:
                self._active.pop(job.claimed.id, None)
            self.queue.wakeup.set()  # a thread is free: claim the next job now

    def _renew_leases(self) -> None:
        with self._active_lock:
            running = list(self._active.values())
        for job in running:
            job.sync_if_due()

    # --- running a handler --------------------------------------------------------------------
    def _run(self, claimed: Claimed, on_progress: Callable[[int, int | None], None] | None = None) -> None:
        job = self._context(claimed, on_progress)
        with self._active_lock:
            self._active[claimed.id] = job
        try:
            self._execute(job)
        finally:
            with self._active_lock:
                self._active.pop(claimed.id, None)

    def _context(
        self, claimed: Claimed, on_progress: Callable[[int, int | None], None] | None = None
    ) -> RunningJob:
        kind = self.kinds[claimed.kind]
        return RunningJob(
            self.queue.db, claimed, timeout=kind.timeout, lease=self.lease, on_progress=on_progress
        )

    def _execute(self, job: RunningJob) -> None:
        claimed = job.claimed
        kind = self.kinds[claimed.kind]
        started = time.monotonic()
        if self.metrics:
            self.metrics.started.labels(claimed.kind).inc()
            self.metrics.last_claim.set_to_current_time()
            self.metrics.running.labels(claimed.kind).inc()
        outcome: dict[str, Any]
        try:
            job.log(f"attempt {claimed.attempts} of {self._attempts_allowed(claimed)} on {self.node}")
            result = kind.handler(job)
            outcome = {"status": "succeeded", "result": _json_result(result)}
        except JobTimedOut as exc:
            outcome = {"status": "failed", "error": str(exc)}
        except JobCancelled as exc:
            outcome = {"status": "cancelled", "error": str(exc)} if not job.lost else {"status": "lost"}
        except ReadOnly:
            outcome = {"status": "read-only"}
        except Exception as exc:  # the handler failed this attempt
            log.warning(
                "job %d (%s) attempt %d failed", claimed.id, claimed.kind, claimed.attempts, exc_info=True
            )
            outcome = self._failure(claimed, f"{type(exc).__name__}: {exc}")
        finally:
            if self.metrics:
                self.metrics.running.labels(claimed.kind).dec()
        self._record(job, outcome, time.monotonic() - started)

    @staticmethod
    def _wait_for_writes(claimed: Claimed) -> None:
        """The registry went read-only under a running job (db.readonly): nothing can be recorded, so
        nothing is; its lease runs out and it runs again once writes are back. One line, no traceback."""
        log.info("job %d (%s): the registry is read-only; it runs again once writes are back", claimed.id,
                 claimed.kind)  # fmt: skip

    def _attempts_allowed(self, claimed: Claimed) -> int:
        """The job's own limit, and never more than its kind's: a job queued by a process that does not
        run jobs (an HTTP worker) got the default limit, not its kind's (scans: one attempt)."""
        return min(claimed.max_attempts, self.kinds[claimed.kind].max_attempts)

    def _failure(self, claimed: Claimed, error: str) -> dict[str, Any]:
        if claimed.attempts >= self._attempts_allowed(claimed):
            return {"status": "failed", "error": error}
        delay = min(self.retry_base * 2 ** (claimed.attempts - 1), self.retry_cap)
        return {"status": "queued", "error": error, "retry_at": utcnow() + timedelta(seconds=delay)}

    def _record(self, job: RunningJob, outcome: dict[str, Any], seconds: float) -> None:
        status = outcome.pop("status")
        claimed = job.claimed
        if status == "read-only":
            self._wait_for_writes(claimed)
            return
        if status == "lost":
            log.warning("job %d: lease lost to another worker; this attempt's outcome is dropped", claimed.id)
            return
        lines, progress = job.take_pending()
        if status == "queued":
            lines.append(
                (utcnow(), f"failed: {outcome['error']}; retrying at {outcome['retry_at'].isoformat()}")
            )
        elif outcome.get("error"):
            lines.append((utcnow(), f"{status}: {outcome['error']}"))
        try:
            written = claims.finish(
                self.queue.db, claimed, status=status, progress=progress, lines=lines, **outcome
            )
        except ReadOnly:
            self._wait_for_writes(claimed)
            return
        if not written:
            log.warning("job %d: lease lost before it finished; its outcome is dropped", claimed.id)
            return
        log.info("job %d (%s) %s in %.1fs", claimed.id, claimed.kind, status, seconds)
        if self.metrics:
            self.metrics.finished.labels(claimed.kind, status).inc()
            self.metrics.duration.labels(claimed.kind).observe(seconds)

    def _hand_back(self, job: RunningJob) -> None:
        """A job this runner was stopped in the middle of goes back to the queue at once (no backoff)."""
        lines, progress = job.take_pending()
        lines.append((utcnow(), f"worker on {self.node} stopped; queued again"))
        claims.finish(self.queue.db, job.claimed, status="queued", progress=progress, lines=lines)

    def _owner(self) -> str:
        return f"{self.node}/{os.getpid()}/{uuid.uuid4().hex[:12]}"

    def _local_progress(
        self, job_id: int, on_progress: ProgressCallback | None
    ) -> Callable[[int, int | None], None] | None:
        if on_progress is None:
            return None
        base = replace(self.queue.get(job_id), status="running")  # read once: progress may come often

        def report(done: int, total: int | None) -> None:
            on_progress(replace(base, progress_done=done, progress_total=total))

        return report


class QueuedElsewhere:
    """Whether another process queued a job since `mark()`: the feed's Topic.JOBS moved."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.seen = feed.generation(Topic.JOBS)

    def mark(self) -> None:
        self.seen = self.feed.generation(Topic.JOBS)

    def moved(self) -> bool:
        now = self.feed.generation(Topic.JOBS)
        if now == self.seen:
            return False
        again = self.feed.generation(Topic.JOBS)
        self.seen = again
        # A feed that cannot deliver (Redis away) answers a new generation on every read: that says
        # nothing of jobs, and the runner waits its poll interval rather than spin.
        return again == now


def _json_result(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    value = dict(result)
    json.dumps(value)  # a result that cannot be stored fails the attempt, not the write
    return value
