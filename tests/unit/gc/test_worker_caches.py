"""What a collection does to the manifest caches of the workers serving meanwhile: an answer about a
manifest it deleted is gone at once, in every worker; lookups by tag it cannot change stay cached."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dockyard.coordination.feeds import LocalChangeFeed
from dockyard.db.base import utcnow
from dockyard.errors import ManifestUnknown
from dockyard.gc.interfaces import GCOptions
from dockyard.gc.services import GarbageCollector
from dockyard.registry.services import Registry
from tests.support.registry import registry_parts
from tests.unit.gc.fixtures import HOURS_LATER, Env


def _worker(env: Env, feed_path: Path) -> Registry:
    """Another worker process's registry: its own caches, the node's shared feed file."""
    return registry_parts(env.db, env.driver, LocalChangeFeed(feed_path)).registry


def _collect(env: Env, feed_path: Path, **options: Any) -> None:
    collector = GarbageCollector(
        env.db, env.driver, LocalChangeFeed(feed_path), clock=lambda: utcnow() + HOURS_LATER
    )
    collector.run(GCOptions(**options))


def test_a_collection_keeps_cached_tag_lookups_and_drops_deleted_digests_in_other_workers(
    env: Env, tmp_path: Path
) -> None:
    feed_path = tmp_path / "run" / "changes"
    LocalChangeFeed(feed_path)  # the server creates it before it forks its workers
    kept = env.push_image("team/app", "v1", [b"kept"], seed="kept")
    untagged = env.push_image("team/app", None, [b"untagged"], seed="untagged")
    worker = _worker(env, feed_path)
    assert worker.get_manifest("team/app", "v1").digest == kept
    assert worker.get_manifest("team/app", untagged).digest == untagged
    assert worker.cached_manifest("team/app", untagged) is not None

    _collect(env, feed_path, delete_untagged=True)

    assert not env.has_manifest("team/app", untagged)  # the collection did delete it
    with pytest.raises(ManifestUnknown):
        worker.get_manifest("team/app", untagged)
    assert worker.cached_manifest("team/app", untagged) is None
    cached = worker.cached_manifest("team/app", "v1")
    assert cached is not None and cached.digest == kept


def test_a_collection_deleting_a_tagged_referrer_drops_its_tag_in_other_workers(
    env: Env, tmp_path: Path
) -> None:
    feed_path = tmp_path / "run" / "changes"
    LocalChangeFeed(feed_path)
    image = env.push_image("team/app", None, [b"image"], seed="image")
    signature = env.push_image("team/app", "sig", [b"signature"], seed="sig", subject=image)
    worker = _worker(env, feed_path)
    assert worker.get_manifest("team/app", "sig").digest == signature

    _collect(env, feed_path, delete_untagged=True, delete_referrers_with_subject=True, min_age=timedelta(0))

    assert worker.cached_manifest("team/app", "sig") is None
    with pytest.raises(ManifestUnknown):
        worker.get_manifest("team/app", "sig")


def test_a_registry_delete_in_one_worker_drops_cached_digests_in_another(env: Env, tmp_path: Path) -> None:
    feed_path = tmp_path / "run" / "changes"
    LocalChangeFeed(feed_path)
    digest = env.push_image("team/app", None, [b"untagged"], seed="untagged")
    reader, deleter = _worker(env, feed_path), _worker(env, feed_path)
    assert reader.get_manifest("team/app", digest).digest == digest

    deleter.delete_manifest("team/app", digest)

    with pytest.raises(ManifestUnknown):
        reader.get_manifest("team/app", digest)
