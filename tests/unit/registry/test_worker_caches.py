"""What a registry write does to the manifest and blob caches of the node's other workers: the answers
it changed are gone at once (the node's change file is written before the write returns), and the
answers about every other repository stay cached (the feed is keyed by repository); a tag's write
keeps the repository's other tags and its manifests by digest cached too (keyed by tag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.content import mediatypes
from dockyard.content.digest import digest_of
from dockyard.coordination.feeds import LocalChangeFeed
from dockyard.db.session import Database
from dockyard.errors import BlobUnknown, ManifestUnknown
from dockyard.registry.batch_deletes import DeleteRequest
from dockyard.registry.services import Registry
from tests.support.registry import registry_parts
from tests.unit.gc.fixtures import Env


@pytest.fixture
def feed_path(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "changes"
    LocalChangeFeed(path)  # the server creates it before it forks its workers
    return path


@pytest.fixture
def writer(database: Database, tmp_path: Path, feed_path: Path) -> Env:
    """The worker that takes the pushes and deletes."""
    return Env.on(database, tmp_path / "storage", LocalChangeFeed(feed_path))


def _reader(writer: Env, feed_path: Path) -> Registry:
    """Another worker process's registry: its own caches, the node's shared feed file."""
    return registry_parts(writer.db, writer.driver, LocalChangeFeed(feed_path)).registry


def _cached_digest(registry: Registry, name: str, reference: str) -> str | None:
    record = registry.cached_manifest(name, reference)
    return None if record is None else record.digest


def test_a_push_to_one_repository_keeps_the_other_repositories_cached(writer: Env, feed_path: Path) -> None:
    a = writer.push_image("team/a", "latest", [b"a"], seed="a")
    b = writer.push_image("team/b", "latest", [b"b"], seed="b")
    b_layer = digest_of(b"b")
    reader = _reader(writer, feed_path)
    assert reader.get_manifest("team/a", "latest").digest == a
    assert reader.get_manifest("team/b", "latest").digest == b
    assert reader.get_manifest("team/b", b).digest == b
    assert reader.blob_size("team/b", b_layer) == 1
    assert reader.list_tags("team/b", None, None).items == ("latest",)

    writer.push_image("team/a", "v2", [b"a2"], seed="a2")  # a new tag in A: B is untouched
    writer.push_blob("team/a", b"unused")
    writer.registry.delete_blob("team/a", digest_of(b"unused"))

    assert _cached_digest(reader, "team/b", "latest") == b  # without a read of the database
    assert _cached_digest(reader, "team/b", b) == b
    assert reader.cached_blob_size("team/b", b_layer) == 1
    assert reader.cached_listing(("tags", "team/b", None, None)) is not None
    assert reader.cached_listing(("tags", "team/a", None, None)) is None  # A's tag list is read again
    assert reader.list_tags("team/a", None, None).items == ("latest", "v2")


def test_a_tag_moved_in_one_worker_is_seen_at_once_by_another(writer: Env, feed_path: Path) -> None:
    old = writer.push_image("team/a", "latest", [b"old"], seed="old")
    other = writer.push_image("team/b", "latest", [b"b"], seed="b")
    reader = _reader(writer, feed_path)
    assert reader.get_manifest("team/a", "latest").digest == old
    assert reader.get_manifest("team/b", "latest").digest == other
    assert reader.list_tags("team/a", None, None).items == ("latest",)

    new = writer.push_image("team/a", "latest", [b"new"], seed="new")  # re-pointed
    assert reader.cached_manifest("team/a", "latest") is None
    assert reader.get_manifest("team/a", "latest").digest == new

    writer.push_image("team/a", "v2", [b"v2"], seed="v2")
    assert reader.list_tags("team/a", None, None).items == ("latest", "v2")

    writer.registry.delete_manifest("team/a", "latest")  # deleted
    assert reader.cached_manifest("team/a", "latest") is None
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/a", "latest")
    writer.registry.delete_manifest("team/a", new)
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/a", new)
    assert _cached_digest(reader, "team/b", "latest") == other


def test_a_blob_unlinked_in_one_worker_is_unknown_at_once_in_another(writer: Env, feed_path: Path) -> None:
    layer = writer.push_blob("team/a", b"layer")["digest"]
    writer.push_blob("team/b", b"layer")
    reader = _reader(writer, feed_path)
    assert reader.blob_size("team/a", layer) == 5
    assert reader.blob_size("team/b", layer) == 5

    writer.registry.delete_blob("team/a", layer)

    with pytest.raises(BlobUnknown):
        reader.blob_size("team/a", layer)
    assert reader.cached_blob_size("team/b", layer) == 5


def test_a_batch_delete_drops_the_repository_in_another_worker(writer: Env, feed_path: Path) -> None:
    digest = writer.push_image("team/a", "latest", [b"a"], seed="a")
    reader = _reader(writer, feed_path)
    assert reader.get_manifest("team/a", "latest").digest == digest
    results = writer.registry.delete_batch("team/a", [DeleteRequest(tag="latest", digest=digest)])
    assert [result.outcome.name for result in results] == ["DELETED"]
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/a", "latest")


def test_a_catalog_page_follows_a_new_repository(writer: Env, feed_path: Path) -> None:
    writer.push_image("team/a", "latest", [b"a"], seed="a")
    reader = _reader(writer, feed_path)
    assert reader.catalog(None, None).items == ("team/a",)
    body = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}).encode()
    writer.registry.put_manifest("team/c", "latest", body, mediatypes.OCI_INDEX)
    assert reader.cached_listing(("catalog", None, None, None)) is None
    assert reader.catalog(None, None).items == ("team/a", "team/c")


def _hits(registry: Registry, cache: str) -> int:
    """How many gets the cache answered (what /metrics reports as its hits)."""
    return registry.caches()[cache].hits


def test_a_tag_push_keeps_the_repositorys_other_answers_cached(writer: Env, feed_path: Path) -> None:
    latest = writer.push_image("team/a", "latest", [b"a"], seed="a")
    old = writer.push_image("team/a", "v1", [b"v1"], seed="v1")
    reader = _reader(writer, feed_path)
    for reference in ("latest", "v1", latest, old):
        reader.get_manifest("team/a", reference)
    reader.list_tags("team/a", None, None)
    reader.catalog(None, None)

    new = writer.push_image("team/a", "v1", [b"v1 again"], seed="v1 again")  # v1 moves

    assert reader.cached_manifest("team/a", "v1") is None  # the moved tag is read again
    assert reader.get_manifest("team/a", "v1").digest == new
    assert reader.cached_listing(("tags", "team/a", None, None)) is None
    hits = _hits(reader, "manifests_by_tag"), _hits(reader, "manifests_by_digest"), _hits(reader, "catalog")
    assert _cached_digest(reader, "team/a", "latest") == latest  # the other tag: no database read
    assert _cached_digest(reader, "team/a", old) == old  # by digest: no database read
    assert reader.cached_listing(("catalog", None, None, None)) is not None  # no new repository
    after = _hits(reader, "manifests_by_tag"), _hits(reader, "manifests_by_digest"), _hits(reader, "catalog")
    assert after == (hits[0] + 1, hits[1] + 1, hits[2] + 1)


def test_a_push_by_digest_drops_nothing(writer: Env, feed_path: Path) -> None:
    latest = writer.push_image("team/a", "latest", [b"a"], seed="a")
    reader = _reader(writer, feed_path)
    reader.get_manifest("team/a", "latest")
    reader.get_manifest("team/a", latest)
    reader.list_tags("team/a", None, None)
    reader.catalog(None, None)

    untagged = writer.push_image("team/a", None, [b"untagged"], seed="untagged")

    assert _cached_digest(reader, "team/a", "latest") == latest
    assert _cached_digest(reader, "team/a", latest) == latest
    assert reader.cached_listing(("tags", "team/a", None, None)) is not None
    assert reader.cached_listing(("catalog", None, None, None)) is not None
    assert reader.get_manifest("team/a", untagged).digest == untagged  # never cached: read


def test_a_tag_delete_drops_that_tag_and_a_digest_delete_its_tags(writer: Env, feed_path: Path) -> None:
    shared = writer.push_image("team/a", "latest", [b"a"], seed="a")
    assert writer.push_image("team/a", "stable", [b"a"], seed="a") == shared  # two tags, one manifest
    other = writer.push_image("team/a", "other", [b"other"], seed="other")
    reader = _reader(writer, feed_path)
    for reference in ("latest", "stable", "other", shared, other):
        reader.get_manifest("team/a", reference)

    writer.registry.delete_manifest("team/a", "stable")  # a tag
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/a", "stable")
    assert _cached_digest(reader, "team/a", "latest") == shared
    assert reader.list_tags("team/a", None, None).items == ("latest", "other")

    writer.registry.delete_manifest("team/a", shared)  # a manifest: its tags go with it
    assert reader.cached_manifest("team/a", "latest") is None
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/a", "latest")
    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/a", shared)
    assert reader.list_tags("team/a", None, None).items == ("other",)
    assert reader.get_manifest("team/a", "other").digest == other


def test_only_a_new_repository_drops_the_catalog(writer: Env, feed_path: Path) -> None:
    writer.push_image("team/a", "latest", [b"a"], seed="a")
    reader = _reader(writer, feed_path)
    assert reader.catalog(None, None).items == ("team/a",)
    writer.push_image("team/a", "v2", [b"a2"], seed="a2")
    writer.registry.delete_manifest("team/a", "v2")
    assert reader.cached_listing(("catalog", None, None, None)) is not None

    layer = digest_of(b"a")
    assert writer.registry.mount_blob("team/mounted", layer, "team/a") == 1  # creates team/mounted
    assert reader.cached_listing(("catalog", None, None, None)) is None
    assert reader.catalog(None, None).items == ("team/a", "team/mounted")
    writer.push_blob("team/uploaded", b"a")  # an upload creating a repository
    assert reader.catalog(None, None).items == ("team/a", "team/mounted", "team/uploaded")
