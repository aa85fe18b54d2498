"""The garbage collector: mark and sweep against the metadata DB while the registry keeps serving.

1. Manifests (only with `delete_untagged` or `delete_referrers_with_subject`): each repository's
   graph is marked (gc.marking) and the garbage deleted in batches (gc.manifests).
2. Blobs: rows no manifest references and nothing touched within the window are tombstoned in
   batches (gc.blobs), then their storage objects deleted after each batch's commit, then the rows.

Every batch bumps the change feed (with its repository's name) after its commit, so no worker's cache
answers for what is gone;
a batch of untagged manifests bumps only the topic of answers by digest (Topic.UNTAGGED_DELETES), so
the workers' cached lookups by tag, the hot path, survive a collection. See docs/gc.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Protocol, TypeVar

from sqlalchemy.exc import DBAPIError

from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.gc.blobs import BlobSweeper
from dockyard.gc.interfaces import GCOptions, GCProgress, GCReport, QuietProgress
from dockyard.gc.manifests import ManifestSweeper, RepositoryGarbage
from dockyard.gc.marking import ManifestNode, MarkRules
from dockyard.storage.driver.base import StorageDriver

log = logging.getLogger("dockyard.gc")
NICENESS = 10  # GC is background work: serving comes first
ATTEMPTS = 5  # a batch that meets a deadlock (PostgreSQL aborts one side) is tried again
T = TypeVar("T")
# Starts deleting the storage objects of tombstoned blobs: futures of how many deletes failed.
_Deleting = Callable[[list[str]], list[Future[int]]]


class GCMetrics(Protocol):  # observability.metrics.GCMetrics
    def observe(
        self, *, dry_run: bool, manifests: int, blobs: int, bytes_freed: int, seconds: float
    ) -> None: ...


class GarbageCollector:
    def __init__(
        self,
        db: Database,
        driver: StorageDriver,
        feed: ChangeFeed,
        metrics: GCMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._feed = feed
        self._metrics = metrics
        self._clock = clock
        self._blobs = BlobSweeper(db, driver)
        self._manifests = ManifestSweeper(db)

    def run(self, options: GCOptions, progress: GCProgress | None = None) -> GCReport:
        with _background_priority():
            return self._run(options, progress or QuietProgress())

    def _run(self, options: GCOptions, progress: GCProgress) -> GCReport:
        started = time.monotonic()
        cutoff = self._clock() - options.min_age
        report = GCReport(dry_run=options.dry_run, min_age_seconds=options.min_age.total_seconds())
        rules = MarkRules(cutoff, options.delete_untagged, options.delete_referrers_with_subject)
        progress.log(
            f"garbage collection{' (dry run)' if options.dry_run else ''}: collecting what has been "
            f"unreferenced since before {cutoff.isoformat(timespec='seconds')}"
        )
        garbage: list[RepositoryGarbage] = []
        if options.delete_untagged or options.delete_referrers_with_subject:
            garbage = self._manifests.mark(rules)
        tracker = _Tracker(progress, sum(len(g.manifests) for g in garbage) + self._blobs.count(cutoff))
        if options.dry_run:
            self._dry_run(garbage, cutoff, report, tracker)
        else:
            self._sweep_manifests(garbage, rules, options.batch_size, report, tracker)
            with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="gc-delete") as pool:
                deleting = partial(self._blobs.delete_files, pool=pool, parts=options.workers)
                self._sweep_blobs(cutoff, options.batch_size, deleting, report, tracker)
        report.duration_seconds = time.monotonic() - started
        progress.log(_summary(report))
        if self._metrics is not None:
            self._metrics.observe(
                dry_run=report.dry_run,
                manifests=report.manifests_deleted,
                blobs=report.blobs_deleted,
                bytes_freed=report.bytes_freed,
                seconds=report.duration_seconds,
            )
        return report

    def _sweep_manifests(
        self,
        garbage: list[RepositoryGarbage],
        rules: MarkRules,
        batch_size: int,
        report: GCReport,
        tracker: _Tracker,
    ) -> None:
        for repository in garbage:
            nodes = repository.manifests
            for start in range(0, len(nodes), batch_size):
                tracker.check_cancelled()
                batch = nodes[start : start + batch_size]
                repository_id = repository.repository_id
                deleted = _retrying(partial(self._manifests.delete_batch, repository_id, batch, rules))
                if deleted:
                    self._feed.bump(_topic_of(deleted), repository.name)
                for node in deleted:
                    report.note_manifest(f"{repository.name}@{node.digest}", node.size)
                tracker.advance(len(batch))

    def _sweep_blobs(
        self, cutoff: datetime, batch_size: int, deleting: _Deleting, report: GCReport, tracker: _Tracker
    ) -> None:
        self._finish_tombstones(batch_size, deleting, report)
        tracker.grow_to(tracker.done + self._blobs.count(cutoff))  # manifests deleted may have freed more
        # A batch's storage deletes start as soon as it commits (the pool works through batches in
        # order, so it never idles while the next batch's transaction runs); its row delete follows
        # them in the background. At most one batch behind; each future: how many deletes failed.
        pending: Future[int] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-finish") as finisher:
            try:
                for candidates in self._blobs.candidates(cutoff, batch_size):
                    tracker.check_cancelled()
                    doomed = _retrying(
                        partial(self._blobs.tombstone_rows, cutoff, [d for d, _ in candidates])
                    )
                    if doomed:
                        self._feed.bump(Topic.BLOB_DELETES)  # the links went, and the blobs read as absent
                        digests = [d for d, _ in doomed]
                        deletes = deleting(digests)
                        report.storage_delete_failures += _result(pending)
                        pending = finisher.submit(self._forget_after, deletes, digests)
                    for digest, size in doomed:
                        report.note_blob(digest, size)
                    tracker.advance(len(candidates))
            finally:
                # Also when cancelled or failing: tombstoned rows go once their bytes have (what is
                # left is finished by the next run).
                report.storage_delete_failures += _result(pending)

    def _forget_after(self, deletes: list[Future[int]], digests: list[str]) -> int:
        """Wait for tombstoned blobs' storage deletes, then delete their rows; how many deletes failed."""
        failures = _settled(deletes)
        _retrying(partial(self._blobs.forget, digests))
        return failures

    def _finish_tombstones(self, batch_size: int, deleting: _Deleting, report: GCReport) -> None:
        """Blobs an earlier run tombstoned and did not finish (it crashed): their bytes, then their
        rows. Runs are serialised (one `gc` job at a time), so no other collector is deleting them."""
        finished = 0
        while digests := self._blobs.tombstoned(batch_size):
            deletes = deleting(digests)
            report.storage_delete_failures += self._forget_after(deletes, digests)
            finished += len(digests)
        if finished:
            log.info("garbage collection finished deleting %d blobs an interrupted run had begun", finished)

    def _dry_run(
        self, garbage: list[RepositoryGarbage], cutoff: datetime, report: GCReport, tracker: _Tracker
    ) -> None:
        """What a real run would delete, from the same queries, deleting nothing."""
        doomed: set[int] = set()
        for repository in garbage:
            tracker.check_cancelled()
            for node in repository.manifests:
                doomed.add(node.id)
                report.note_manifest(f"{repository.name}@{node.digest}", node.size)
            tracker.advance(len(repository.manifests))
        seen: set[str] = set()
        for candidates in self._blobs.candidates(cutoff, 1000):
            tracker.check_cancelled()
            for digest, size in candidates:
                seen.add(digest)
                report.note_blob(digest, size)
            tracker.advance(len(candidates))
        for digest, size in self._blobs.released_by(cutoff, doomed):
            if digest not in seen:
                report.note_blob(digest, size)


