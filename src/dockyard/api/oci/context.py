"""What every /v2 handler needs: the registry, the upload service, the blob store, the blob I/O pool, the
pull recorder, and how to build URLs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread

from dockyard.api.manifest_effects import ManifestEffects
from dockyard.api.oci.point_reads import WRITE_THREADS, PointReads
from dockyard.api.oci.proxying import ProxyEdge
from dockyard.api.oci.streaming import BlobIO
from dockyard.api.oci.upload_limits import UploadLimits
from dockyard.audit.interfaces import AuditRecorder
from dockyard.audit.pull_counts import PullCounter
from dockyard.auth.interfaces import Principal
from dockyard.observability.metrics import Metrics
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.pulls import PullRecorder
from dockyard.registry.services import Registry
from dockyard.signatures.pull_gate import PullGate
from dockyard.storage.blobs import BlobStore
from dockyard.webhooks.interfaces import EventRecorder, PullNotes

T = TypeVar("T")


@dataclass
class OCIContext:
    registry: Registry  # repositories, manifests, tags, blob links
    blob_uploads: BlobUploads  # upload sessions, every step of them (the only door to storage.uploads)
    blobs: BlobStore  # blob bytes: where a GET reads them from
    io: BlobIO
    metrics: Metrics
    base_url: str = ""  # http.host when set: absolute Location headers
    redirect_blobs: bool = False
    # The projects a principal may list (None: all). Set when auth is on; the catalog uses it.
    visible_projects: Callable[[Principal], frozenset[str] | None] | None = None
    audit: AuditRecorder | None = None
    pulls: PullRecorder | None = None  # notes manifest GETs for the artifacts' pull time
    pull_audit: PullCounter | None = None  # counts them for the audit log (None: audit.pulls: off)
    notifications: EventRecorder | None = None  # registry:2 notification events (None: no endpoint)
    pull_notifications: PullNotes | None = None  # pull events, batched in memory (None: none sent)
    upload_limits: UploadLimits | None = None  # concurrent uploads (None: not limited, the default)
    proxy: ProxyEdge | None = None  # proxy projects, the pull-through cache (None: not wired)
    pull_gate: PullGate | None = None  # per-project pull policies (None: none checked)
    # What follows a manifest push or delete: events, signature checks, scans, replication.
    effects: ManifestEffects | None = None

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run a synchronous registry call (DB, storage) in a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args)

    async def point_read(self, fn: Callable[..., T], *args: object) -> T:
        """Run a point read that missed the caches and that the event loop cannot run (one indexed
        row, nothing else to wait for: db.lookups `one_async`'s `in_thread`) on the process's
        point-read threads: a cheaper hand-off than `call`'s."""
        return await _POINT_READS.call(fn, *args)

    async def small_write(self, fn: Callable[..., T], *args: object) -> T:
        """Run one of a push's small writes (a mount, a manifest PUT: one short transaction) on the
        process's small-write threads: a cheaper hand-off than `call`'s; a cancelled request still
        waits for its write to end, as with `call`."""
        return await _SMALL_WRITES.call_through(fn, *args)


_POINT_READS = PointReads()  # the process's: its threads start with its first call
_SMALL_WRITES = PointReads(WRITE_THREADS, "small-write")
