"""What one blob push costs in S3 requests, on a real SeaweedFS.

The registry is driven through the same calls the OCI upload endpoints make (api/oci/uploads.py):
a monolithic push (POST ?digest= with the body), a chunked push (POST, PATCH, PUT ?digest= without
a body) and one whose last chunk comes with the PUT. A botocore hook counts every S3 call. Each push
must leave the exact bytes at the content address and nothing under the upload paths.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.content.digest import digest_of, parse_digest
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from dockyard.errors import BlobUploadInvalid, BlobUploadUnknown, DigestInvalid, PathNotFound
from dockyard.storage.driver import CheckedDriver, build_driver
from dockyard.storage.driver.s3 import S3Driver
from dockyard.storage.paths import blob_data_path
from dockyard.storage.uploads import UploadState
from tests.support.registry import registry_parts
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs

MiB = 1 << 20


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


class Node:
    """One registry process: its own driver (and S3 client), on the shared database and bucket."""

    def __init__(self, db: Database, store: RunningSeaweedFS, root: str) -> None:
        driver = build_driver(
            "s3",
            bucket=store.bucket,
            region="us-east-1",
            regionendpoint=store.endpoint,
            accesskey=store.access_key,
            secretkey=store.secret_key,
            rootdirectory=root,
        )
        assert isinstance(driver, CheckedDriver) and isinstance(driver.inner, S3Driver)
        self.driver = driver.inner  # to look at the bucket; the registry gets the driver as built
        self.calls: Counter[str] = Counter()
        self.driver.client.meta.events.register("before-call.s3", self._count)
        parts = registry_parts(db, driver, InProcessChangeFeed())
        self.registry, self.blob_uploads, self.uploads = parts.registry, parts.blob_uploads, parts.uploads

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def reset(self) -> None:
        self.calls.clear()

    # --- the OCI endpoints' calls -------------------------------------------------------------
    def start(self, repo: str) -> UploadState:
        return self.blob_uploads.start(repo)

    def append(self, state: UploadState, data: bytes, committing: bool = False) -> UploadState:
        session = self.uploads.begin_append(state)
        for start in range(0, len(data), 64 * 1024):  # as the ASGI server hands the body over
            session.write(data[start : start + 64 * 1024])
        return session.finish(not committing)

    def patch(self, repo: str, upload_id: str, data: bytes) -> UploadState:
        return self.append(self.blob_uploads.get(repo, upload_id), data)

    def put(self, repo: str, upload_id: str, digest: str, data: bytes = b"") -> int:
        state = self.blob_uploads.get(repo, upload_id)
        if data:
            state = self.append(state, data, committing=True)
        return self.blob_uploads.commit(state, digest)

    def monolithic(self, repo: str, data: bytes) -> int:
        state = self.append(self.start(repo), data, committing=True)
        return self.blob_uploads.commit(state, digest_of(data))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    upgrade(engine)
    database = Database(engine)
    yield database
    database.dispose()


@pytest.fixture
def root() -> str:
    return f"/push-requests/{secrets.token_hex(6)}/"


@pytest.fixture
def node(db: Database, seaweedfs: RunningSeaweedFS, root: str) -> Node:
    return Node(db, seaweedfs, root)


def _assert_landed(node: Node, data: bytes) -> None:
    assert node.driver.get_content(blob_data_path(digest_of(data))) == data
    keys = [obj["Key"] for obj in node.driver._keys_below(node.driver._root)]
    leftovers = [key for key in keys if "/uploads/" in key or ".~uploads" in key]
    assert leftovers == []


def _report(label: str, calls: Counter[str]) -> int:
    """Print the push's S3 requests (run with -s to see them); their number."""
    total = sum(calls.values())
    print(f"\n{label}: {total} S3 requests {dict(sorted(calls.items()))}")
    return total