class _Tracker:
    """Progress counted in candidates looked at (manifests, then blobs)."""

    def __init__(self, progress: GCProgress, total: int) -> None:
        self._progress = progress
        self.total = total
        self.done = 0
        progress.progress(0, total)

    def advance(self, amount: int) -> None:
        self.done += amount
        self.total = max(self.total, self.done)
        self._progress.progress(self.done, self.total)

    def grow_to(self, total: int) -> None:
        self.total = max(self.total, total)
        self._progress.progress(self.done, self.total)

    def check_cancelled(self) -> None:
        self._progress.check_cancelled()


@contextlib.contextmanager
def _background_priority() -> Iterator[None]:
    """Run this thread (and the delete threads it starts, which inherit it) at nice +10, so the
    registry's request handling on the same machine gets the CPU first; back afterwards when allowed."""
    thread = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(before + NICENESS, 19))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # only a privileged process may raise its priority again
            os.setpriority(os.PRIO_PROCESS, thread, before)


def _topic_of(deleted: list[ManifestNode]) -> Topic:
    """Deleting only untagged manifests changes answers by digest, not by tag, nor tag lists (the
    repository stays): workers keep their cached tag lookups. A tagged one (a referrer that goes
    with its subject) took its tags with it."""
    return Topic.MANIFESTS if any(node.tagged for node in deleted) else Topic.UNTAGGED_DELETES


def _result(future: Future[int] | None) -> int:
    return 0 if future is None else future.result()


def _settled(futures: list[Future[int]]) -> int:
    """Wait for storage deletes; how many failed."""
    return sum(future.result() for future in futures)


def _retrying(action: Callable[[], T]) -> T:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except DBAPIError as exc:
            # PostgreSQL deadlock (40P01) or serialization failure (40001): the other side went on.
            code = getattr(exc.orig, "sqlstate", None)
            if code not in ("40P01", "40001") or attempt == ATTEMPTS:
                raise
            log.info("garbage collection batch met a concurrent writer (%s); trying again", code)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _summary(report: GCReport) -> str:
    verb = "would delete" if report.dry_run else "deleted"
    return (
        f"{verb} {report.manifests_deleted} manifests and {report.blobs_deleted} blobs, "
        f"{report.bytes_freed} bytes, in {report.duration_seconds:.1f} s"
    )
