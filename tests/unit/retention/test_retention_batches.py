"""A real run deletes in batches through `Registry.delete_batch` (SQLite and PostgreSQL): one transaction
and one cache invalidation per batch, quota usage released with the deletes, and what changed since the
plan was read left alone."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from dockyard.coordination.interfaces import Topic
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.quotas import charge
from dockyard.registry.batch_deletes import BatchOutcome, DeleteRequest
from dockyard.registry.models import Manifest, ManifestReference, RepositoryBlob, Tag
from dockyard.retention.interfaces import Outcome, parse_policy
from dockyard.retention.services import DELETE_BATCH
from dockyard.storage.models import Blob
from tests.unit.retention.world import World

# Parametrized over SQLite and PostgreSQL by tests/unit/retention/conftest.py.
pytestmark = pytest.mark.db_independent

KEEP_LAST_1_WITH_UNTAGGED = parse_policy(
    {"rules": [{"action": "latestPushedK", "count": 1, "tags": {"match": "**", "untagged": True}}]}
)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def test_many_deletes_go_in_batches_with_one_cache_invalidation_each(world: World) -> None:
    repository_id = world.repository("team/app")
    many = [f"build-{n:04d}" for n in range(2 * DELETE_BATCH + 1)]
    world.manifest(repository_id, *many, days_ago=2)
    world.manifest(repository_id, "latest", days_ago=1)
    world.policies.put("team", parse_policy({"rules": [{"action": "latestPushedK", "count": 1}]}))
    before = world.feed.generation(Topic.MANIFESTS)

    report = world.executor.run("team", dry_run=False)

    assert report.count(Outcome.DELETED) == len(many)
    assert world.tags("team/app") == ["latest"]
    assert world.feed.generation(Topic.MANIFESTS) - before == 3  # 500 + 500 + 1
    assert sorted(event.resource_name for event in world.audit.events) == [f"team/app:{t}" for t in many]


def test_untagged_deletes_release_quota_usage_and_leave_blobs_to_gc(world: World) -> None:
    repository_id = world.repository("team/app")
    world.manifest(repository_id, "v1", days_ago=1)
    untagged = world.manifest(repository_id, days_ago=5)
    layer = "sha256:" + "ab" * 32
    project_id = world.projects.get("team").id
    with world.db.write() as connection:
        connection.execute(insert(Blob).values(digest=layer, size=1000, created_at=utcnow()))
        connection.execute(
            insert(RepositoryBlob).values(repository_id=repository_id, digest=layer, created_at=utcnow())
        )
        manifest_id = connection.scalar(select(Manifest.id).where(Manifest.digest == untagged))
        connection.execute(
            insert(ManifestReference).values(manifest_id=manifest_id, digest=layer, kind="blob")
        )
        charge(connection, project_id, layer, 1000)
        charge(connection, project_id, untagged, 2, what="manifest")
    assert world.quotas.get("team").used_bytes == 1002
    world.policies.put("team", KEEP_LAST_1_WITH_UNTAGGED)

    report = world.executor.run("team", dry_run=False)

    assert [(d.digest, d.outcome) for r in report.repositories for d in r.decisions if d.tag is None] == [
        (untagged, Outcome.DELETED)
    ]
    assert untagged not in world.manifests(repository_id)
    assert world.quotas.get("team").used_bytes == 1000  # the layer is still linked
    with world.db.read() as connection:
        stamped = connection.scalar(select(Blob.unreferenced_at).where(Blob.digest == layer))
    assert stamped is not None  # garbage collection's window starts now
    [event] = world.audit.events
    assert event.resource_name == f"team/app@{untagged}"


def test_a_batch_leaves_alone_what_changed_since_the_plan(world: World) -> None:
    repository_id = world.repository("team/app")
    moved_from = world.manifest(repository_id, days_ago=9)
    world.manifest(repository_id, "moved", days_ago=8)
    now_tagged = world.manifest(repository_id, days_ago=7)
    now_listed = world.manifest(repository_id, days_ago=6)
    still_untagged = world.manifest(repository_id, days_ago=5)
    index = world.manifest(repository_id, "index", days_ago=4)
    world.manifest(repository_id, "plain", days_ago=3)
    with world.db.write() as connection:
        ids = {digest: id_ for digest, id_ in connection.execute(select(Manifest.digest, Manifest.id))}
        connection.execute(
            insert(Tag).values(
                repository_id=repository_id, name="late", manifest_id=ids[now_tagged], updated_at=utcnow()
            )
        )
        connection.execute(
            insert(ManifestReference).values(manifest_id=ids[index], digest=now_listed, kind="manifest")
        )
    world.immutability.add("team", "**", "plain")
    plain = world.registry.get_manifest("team/app", "plain").digest
    requests = [
        DeleteRequest("moved", moved_from),  # the plan saw "moved" on an older image
        DeleteRequest("plain", plain),
        DeleteRequest("never-was", plain),
        DeleteRequest(None, now_tagged),
        DeleteRequest(None, now_listed),
        DeleteRequest(None, "sha256:" + "00" * 32),
        DeleteRequest(None, still_untagged),
    ]

    results = world.registry.delete_batch("team/app", requests)

    assert [(r.request, r.outcome) for r in results] == list(
        zip(
            requests,
            [
                BatchOutcome.CHANGED,
                BatchOutcome.IMMUTABLE,
                BatchOutcome.GONE,
                BatchOutcome.CHANGED,
                BatchOutcome.CHANGED,
                BatchOutcome.GONE,
                BatchOutcome.DELETED,
            ],
            strict=True,
        )
    )
    assert "immutable" in results[1].detail
    assert world.tags("team/app") == ["index", "late", "moved", "plain"]
    assert world.manifests(repository_id) == set(ids) - {still_untagged}