def test_monolithic_push_of_one_mib(node: Node) -> None:
    data = secrets.token_bytes(MiB)
    node.monolithic("library/app", data)
    # Was 12 (sidecar PUT, GET back, temp PUT, HEAD+COPY+DELETE, 4 listings/HEADs of the temp dir...)
    # Now: a GET for a stale sidecar (none), one PutObject at the content address.
    assert _report("monolithic 1 MiB", node.calls) <= 2
    _assert_landed(node, data)


def test_chunked_push_of_one_mib(node: Node) -> None:
    data = secrets.token_bytes(MiB)
    state = node.start("library/app")
    node.patch("library/app", state.id, data)
    node.put("library/app", state.id, digest_of(data))
    # Was 12. The PATCH: GET (stale sidecar?), PUT sidecar; the PUT: GET sidecar, PutObject, DELETE it.
    assert _report("chunked 1 MiB (POST, PATCH, PUT)", node.calls) <= 5
    _assert_landed(node, data)


def test_last_chunk_with_the_put(node: Node) -> None:
    data = secrets.token_bytes(3 * MiB)
    state = node.start("library/app")
    node.patch("library/app", state.id, data[:MiB])
    node.put("library/app", state.id, digest_of(data), data[MiB:])
    assert _report("chunked 3 MiB, last chunk with the PUT", node.calls) <= 5  # was 14
    _assert_landed(node, data)


def test_monolithic_push_of_many_parts(node: Node) -> None:
    data = secrets.token_bytes(23 * MiB)
    node.monolithic("library/app", data)
    # Was 16 with 10 MiB parts. GET, Create, 5 parts of 5 MiB, Complete at the temp key, CopyObject
    # to the address, DELETE the temp object.
    assert _report("monolithic 23 MiB", node.calls) <= 10
    _assert_landed(node, data)


def test_chunked_push_continued_on_another_node(db: Database, seaweedfs: RunningSeaweedFS, root: str) -> None:
    first, second = Node(db, seaweedfs, root), Node(db, seaweedfs, root)
    data = secrets.token_bytes(12 * MiB + 5)
    state = first.start("library/app")
    first.patch("library/app", state.id, data[: 7 * MiB])
    second.patch("library/app", state.id, data[7 * MiB : 9 * MiB])  # no running hash here
    first.put("library/app", state.id, digest_of(data), data[9 * MiB :])
    _assert_landed(first, data)


def test_wrong_digest_leaves_nothing_at_either_address(node: Node) -> None:
    data = secrets.token_bytes(MiB)
    wrong = digest_of(b"something else")
    state = node.append(node.start("library/app"), data, committing=True)
    with pytest.raises(DigestInvalid):
        node.blob_uploads.commit(state, wrong)
    node.uploads.cancel(state.id, state.repository)  # as the endpoint does
    keys = [obj["Key"] for obj in node.driver._keys_below(node.driver._root)]
    assert [key for key in keys if not key.endswith("/")] == []


def test_a_blob_already_stored_is_not_written_again(node: Node) -> None:
    data = secrets.token_bytes(MiB)
    node.monolithic("library/app", data)
    node.reset()
    node.monolithic("library/other", data)
    assert _report("monolithic 1 MiB, blob already stored", node.calls) <= 2  # was 10
    assert node.calls["PutObject"] + node.calls["CompleteMultipartUpload"] + node.calls["CopyObject"] == 0
    _assert_landed(node, data)


def _open_multipart_uploads(node: Node) -> list[Any]:
    listed = node.driver.client.list_multipart_uploads(Bucket=node.driver.bucket, Prefix=node.driver._root)
    return list(listed.get("Uploads", []))


@pytest.mark.parametrize("outcome", ["cancelled", "wrong digest"])
def test_a_held_multipart_upload_is_aborted(node: Node, outcome: str) -> None:
    """The last request's writer is held open for the commit, its parts in no sidecar: a cancel or a
    wrong digest must abort them, leaving no object and no open multipart upload."""
    data = secrets.token_bytes(12 * MiB)
    state = node.append(node.start("library/app"), data, committing=True)
    assert len(_open_multipart_uploads(node)) == 1
    if outcome == "wrong digest":
        with pytest.raises(DigestInvalid):
            node.blob_uploads.commit(state, digest_of(b"other"))
    node.uploads.cancel(state.id, state.repository)
    assert _open_multipart_uploads(node) == []
    keys = [obj["Key"] for obj in node.driver._keys_below(node.driver._root)]
    assert [key for key in keys if not key.endswith("/")] == []


