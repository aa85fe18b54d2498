"""The first pull of a blob through the cache (dockyard.proxy.fetch), with the real upload path
(build_services: the metadata DB, filesystem storage) and a fake upstream: the client gets each chunk as
it arrives, not after storage wrote it; a slow storage holds the fetch back instead of buffering; a
storage that fails mid-blob, or bytes that do not match their digest, record nothing and fail the client;
a store that fails once the digest was checked records nothing, but its client keeps the whole blob."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from dockyard.coordination.locks import FileLocks
from dockyard.errors import BlobUnknown, DigestInvalid, SizeInvalid
from dockyard.proxy import fetch as fetch_module
from dockyard.proxy.cache import ProxyCache, UpstreamBlob
from dockyard.proxy.interfaces import Outcome, ProxyConfig
from dockyard.services import Services, build_services
from dockyard.upstream.fake import FakeBlobStream, FakeRemoteRegistry
from tests.support.inprocess import in_process_settings

CHUNK = fetch_module.CHUNK_SIZE
CONFIG = ProxyConfig(project="hub", project_id=0, endpoint="up", docker_hub=False, tag_ttl=300)
NAME = "hub/team/app"


class CountingRemote(FakeRemoteRegistry):
    """A fake upstream that counts the chunks it has handed out; with `claimed_size`, it announces that
    length whatever it sends (as an upstream whose connection breaks off early)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.claimed_size: int | None = None

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> FakeBlobStream:
        stream = super().open_blob(repository, digest, offset)
        if self.claimed_size is not None:
            stream.size = self.claimed_size
        inner = stream.chunks
        remote = self

        def chunks(chunk_size: int = CHUNK) -> Iterator[bytes]:
            for chunk in inner(chunk_size):
                remote.sent += 1
                yield chunk

        stream.chunks = chunks  # type: ignore[method-assign]
        return stream


class GatedSession:
    """An upload session whose writes wait for `gate` (a slow disk), or fail with `fail`."""

    def __init__(self, inner: Any, gate: threading.Event, fail: BaseException | None) -> None:
        self._inner = inner
        self._gate = gate
        self._fail = fail
        self.written = 0

    def write(self, data: bytes) -> None:
        assert self._gate.wait(30), "the test never opened the gate"
        if self._fail is not None:
            raise self._fail
        self._inner.write(data)
        self.written += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class GatedUploads:
    def __init__(self, inner: Any, fail: BaseException | None = None) -> None:
        self._inner = inner
        self.gate = threading.Event()
        self.fail = fail
        self.sessions: list[GatedSession] = []

    def begin_append(self, state: Any) -> GatedSession:
        session = GatedSession(self._inner.begin_append(state), self.gate, self.fail)
        self.sessions.append(session)
        return session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Observed:
    """What the cache counted (its `observe`), in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Outcome]] = []

    def __call__(self, kind: str, outcome: Outcome) -> None:
        self.seen.append((kind, outcome))


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(in_process_settings(tmp_path, {"auth": {"enabled": False}}))
    yield built
    built.close()


def cache_with(
    services: Services,
    tmp_path: Path,
    remote: FakeRemoteRegistry,
    uploads: Any,
    observe: Any = None,
) -> ProxyCache:
    return ProxyCache(
        services.db,
        services.registry,
        uploads,
        services.quotas,
        services.feed,
        FileLocks(tmp_path / "locks"),
        lambda name: remote,
        observe=observe,
    )


def upstream_blob(remote: FakeRemoteRegistry, chunks: int) -> tuple[str, bytes]:
    data = b"".join(hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32) for i in range(chunks))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    remote.blobs[("team/app", digest)] = data
    return digest, data


class Reader:
    """The client: one thread taking the blob's chunks as fast as they come, to the end."""

    def __init__(self, fetch: UpstreamBlob) -> None:
        self.fetch = fetch
        self.chunks: list[bytes] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            while batch := self.fetch.take():
                self.chunks.extend(batch)
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()

    def body(self) -> bytes:
        assert self.done.wait(30), "the fetch did not end"
        if self.error is not None:
            raise self.error
        return b"".join(self.chunks)


def wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_the_client_gets_chunks_before_storage_has_written_them(services: Services, tmp_path: Path) -> None:
    remote = CountingRemote()
    digest, data = upstream_blob(remote, 6)
    uploads = GatedUploads(services.blob_uploads)
    cache = cache_with(services, tmp_path, remote, uploads)
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    try:
        # Storage has written nothing yet (its first write waits): the client has the chunks anyway,
        # all but the last, held back until the blob is verified and recorded.
        reader = Reader(fetch)
        wait_for(lambda: len(reader.chunks) == 5)
        assert b"".join(reader.chunks) == data[: 5 * CHUNK]
        assert remote.sent == 6 and uploads.sessions[0].written == 0
        with pytest.raises(BlobUnknown):
            services.registry.blob_size(NAME, digest)
        uploads.gate.set()
        assert reader.body() == data
    finally:
        uploads.gate.set()
        fetch.close()
    assert services.registry.blob_size(NAME, digest) == len(data)  # recorded before the answer ended


