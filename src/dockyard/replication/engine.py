"""The copy engine: one policy's artifacts from a source side to a destination side (sides.py).

For each tag the filters select, copy what the destination lacks, children before parents: an index's
child manifests (each with its blobs), then the index; an image's config and layers, then the manifest,
byte for byte, so digests are kept. The destination is asked first (a HEAD of the tag; of each child and
blob), a blob it holds elsewhere is mounted, and only the rest streams across, chunk by chunk; the
receiving side verifies every digest (a local commit; the remote's PUT with `?digest=`). Then the
referrers of each copied manifest (signatures, SBOMs) where the source lists them.

So a run that was killed midway, run again, copies nothing that already arrived. A blob cut off midway
(either side dropped the connection) is continued where it stopped, up to BLOB_ATTEMPTS times in the
run, and a blob a run left unfinished (cut off, cancelled, its worker killed) is continued by the next
run: the destination keeps the upload in the policy's pending uploads (sides.py says how each side
continues one). A cancel is noticed between blobs and every few MiB of a blob
(`Progress.check_cancelled`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, Protocol

from dockyard.content import mediatypes as mt
from dockyard.content.manifest import ParsedManifest, parse_manifest
from dockyard.errors import DockyardError
from dockyard.jobs.interfaces import JobCancelled
from dockyard.replication.filters import artifact_type, config_labels, labels_selected, type_selected
from dockyard.replication.interfaces import (
    ArtifactResult,
    ArtifactStatus,
    BlobSource,
    Counters,
    ManifestData,
    PendingUploads,
    Policy,
    Side,
    literal_names,
)
from dockyard.replication.throttle import THROTTLE_SLICE, Throttle
from dockyard.upstream.interfaces import UpstreamUnavailable

log = logging.getLogger("dockyard.replication")
CANCEL_EVERY = 8 << 20  # bytes of a blob between two looks at the job's cancel flag
MAX_CONFIG = 4 << 20  # bytes of an image config read for its labels
MAX_REFERRER_DEPTH = 4  # signatures of signatures...
CONCURRENCY = 8  # artifacts a run copies at once
BLOB_ATTEMPTS = 4  # tries of one blob in a run: a copy cut off midway continues where it stopped
RETRY_PAUSE = 0.5  # seconds before the second try of a blob; doubled for each one after
MAX_LISTED_TAGS = 10_000  # a remote's tag list stops there (upstream.client): a longer one is not used


class Progress(Protocol):
    def log(self, line: str) -> None: ...

    def progress(self, done: int, total: int | None = None) -> None: ...

    def check_cancelled(self) -> None: ...


class ArtifactFailed(Exception):
    """A manifest the source lists but cannot give (a child of an index, say)."""


Observe = Callable[[str, int], None]  # (what, amount): "blob_copied", "bytes", ...


class MemoryPendingUploads:
    """Pending uploads kept for one run only (tests; services.py keeps them on the policy's row)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, repository: str, digest: str) -> str | None:
        with self._lock:
            return self.entries.get((repository, digest))

    def put(self, repository: str, digest: str, upload: str) -> None:
        with self._lock:
            self.entries[(repository, digest)] = upload

    def drop(self, repository: str, digest: str) -> None:
        with self._lock:
            self.entries.pop((repository, digest), None)


class Replicator:
    def __init__(
        self,
        policy: Policy,
        source: Side,
        destination: Side,
        progress: Progress,
        record: Callable[[ArtifactResult, Counters], None],
        observe: Observe | None = None,
        only: tuple[str, str] | None = None,
        concurrency: int = CONCURRENCY,
        deleted: bool = False,
        pending: PendingUploads | None = None,
    ) -> None:
        self.pending = pending or MemoryPendingUploads()
        self.concurrency = concurrency
        self.deleted = deleted  # with `only`: the tag was deleted on the source (the event trigger)
        self.policy = policy
        self.only = only  # (repository, tag): a run for one pushed tag (the event trigger)
        self.source = source
        self.destination = destination
        self.progress = progress
        self.record = record
        self.observe = observe or (lambda what, amount: None)
        self.counters = Counters()
        self._lock = threading.Lock()
        self.throttle = Throttle(policy.bandwidth) if policy.bandwidth else None
        # Blobs known to be on the destination in this run: (repository, digest); and a repository
        # holding each digest there, to mount from.
        self._present: set[tuple[str, str]] = set()
        self._holder: dict[str, str] = {}
        self._manifests_present: set[tuple[str, str]] = set()
        # The destination's tags of each repository the run copies several tags into (None: unknown).
        self._listable: set[str] = set()
        self._tags: dict[str, frozenset[str] | None] = {}
        self._tags_lock = threading.Lock()

    # --- a run -------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, list[str]]]:
        """The source's repositories the filters select, each with its selected tags."""
        if self.only is not None:
            repository, tag = self.only
            if self.policy.selects_repository(repository) and self.policy.selects_tag(tag):
                return [(repository, [tag])]
            return []
        selected = []
        named = literal_names(self.policy.repositories)  # no catalog needed (Docker Hub has none)
        for repository in named if named is not None else sorted(self.source.repositories()):
            if not self.policy.selects_repository(repository):
                continue
            self.progress.check_cancelled()
            tags = sorted(tag for tag in self.source.tags(repository) if self.policy.selects_tag(tag))
            selected.append((repository, tags))
        return selected

    def run(self) -> Counters:
        """Copy the plan, CONCURRENCY artifacts at a time (each on a thread of its own, recorded as it
        ends); a cancel seen by any of them stops the others at their next look, and is raised."""
        if self.only is not None and self.deleted:
            self._propagate_delete(*self.only)
            return self.counters
        plan = self.plan()
        work = [
            (repository, tag, self.policy.destination(repository))
            for repository, tags in plan
            for tag in tags
        ]
        self.progress.log(
            f"{self.policy.direction.value} {self.source.where} -> {self.destination.where}: "
            f"{len(work)} tags in {len(plan)} repositories"
        )
        self.progress.progress(0, len(work))
        if self.policy.override:  # kept tags are asked one by one: `override` is their only reason
            counts = Counter(target for _, _, target in work)
            self._listable = {target for target, count in counts.items() if count > 1}
        self._copy_all(work)
        if self.policy.propagate_deletes and self.only is None:
            for repository, tags in plan:
                self._propagate_deletes(repository, set(tags), self.policy.destination(repository))
        return self.counters

    def _copy_all(self, work: list[tuple[str, str, str]]) -> None:
        if self.concurrency <= 1 or len(work) <= 1:
            for done, (repository, tag, target) in enumerate(work, 1):
                self.progress.check_cancelled()
                self._finish(self.copy_tag(repository, tag, target))
                self.progress.progress(done, len(work))
            return
        stop = threading.Event()

        def copy(item: tuple[str, str, str]) -> ArtifactResult | None:
            if stop.is_set():
                raise JobCancelled("the run was cancelled")
            try:
                self.progress.check_cancelled()
                return self.copy_tag(*item)
            except JobCancelled:
                stop.set()
                raise

        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="replicate")
        futures = [pool.submit(copy, item) for item in work]
        finished: set[Future[ArtifactResult | None]] = set()
        try:
            for done, future in enumerate(as_completed(futures), 1):
                finished.add(future)
                self._finish(future.result())  # JobCancelled: the others stop at their next look
                self.progress.progress(done, len(work))
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for future in futures:  # what the others finished meanwhile is recorded too
                ended = future not in finished and future.done() and not future.cancelled()
                if ended and future.exception() is None:
                    self._finish(future.result())
            raise
        pool.shutdown(wait=True)

    def _finish(self, result: ArtifactResult | None) -> None:
        if result is None:  # not selected by the artifact filters: no outcome to record
            return
        counters = self.counters
        with self._lock:
            if result.status is ArtifactStatus.COPIED:
                counters.artifacts_copied += 1
            elif result.status is ArtifactStatus.SKIPPED:
                counters.artifacts_skipped += 1
            elif result.status is ArtifactStatus.DELETED:
                counters.artifacts_deleted += 1
            else:
                counters.artifacts_failed += 1
            snapshot = Counters(**counters.as_dict())
        if result.status is ArtifactStatus.FAILED:
            self.progress.log(f"{result.source}: failed: {result.error}")
        self.observe(f"artifact_{result.status.value}", 1)
        self.record(result, snapshot)

    # --- one tag -----------------------------------------------------------------------------------
    def copy_tag(self, repository: str, tag: str, target: str) -> ArtifactResult | None:
        """The tag's outcome; None when the artifact filters do not select it (logged, not recorded)."""
        source_ref, target_ref = f"{repository}:{tag}", f"{target}:{tag}"
        tally = Counters()  # what this artifact copied; added to the run's counters when it ends
        digest: str | None = None
        try:
            manifest = self.source.manifest(repository, tag)
            if manifest is None:
                return ArtifactResult(source_ref, target_ref, None, ArtifactStatus.SKIPPED, error="gone")
            digest = manifest.digest
            if self.policy.artifact_types or self.policy.labels:
                unselected = self._unselected(repository, manifest)
                if unselected is not None:
                    self.progress.log(f"{source_ref}: not selected ({unselected})")
                    return None
            existing = self._destination_digest(target, tag)
            if existing is not None and existing != digest and not self.policy.override:
                return ArtifactResult(
                    source_ref, target_ref, digest, ArtifactStatus.SKIPPED, error=f"kept {existing}"
                )
            if existing != digest:
                self._copy_manifest(repository, target, manifest, tally)
                self.destination.put_manifest(target, tag, manifest)
                tally.manifests_copied += 1
            self._manifests_present.add((target, digest))
            self._copy_referrers(repository, target, digest, 0, tally)
        except JobCancelled:
            self._add(tally)
            raise
        except (DockyardError, ArtifactFailed, OSError) as error:
            self._add(tally)
            message = getattr(error, "message", None) or str(error)
            if isinstance(error, DockyardError) and str(error) and str(error) != message:
                message = str(error)
            return ArtifactResult(source_ref, target_ref, digest, ArtifactStatus.FAILED, error=message[:2000])
        self._add(tally)
        copied = tally.blobs_copied or tally.bytes_copied or tally.manifests_copied
        status = ArtifactStatus.COPIED if copied else ArtifactStatus.SKIPPED
        return ArtifactResult(
            source_ref, target_ref, digest, status, blobs=tally.blobs_copied, bytes=tally.bytes_copied
        )

    def _destination_digest(self, target: str, tag: str) -> str | None:
        """The digest the destination's tag points at (None: no such tag). A tag missing from its
        repository's list (listed once, with `override` only: see run) costs no HEAD of its own."""
        if target in self._listable:
            with self._tags_lock:  # one listing per repository; its other copies wait for it
                if target not in self._tags:
                    self._tags[target] = self._list_tags(target)
            listed = self._tags[target]
            if listed is not None and tag not in listed:
                return None
        return self.destination.manifest_digest(target, tag)

    def _list_tags(self, target: str) -> frozenset[str] | None:
        try:
            tags = self.destination.tags(target)
        except DockyardError:  # a registry that does not list tags: each tag is asked
            return None
        return frozenset(tags) if len(tags) < MAX_LISTED_TAGS else None  # maybe cut short

    def _unselected(self, repository: str, manifest: ManifestData) -> str | None:
        """Why the artifact filters leave the artifact out (filters.py), None when they select it."""
        parsed = parse_manifest(manifest.data, manifest.media_type or None)
        config_type = parsed.config.media_type if parsed.config is not None else None
        kind = artifact_type(parsed.media_type, parsed.artifact_type, config_type)
        if not type_selected(self.policy.artifact_types, kind):
            return f"artifact type {kind}"
        if self.policy.labels and not labels_selected(self.policy.labels, self._labels(repository, parsed)):
            return "labels"
        return None

    def _labels(self, repository: str, parsed: ParsedManifest) -> dict[str, str]:
        """An image's config labels; an index's, those of its first image."""
        if parsed.is_index:
            if not parsed.manifests:
                return {}
            child = self.source.manifest(repository, parsed.manifests[0].digest)
            if child is None:
                return {}
            parsed = parse_manifest(child.data, child.media_type or None)
            if parsed.is_index:
                return {}
        config = parsed.config
        if config is None or config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
            return {}
        if config.size > MAX_CONFIG:
            raise ArtifactFailed(f"the image config {config.digest} is larger than {MAX_CONFIG} bytes")
        found = self.source.open_blob(repository, config.digest)
        try:
            data = b"".join(found.chunks)
        finally:
            found.close()
        return config_labels(data)

    def _add(self, tally: Counters) -> None:
        with self._lock:
            for key, value in tally.as_dict().items():
                if value:
                    setattr(self.counters, key, getattr(self.counters, key) + value)

    def _copy_manifest(self, repository: str, target: str, manifest: ManifestData, tally: Counters) -> None:
        """What `manifest` references, onto the destination (not the manifest itself)."""
        parsed = parse_manifest(manifest.data, manifest.media_type or None)
        for child in parsed.manifests:
            self.progress.check_cancelled()
            if (target, child.digest) in self._manifests_present:
                continue
            if self.destination.manifest_digest(target, child.digest) is None:
                found = self.source.manifest(repository, child.digest)
                if found is None:
                    raise ArtifactFailed(
                        f"{repository}@{child.digest} (a child of the index) is not on the source"
                    )
                self._copy_manifest(repository, target, found, tally)
                self.destination.put_manifest(target, child.digest, found)
                tally.manifests_copied += 1
            self._manifests_present.add((target, child.digest))
        blobs = ([parsed.config] if parsed.config is not None else []) + list(parsed.blobs)
        for blob in blobs:
            self.progress.check_cancelled()
            self._copy_blob(repository, target, blob.digest, blob.size, tally)

    def _copy_blob(self, repository: str, target: str, digest: str, size: int, tally: Counters) -> None:
        if (target, digest) in self._present:
            return
        if self.destination.has_blob(target, digest):
            tally.blobs_skipped += 1
        else:
            holders = [self._holder[digest]] if digest in self._holder else []
            if self.destination.mount_blob(target, digest, holders):
                tally.blobs_mounted += 1
                self.observe("blob_mounted", 1)
            else:
                size = self._send_blob(repository, target, digest, size)
                tally.blobs_copied += 1
                tally.bytes_copied += size
                self.observe("blob_copied", 1)
                self.observe("bytes", size)
        self._present.add((target, digest))
        self._holder.setdefault(digest, target)

    def _send_blob(self, repository: str, target: str, digest: str, size: int) -> int:
        """Stream a blob across; one cut off midway (UpstreamUnavailable: either side dropped the
        connection, or stalled) continues from what the destination holds, BLOB_ATTEMPTS tries in all."""

        def open_source(offset: int) -> BlobSource:
            found = self.source.open_blob(repository, digest, offset)
            return BlobSource(found.start, found.size, self._watched(found.chunks), found.close)

        if size < 0:  # a descriptor without a size: the source's
            found = self.source.open_blob(repository, digest)
            found.close()
            size = found.size or 0
        for attempt in range(1, BLOB_ATTEMPTS + 1):
            try:
                self.destination.push_blob(target, digest, size, open_source, self.pending)
                return size
            except UpstreamUnavailable as error:
                if attempt == BLOB_ATTEMPTS:
                    raise
                self.progress.log(f"{target}@{digest}: cut off ({error.message}); continuing it")
                pause = RETRY_PAUSE * 2 ** (attempt - 1)
                while pause > 0:  # in slices: a cancel is seen within one
                    time.sleep(min(pause, THROTTLE_SLICE))
                    pause -= THROTTLE_SLICE
                    self.progress.check_cancelled()
        raise AssertionError("unreachable")  # the last attempt returned or raised

    def _watched(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks, with a look at the cancel flag every CANCEL_EVERY bytes, held back to the
        policy's bandwidth (shared by the run's concurrent copies)."""
        since = 0
        for chunk in chunks:
            since += len(chunk)
            if since >= CANCEL_EVERY:
                since = 0
                self.progress.check_cancelled()
            if self.throttle is not None:
                wait = self.throttle.take(len(chunk))
                while wait > 0:  # in slices: a cancel is seen within one
                    time.sleep(min(wait, THROTTLE_SLICE))
                    wait -= THROTTLE_SLICE
                    self.progress.check_cancelled()
            yield chunk

    def _copy_referrers(self, repository: str, target: str, digest: str, depth: int, tally: Counters) -> None:
        if depth >= MAX_REFERRER_DEPTH:
            return
        try:
            referrers = self.source.referrers(repository, digest)
        except DockyardError as error:  # a source without the referrers API: nothing to copy
            log.debug("no referrers of %s@%s: %s", repository, digest, error)
            return
        for descriptor in referrers:
            self.progress.check_cancelled()
            child = str(descriptor["digest"])
            if (target, child) not in self._manifests_present:
                if self.destination.manifest_digest(target, child) is None:
                    found = self.source.manifest(repository, child)
                    if found is None:
                        continue
                    self._copy_manifest(repository, target, found, tally)
                    self.destination.put_manifest(target, child, found)
                    tally.manifests_copied += 1
                self._manifests_present.add((target, child))
            self._copy_referrers(repository, target, child, depth + 1, tally)

    # --- deletes -----------------------------------------------------------------------------------
    def _propagate_delete(self, repository: str, tag: str) -> None:
        """One tag deleted on the source: deleted on the destination, unless the source has it again
        (pushed since: that push's own event copies it) or the filters do not select it."""
        if not (self.policy.selects_repository(repository) and self.policy.selects_tag(tag)):
            return
        target = self.policy.destination(repository)
        ref, target_ref = f"{repository}:{tag}", f"{target}:{tag}"
        if self.source.manifest_digest(repository, tag) is not None:
            self._finish(
                ArtifactResult(ref, target_ref, None, ArtifactStatus.SKIPPED, error="on the source again")
            )
            return
        if self.destination.manifest_digest(target, tag) is None:
            self._finish(ArtifactResult(ref, target_ref, None, ArtifactStatus.SKIPPED, error="not there"))
            return
        try:
            self.destination.delete_tag(target, tag)
        except DockyardError as error:
            self._finish(ArtifactResult(ref, target_ref, None, ArtifactStatus.FAILED, error=error.message))
            return
        self._finish(ArtifactResult(ref, target_ref, None, ArtifactStatus.DELETED))

    def _propagate_deletes(self, repository: str, kept: set[str], target: str) -> None:
        """Tags the filters select on the destination that the source no longer has are deleted."""
        for tag in sorted(self.destination.tags(target)):
            if tag in kept or not self.policy.selects_tag(tag):
                continue
            self.progress.check_cancelled()
            ref, target_ref = f"{repository}:{tag}", f"{target}:{tag}"
            try:
                self.destination.delete_tag(target, tag)
            except DockyardError as error:
                self._finish(
                    ArtifactResult(ref, target_ref, None, ArtifactStatus.FAILED, error=error.message)
                )
                continue
            self._finish(ArtifactResult(ref, target_ref, None, ArtifactStatus.DELETED))


def summary(counters: Counters) -> dict[str, Any]:
    return counters.as_dict()