@pytest.mark.parametrize("size", [64 * 1024, 6 * MiB], ids=["tail", "parts"])
def test_a_chunk_another_node_wrote_over_never_lands_under_the_digest(
    db: Database, seaweedfs: RunningSeaweedFS, root: str, size: int
) -> None:
    """Two requests on one upload on two nodes: S3 has no lock, so the second (its view of the upload
    read before the first recorded its chunk) writes its own state over the first's and fails to record.
    The first node's commit then trusted its running hash and landed the other bytes under that digest
    (seen on the old code). The upload row names the state its size was recorded with, so that commit
    now finds the state changed and refuses."""
    one, two = Node(db, seaweedfs, root), Node(db, seaweedfs, root)
    genuine, junk = secrets.token_bytes(size), secrets.token_bytes(size)
    state = one.start("poison/app")
    stale = two.blob_uploads.get("poison/app", state.id)
    one.append(state, genuine)
    session = two.uploads.begin_append(stale)
    session.write(junk)
    with pytest.raises(BlobUploadInvalid):
        session.finish()  # the upload moved on meanwhile: not recorded, but its state is written
    with pytest.raises(BlobUploadInvalid):
        one.put("poison/app", state.id, digest_of(genuine))
    with pytest.raises(PathNotFound):
        one.driver.stat(blob_data_path(digest_of(genuine)))
    with pytest.raises(BlobUploadUnknown):  # dropped: the client starts the blob again
        one.blob_uploads.get("poison/app", state.id)


@pytest.mark.parametrize("size", [64 * 1024, 12 * MiB], ids=["tail", "parts"])
def test_a_commit_cut_off_after_its_bytes_landed_completes_on_another_node(
    db: Database, seaweedfs: RunningSeaweedFS, root: str, size: int
) -> None:
    """A node killed in the middle of a PUT ?digest=, after the bytes reached the content address and
    before the transaction that records them: HAProxy (`retry-on empty-response`) or the client sends the
    same PUT to another node. The upload's own bytes are gone, the blob's are where they belong: the PUT
    completes there. Before, that node answered 404 BLOB_UNKNOWN and skopeo gave up (seen in the HA
    cluster test)."""
    killed, survivor = Node(db, seaweedfs, root), Node(db, seaweedfs, root)
    data = secrets.token_bytes(size)
    state = killed.patch("cut/app", killed.start("cut/app").id, data)
    killed.uploads.verified(state, parse_digest(digest_of(data))).land(
        blob_data_path(digest_of(data))
    )  # ... and the process dies here
    assert survivor.put("cut/app", state.id, digest_of(data)) == size
    _assert_landed(survivor, data)
    assert survivor.registry.blob_size("cut/app", digest_of(data)) == size
    with pytest.raises(BlobUploadUnknown):
        survivor.blob_uploads.get("cut/app", state.id)


def test_a_put_whose_bytes_are_gone_and_not_at_its_digest_is_refused(
    db: Database, seaweedfs: RunningSeaweedFS, root: str
) -> None:
    """Bytes gone (landed under the digest the first PUT named) and a retry naming another digest: nothing
    to link, the client is told to start again."""
    killed, survivor = Node(db, seaweedfs, root), Node(db, seaweedfs, root)
    data = secrets.token_bytes(MiB)
    state = killed.patch("cut/app", killed.start("cut/app").id, data)
    landing = killed.uploads.verified(state, parse_digest(digest_of(data)))
    landing.land(blob_data_path(digest_of(data)))
    with pytest.raises(BlobUploadInvalid):
        survivor.put("cut/app", state.id, digest_of(data[1:] + b"x"))