def test_a_slow_storage_holds_the_fetch_back_instead_of_buffering(services: Services, tmp_path: Path) -> None:
    remote = CountingRemote()
    total = fetch_module.STORE_CHUNKS + fetch_module.CLIENT_CHUNKS + 12
    digest, data = upstream_blob(remote, total)
    uploads = GatedUploads(services.blob_uploads)
    cache = cache_with(services, tmp_path, remote, uploads)
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    try:
        reader = Reader(fetch)  # a client reading as fast as it can, storage stuck
        wait_for(lambda: remote.sent >= fetch_module.STORE_CHUNKS)
        time.sleep(1)
        # In memory at most: the store queue, the one being written, and the one held back.
        assert remote.sent <= fetch_module.STORE_CHUNKS + 3 < total
        uploads.gate.set()
        assert reader.body() == data
    finally:
        uploads.gate.set()
        fetch.close()


def test_a_storage_failing_mid_blob_fails_the_client_and_records_nothing(
    services: Services, tmp_path: Path
) -> None:
    remote = CountingRemote()
    digest, _ = upstream_blob(remote, 40)
    uploads = GatedUploads(services.blob_uploads, fail=OSError("disk on fire"))
    cache = cache_with(services, tmp_path, remote, uploads)
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    uploads.gate.set()
    with pytest.raises(OSError, match="disk on fire"):
        while fetch.take():
            pass
    fetch.close()
    assert remote.sent < 40  # the fetch stopped: nothing it read could be kept
    with pytest.raises(BlobUnknown):
        services.registry.blob_size(NAME, digest)
    # The lock went with it: the next pull fetches it again (and this time storage works).
    uploads.fail = None
    again = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(again, UpstreamBlob)
    assert Reader(again).body() == remote.blobs[("team/app", digest)]
    again.close()


def test_bytes_that_do_not_match_their_digest_are_never_all_given_nor_recorded(
    services: Services, tmp_path: Path
) -> None:
    remote = CountingRemote()
    digest, data = upstream_blob(remote, 3)
    remote.blobs[("team/app", digest)] = data[:-1] + b"X"
    cache = cache_with(services, tmp_path, remote, services.blob_uploads)
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    received: list[bytes] = []
    with pytest.raises(DigestInvalid):
        while batch := fetch.take():
            received.extend(batch)
    fetch.close()
    assert len(b"".join(received)) < len(data)  # the last chunk was held back
    with pytest.raises(BlobUnknown):
        services.registry.blob_size(NAME, digest)


def test_a_store_failing_after_the_digest_matched_still_gives_the_client_the_whole_blob(
    services: Services, tmp_path: Path
) -> None:
    remote = CountingRemote()
    digest, data = upstream_blob(remote, 5)
    # A real storage failure at the commit, after every byte was written and the digest checked: a
    # file where the blob's directory must be created (landing the bytes there fails).
    encoded = digest.split(":", 1)[1]
    in_the_way = services.settings.storage_root / "blobs" / "sha256" / encoded[:2] / encoded
    in_the_way.parent.mkdir(parents=True, exist_ok=True)
    in_the_way.write_bytes(b"not a directory")
    outcomes = Observed()
    cache = cache_with(services, tmp_path, remote, services.blob_uploads, outcomes)
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    assert Reader(fetch).body() == data  # whole and correct: the answer ended well
    fetch.close()
    assert outcomes.seen == [("blob", Outcome.NOT_STORED)]
    with pytest.raises(BlobUnknown):
        services.registry.blob_size(NAME, digest)
    with services.db.read() as connection:  # no upload left behind either
        assert connection.execute(text("SELECT count(*) FROM uploads")).scalar() == 0
    # Nothing was kept: the next pull fetches it again, and stores it once storage works.
    in_the_way.unlink()
    again = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(again, UpstreamBlob)
    assert Reader(again).body() == data
    again.close()
    assert services.registry.blob_size(NAME, digest) == len(data)
    assert remote.sent == 10


def test_a_blob_cut_short_upstream_never_gives_the_client_all_it_sent(
    services: Services, tmp_path: Path
) -> None:
    remote = CountingRemote()
    digest, data = upstream_blob(remote, 3)
    remote.blobs[("team/app", digest)] = data[: -CHUNK // 2]  # the upstream ends early
    remote.claimed_size = len(data)
    outcomes = Observed()
    cache = cache_with(services, tmp_path, remote, services.blob_uploads, outcomes)
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    received: list[bytes] = []
    with pytest.raises(SizeInvalid):
        while batch := fetch.take():
            received.extend(batch)
    fetch.close()
    assert len(b"".join(received)) < len(data) - CHUNK // 2  # the last chunk it sent was held back
    assert outcomes.seen == [("blob", Outcome.FAILED)]
    with pytest.raises(BlobUnknown):
        services.registry.blob_size(NAME, digest)


def test_a_blob_named_by_sha512_is_checked_against_that_digest(services: Services, tmp_path: Path) -> None:
    remote = CountingRemote()
    _, data = upstream_blob(remote, 3)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    wrong = "sha512:" + hashlib.sha512(data + b"!").hexdigest()
    remote.blobs[("team/app", digest)] = remote.blobs[("team/app", wrong)] = data
    cache = cache_with(services, tmp_path, remote, services.blob_uploads)
    fetch = cache.open_blob(CONFIG, NAME, wrong)
    assert isinstance(fetch, UpstreamBlob)
    with pytest.raises(DigestInvalid):
        Reader(fetch).body()
    fetch.close()
    fetch = cache.open_blob(CONFIG, NAME, digest)
    assert isinstance(fetch, UpstreamBlob)
    assert Reader(fetch).body() == data
    fetch.close()
    assert services.registry.blob_size(NAME, digest) == len(data)
    with pytest.raises(BlobUnknown):
        services.registry.blob_size(NAME, wrong)
