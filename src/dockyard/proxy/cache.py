"""The pull-through cache itself: manifests by tag and digest, and blobs streamed from upstream into
storage while they go to the client.

One upstream fetch per manifest and per blob, whatever the number of clients, processes and nodes: a
fetch holds a named lock (`coordination`: files shared by a node's processes, or Redis for a cluster)
that others wait on, then they find the result in the database. The lock's expiry is extended while a
blob streams, so a fetcher that died frees the others within `LOCK_TTL` seconds (at once with the
node's file locks: a claim of a dead process is free).

A blob goes through the normal upload path (an upload session, hashed as it is written, committed
with the digest verified, then recorded and linked, charged to the project's quota), streamed to its
client at the same time: `fetch.BlobFetch`, which holds the last chunk back from the client until the
whole blob's size and digest are checked, so a blob whose bytes do not match its digest, or that the
upstream cut off, records nothing and its client's response fails (short of its length). A commit that
fails after that check records nothing either; its client keeps the whole, correct blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import select

from dockyard.content.digest import looks_like_digest, parse_digest
from dockyard.content.manifest import parse_manifest
from dockyard.coordination.caches import KeyedGenerationCache
from dockyard.coordination.interfaces import (
    ChangeFeed,
    LockManager,
    Topic,
    tag_generation_of,
)
from dockyard.db.base import utcnow
from dockyard.db.dialect import upsert
from dockyard.db.session import Database
from dockyard.endpoints.interfaces import EndpointInvalid, EndpointNotFound
from dockyard.errors import BlobUnknown, ManifestUnknown
from dockyard.projects.quotas import Quotas
from dockyard.proxy.fetch import BlobFetch, release_quietly
from dockyard.proxy.interfaces import (
    Outcome,
    ProxyConfig,
    ProxyUpstreamFailed,
    TagDecision,
    decide_tag,
    stale_allowed,
)
from dockyard.proxy.models import ProxyTagRow
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.interfaces import ManifestRecord
from dockyard.registry.manifest_writes import store_manifest
from dockyard.registry.models import Repository, Tag
from dockyard.registry.repository_writes import ensure_repository
from dockyard.registry.services import Registry
from dockyard.upstream.interfaces import RemoteRegistry, UpstreamError, UpstreamNotFound

log = logging.getLogger("dockyard.proxy")

LOCK_PREFIX = "proxy-"  # the names of the fetch locks (FileLocks.sweep removes the idle ones' files)
LOCK_TTL = 60.0  # seconds a fetch's lock lives unless extended (a blob's fetcher extends it as it goes)
LOCK_POLL = 0.5  # how long a waiter waits on the lock between looks at the database
STALE_BACKOFF = 10.0  # seconds a process serves a tag stale before it asks the failing upstream again
FRESH_CACHE_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Served:
    """A manifest through the cache, how it was answered, and what was asked upstream."""

    record: ManifestRecord
    outcome: Outcome
    upstream: str  # "library/alpine:3.20" on the endpoint
    error: str | None = None  # the upstream's failure, when served stale


@dataclass
class UpstreamBlob:
    """A blob on its way from upstream: `size` when the upstream said it, `take()` gives its next chunks
    (to the client; [] at the end) while it is stored; `close()` when the response ended: a fetch that
    never started records nothing, a running one goes on without the client (fetch.BlobFetch)."""

    size: int | None
    upstream: str
    take: Callable[[], list[bytes]]
    close: Callable[[], None]


class Busy(Enum):
    BUSY = "busy"  # another request is fetching the blob


BUSY = Busy.BUSY

RemoteFor = Callable[[str], RemoteRegistry]  # an endpoint's name -> a client for it (not to be closed)


class ProxyCache:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        blob_uploads: BlobUploads,
        quotas: Quotas,
        feed: ChangeFeed,
        locks: LockManager,
        remote_for: RemoteFor,
        wait_seconds: float = 60.0,
        observe: Callable[[str, Outcome], None] | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.blob_uploads = blob_uploads
        self.quotas = quotas
        self.feed = feed
        self.locks = locks
        self.remote_for = remote_for
        self.wait_seconds = wait_seconds  # how long a manifest request waits for another's fetch
        self.observe = observe or (lambda kind, outcome: None)
        # Tags this process knows are fresh (or served stale, for a short backoff), until then: a pull
        # of a fresh tag reads nothing. A registry write to the repository (Topic.MANIFESTS with its
        # name, or with none) drops its entries; one to a tag (Topic.TAGS), that tag's.
        self._fresh: KeyedGenerationCache[tuple[str, str], ManifestRecord] = KeyedGenerationCache(
            tag_generation_of(feed),
            FRESH_CACHE_BYTES,
            _weight,
            clock=time.monotonic,
        )

    def fresh(self, name: str, reference: str) -> ManifestRecord | None:
        """A manifest served without I/O (for the event loop): by digest when the registry's cache has
        it, by tag when this process knows it is fresh. None: call `manifest` in a thread."""
        if looks_like_digest(reference):
            record = self.registry.cached_manifest(name, reference)
        else:
            record = self._fresh.get((name, reference))
        if record is not None:
            self.observe("manifest", Outcome.HIT)
        return record

    # --- manifests -----------------------------------------------------------------------------------
    def manifest(self, config: ProxyConfig, name: str, reference: str) -> Served:
        upstream_name = config.upstream_repository(name)
        if looks_like_digest(reference):
            parse_digest(reference)
            return self._by_digest(config, name, upstream_name, reference)
        return self._by_tag(config, name, upstream_name, reference)

    def _by_digest(self, config: ProxyConfig, name: str, upstream_name: str, digest: str) -> Served:
        where = f"{upstream_name}@{digest}"
        local = self._local(name, digest)
        if local is not None:  # content-addressed: never asked upstream again
            return self._served(local, Outcome.HIT, where)
        with self._single_flight(f"m.{name}@{digest}") as held:
            local = self._local(name, digest)
            if local is not None:
                return self._served(local, Outcome.HIT, where)
            if not held:
                self._fail("manifest", f"another fetch of {where} did not finish in time")
            try:
                manifest = self._remote(config).get_manifest(upstream_name, digest)
            except UpstreamNotFound:
                self.observe("manifest", Outcome.FAILED)
                raise ManifestUnknown(f"{where} is not on the upstream registry") from None
            except (UpstreamError, EndpointNotFound, EndpointInvalid) as error:
                self._fail("manifest", f"cannot fetch {where} from endpoint {config.endpoint!r}: {error}")
            record = self._record(name, None, manifest.digest, manifest.media_type, manifest.data)
        return self._served(record, Outcome.FETCHED, where)

    def _by_tag(self, config: ProxyConfig, name: str, upstream_name: str, tag: str) -> Served:
        where = f"{upstream_name}:{tag}"
        served = self._fresh_by_tag(config, name, tag, where)
        if served is not None:
            return served
        with self._single_flight(f"m.{name}:{tag}") as held:
            served = self._fresh_by_tag(config, name, tag, where)  # another fetch may have just refreshed it
            if served is not None:
                return served
            local = self._local(name, tag)
            try:
                if not held:
                    raise _Busy(f"another fetch of {where} did not finish in time")
                remote = self._remote(config)
                if local is not None:
                    info = remote.head_manifest(upstream_name, tag)
                    if info.digest == local.digest:
                        self._touch(name, tag, local.digest)
                        self._keep(name, tag, local, config.tag_ttl)
                        return self._served(local, Outcome.REVALIDATED, where)
                manifest = remote.get_manifest(upstream_name, tag)
            except UpstreamNotFound:
                self.observe("manifest", Outcome.FAILED)
                raise ManifestUnknown(f"{where} is not on the upstream registry") from None
            except (UpstreamError, EndpointNotFound, EndpointInvalid, _Busy) as error:
                failure = f"endpoint {config.endpoint!r}: {error}"
                if local is not None and (isinstance(error, _Busy) or stale_allowed(error)):
                    log.warning("proxy: serving %s from the cache (stale): %s", where, failure)
                    self._keep(name, tag, local, min(STALE_BACKOFF, config.tag_ttl))
                    return self._served(local, Outcome.STALE, where, failure)
                self._fail("manifest", f"cannot fetch {where}: {failure}")
            record = self._record(name, tag, manifest.digest, manifest.media_type, manifest.data)
            self._keep(name, tag, record, config.tag_ttl)
        return self._served(record, Outcome.FETCHED, where)

    def _fresh_by_tag(self, config: ProxyConfig, name: str, tag: str, where: str) -> Served | None:
        record = self._fresh.get((name, tag))
        if record is not None:
            return self._served(record, Outcome.HIT, where)
        generation = self._fresh.current_generation((name, tag))
        local, checked_at = self._tag_state(name, tag)
        now = utcnow()
        if local is None or decide_tag(now, checked_at, True, config.tag_ttl) is not TagDecision.FRESH:
            return None
        assert checked_at is not None
        left = config.tag_ttl - (now - checked_at).total_seconds()
        self._fresh.put((name, tag), local, generation, expires_at=time.monotonic() + left)
        return self._served(local, Outcome.HIT, where)

    def _keep(self, name: str, tag: str, record: ManifestRecord, seconds: float) -> None:
        """This process serves the tag without asking for `seconds` (after this request's writes)."""
        if seconds > 0:
            generation = self._fresh.current_generation((name, tag))
            self._fresh.put((name, tag), record, generation, expires_at=time.monotonic() + seconds)

    def _served(
        self, record: ManifestRecord, outcome: Outcome, where: str, error: str | None = None
    ) -> Served:
        self.observe("manifest", outcome)
        return Served(record, outcome, where, error)

    def _fail(self, kind: str, message: str) -> Any:
        self.observe(kind, Outcome.FAILED)
        log.warning("proxy: %s", message)
        raise ProxyUpstreamFailed(message)

    def _local(self, name: str, reference: str) -> ManifestRecord | None:
        try:
            return self.registry.get_manifest(name, reference)
        except ManifestUnknown:
            return None

    def _tag_state(self, name: str, tag: str) -> tuple[ManifestRecord | None, datetime | None]:
        local = self._local(name, tag)
        if local is None:
            return None, None
        query = (
            select(ProxyTagRow.checked_at, ProxyTagRow.upstream_digest)
            .join(Repository, Repository.id == ProxyTagRow.repository_id)
            .where(Repository.name == name, ProxyTagRow.tag == tag)
        )
        with self.db.read() as connection:
            row = connection.execute(query).first()
        # A tag whose recorded upstream digest is not what it points at now (pushed or retagged
        # before the project became a proxy) is checked.
        if row is None or row.upstream_digest != local.digest:
            return local, None
        return local, row.checked_at

    def _touch(self, name: str, tag: str, digest: str) -> None:
        with self.db.write() as connection:
            repository_id = connection.scalar(select(Repository.id).where(Repository.name == name))
            if repository_id is not None:
                _upsert_state(connection, repository_id, tag, digest)

    def _record(
        self, name: str, tag: str | None, digest: str, media_type: str, data: bytes
    ) -> ManifestRecord:
        """The upstream's manifest as an ordinary manifest (and tag) of the repository, with the tag's
        cache state. Its blobs are fetched when pulled: the reference check of a push is not made."""
        parsed = parse_manifest(data, media_type or None)
        with self.db.write() as connection:
            repository = ensure_repository(connection, name)
            manifest_id = store_manifest(connection, self.quotas, repository, digest, data, parsed, None)
            if tag is not None:
                upsert(
                    connection,
                    Tag,
                    {
                        "repository_id": repository.id,
                        "name": tag,
                        "manifest_id": manifest_id,
                        "updated_at": utcnow(),
                    },
                    key=["repository_id", "name"],
                    update=["manifest_id", "updated_at"],
                )
                _upsert_state(connection, repository.id, tag, digest)
        self.feed.bump(Topic.MANIFESTS, name)
        if repository.created:
            self.feed.bump(Topic.REPOSITORIES)  # the catalog changed
        return ManifestRecord(digest, parsed.media_type, data)

    # --- blobs ---------------------------------------------------------------------------------------
    def blob_size(self, config: ProxyConfig, name: str, digest: str) -> int:
        """A HEAD of a blob the cache does not hold: the upstream's answer (nothing is fetched)."""
        upstream_name = config.upstream_repository(name)
        try:
            return self._remote(config).head_blob(upstream_name, digest)
        except UpstreamNotFound:
            raise BlobUnknown(f"{upstream_name}@{digest} is not on the upstream registry") from None
        except (UpstreamError, EndpointNotFound, EndpointInvalid) as error:
            return self._fail(
                "blob", f"cannot ask endpoint {config.endpoint!r} for {upstream_name}@{digest}: {error}"
            )

    def open_blob(self, config: ProxyConfig, name: str, digest: str) -> UpstreamBlob | Busy | None:
        """One attempt, without waiting: None when the blob is (now) in the repository (serve it from
        storage); `BUSY` while another request fetches it (ask again in `LOCK_POLL` seconds, without
        holding a thread: the fetch needs threads to progress); else an open fetch from upstream, this
        request being the one fetcher. So the second client of a blob in flight waits until the first
        one's fetch ends, then is served from storage (or fetches it, if that fetch failed)."""
        upstream_name = config.upstream_repository(name)
        parse_digest(digest)
        if self._has_blob(name, digest):
            self.observe("blob", Outcome.HIT)
            return None
        lock = self.locks.lock(_lock_name(f"b.{digest}"), LOCK_TTL)
        if not lock.acquire():
            return BUSY
        try:
            if self._has_blob(name, digest):
                release_quietly(lock)
                self.observe("blob", Outcome.HIT)
                return None
            stream = self._remote(config).open_blob(upstream_name, digest)
        except UpstreamNotFound:
            release_quietly(lock)
            self.observe("blob", Outcome.FAILED)
            raise BlobUnknown(f"{upstream_name}@{digest} is not on the upstream registry") from None
        except (UpstreamError, EndpointNotFound, EndpointInvalid) as error:
            release_quietly(lock)
            self._fail(
                "blob", f"cannot fetch {upstream_name}@{digest} from endpoint {config.endpoint!r}: {error}"
            )
        except BaseException:
            release_quietly(lock)
            raise
        try:
            where = f"{upstream_name}@{digest}"
            fetch = BlobFetch(self.blob_uploads, lock, LOCK_TTL, stream, name, digest, where, self.observe)
        except BaseException:
            stream.close()
            release_quietly(lock)
            raise
        return UpstreamBlob(stream.size, fetch.where, fetch.take, fetch.close)

    def _has_blob(self, name: str, digest: str) -> bool:
        try:
            self.registry.blob_size(name, digest)
        except BlobUnknown:
            return False
        return True

    # --- helpers -------------------------------------------------------------------------------------
    def _remote(self, config: ProxyConfig) -> RemoteRegistry:
        return self.remote_for(config.endpoint)

    @contextlib.contextmanager
    def _single_flight(self, key: str) -> Iterator[bool]:
        """Hold the fetch lock of `key`, waiting up to `wait_seconds` for another holder; yields
        whether it is held (False: the caller serves what it has, or fails)."""
        lock = self.locks.lock(_lock_name(key), LOCK_TTL)
        held = lock.acquire(self.wait_seconds)
        try:
            yield held
        finally:
            if held:
                release_quietly(lock)


class _Busy(Exception):
    """Another fetch of the same manifest holds its lock past our wait."""


def _upsert_state(connection: Any, repository_id: int, tag: str, digest: str) -> None:
    upsert(
        connection,
        ProxyTagRow,
        {"repository_id": repository_id, "tag": tag, "upstream_digest": digest, "checked_at": utcnow()},
        key=["repository_id", "tag"],
        update=["upstream_digest", "checked_at"],
    )


def _weight(key: tuple[str, str], record: ManifestRecord) -> int:
    return len(key[0]) + len(key[1]) + record.size + 200


def _lock_name(key: str) -> str:
    """Lock names are short and plain: a hash of what is fetched."""
    return LOCK_PREFIX + hashlib.sha256(key.encode()).hexdigest()


