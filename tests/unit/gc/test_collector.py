"""The collector on a real database (SQLite and PostgreSQL) and real filesystem storage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from dockyard.content.digest import digest_of
from dockyard.coordination.interfaces import Topic
from dockyard.db.base import utcnow
from dockyard.gc.interfaces import GCOptions, GCOptionsInvalid
from dockyard.registry.models import RepositoryBlob
from dockyard.storage.models import Blob
from tests.unit.gc.fixtures import Env

# Each test runs on SQLite and on PostgreSQL itself (tests/unit/gc/conftest.py's `db`).
pytestmark = pytest.mark.db_independent


def test_referenced_blobs_stay_and_unreferenced_old_ones_go_with_their_bytes(env: Env) -> None:
    env.push_image("team/app", "v1", [b"layer one", b"layer two"])
    orphan = env.push_blob("team/app", b"pushed, never used")["digest"]
    before = env.feed.generation(Topic.BLOB_DELETES)

    report = env.collect()

    assert report.blobs_deleted == 1 and report.blobs == [orphan]
    assert report.blob_bytes_freed == len(b"pushed, never used")
    assert report.manifests_deleted == 0
    assert orphan not in env.blob_digests() and orphan not in env.stored_digests()
    assert env.stored_digests() == env.blob_digests()  # every kept row has its bytes
    assert env.feed.generation(Topic.BLOB_DELETES) != before  # caches hear about the unlinked blob


def test_content_younger_than_the_window_stays(env: Env) -> None:
    orphan = env.push_blob("team/app", b"uploaded a moment ago")["digest"]

    report = env.collect(ahead=timedelta(0), min_age=timedelta(hours=2))

    assert report.blobs_deleted == 0
    assert orphan in env.blob_digests() and orphan in env.stored_digests()
    # and with the window shrunk to nothing it goes
    assert env.collect(ahead=timedelta(seconds=1), min_age=timedelta(0)).blobs == [orphan]


def test_the_window_counts_from_the_delete_of_the_last_manifest_using_a_blob(env: Env) -> None:
    digest = env.push_image("team/app", None, [b"only layer"])
    env.registry.delete_manifest("team/app", digest)

    # Pushed hours ago by the collector's clock, but unreferenced only since now: kept.
    report = env.collect(ahead=timedelta(minutes=30), min_age=timedelta(hours=1))
    assert report.blobs_deleted == 0
    assert env.collect(ahead=timedelta(hours=2), min_age=timedelta(hours=1)).blobs_deleted == 2


def test_a_fresh_link_protects_an_old_blob(env: Env) -> None:
    old = env.push_blob("team/a", b"shared bytes")["digest"]
    with env.db.write() as connection:  # pushed five hours ago
        connection.execute(update(Blob).values(created_at=utcnow() - timedelta(hours=5)))
        connection.execute(update(RepositoryBlob).values(created_at=utcnow() - timedelta(hours=5)))
    env.registry.mount_blob("team/b", old, "team/a")  # a push of the same bytes elsewhere, now

    assert env.collect(ahead=timedelta(0), min_age=timedelta(hours=1)).blobs_deleted == 0
    env.registry.delete_blob("team/b", old)
    assert env.collect(ahead=timedelta(0), min_age=timedelta(hours=1)).blobs == [old]


def test_layers_shared_across_repositories_stay_while_any_manifest_uses_them(env: Env) -> None:
    a = env.push_image("team/a", "v1", [b"base layer", b"a's own layer"], seed="a")
    env.push_image("team/b", "v1", [b"base layer", b"b's own layer"], seed="b")
    env.registry.delete_manifest("team/a", a)

    report = env.collect(ahead=timedelta(hours=3), min_age=timedelta(0))

    gone = {digest_of(b"a's own layer")}
    assert set(report.blobs) >= gone
    assert digest_of(b"base layer") in env.blob_digests()
    assert digest_of(b"b's own layer") in env.blob_digests()
    assert env.stored_digests() == env.blob_digests()


def test_untagged_manifests_stay_unless_asked(env: Env) -> None:
    env.push_image("team/app", "v1", [b"v1 layer"], seed="1")
    env.push_image("team/app", "v1", [b"v2 layer"], seed="2")  # v1 moves on: the first is untagged
    assert env.collect().manifests_deleted == 0
    assert env.manifest_count() == 2

    report = env.collect(delete_untagged=True)

    assert report.manifests_deleted == 1
    assert env.manifest_count() == 1
    assert digest_of(b"v1 layer") in report.blobs  # its blobs go in the same run
    assert digest_of(b"v1 layer") not in env.stored_digests()
    assert env.registry.get_manifest("team/app", "v1")


def test_an_index_keeps_its_children_and_its_children_go_with_it(env: Env) -> None:
    amd = env.push_image("team/multi", None, [b"amd64 layer"], seed="amd")
    arm = env.push_image("team/multi", None, [b"arm64 layer"], seed="arm")
    index = env.push_index("team/multi", "latest", [amd, arm])

    assert env.collect(delete_untagged=True).manifests_deleted == 0
    assert env.has_manifest("team/multi", amd) and env.has_manifest("team/multi", arm)

    env.registry.delete_manifest("team/multi", "latest")  # the tag only: the index is untagged now
    report = env.collect(delete_untagged=True, min_age=timedelta(0))

    assert report.manifests_deleted == 3
    assert report.manifests[0] == f"team/multi@{index}"  # parents first
    assert env.manifest_count() == 0
    assert env.blob_digests() == set() and env.stored_digests() == set()


def test_untagged_referrers_of_a_kept_subject_stay(env: Env) -> None:
    image = env.push_image("team/app", "v1", [b"signed layer"])
    signature = env.push_image("team/app", None, [b"signature"], seed="sig", subject=image)

    assert env.collect(delete_untagged=True).manifests_deleted == 0
    assert env.has_manifest("team/app", signature)


def test_referrers_go_with_their_subject_only_with_the_option(env: Env) -> None:
    image = env.push_image("team/app", "v1", [b"signed layer"])
    signature = env.push_image("team/app", "sig", [b"signature"], seed="sig", subject=image)  # tagged
    env.registry.delete_manifest("team/app", image)

    assert env.collect(min_age=timedelta(0)).manifests_deleted == 0  # default: orphans stay
    report = env.collect(min_age=timedelta(0), delete_referrers_with_subject=True)

    assert report.manifests == [f"team/app@{signature}"]
    assert not env.has_manifest("team/app", signature)
    assert digest_of(b"signature") in report.blobs


def test_untagged_referrers_of_a_collected_subject_go_with_it(env: Env) -> None:
    image = env.push_image("team/app", None, [b"unsigned soon"])
    sbom = env.push_image("team/app", None, [b"sbom"], seed="sbom", subject=image)

    report = env.collect(delete_untagged=True)

    assert report.manifests == [f"team/app@{image}", f"team/app@{sbom}"]  # subject first
    assert env.manifest_count() == 0


def test_dry_run_deletes_nothing_and_reports_what_a_real_run_deletes(env: Env) -> None:
    env.push_image("team/app", "v1", [b"old", b"shared"], seed="1")
    env.push_image("team/app", "v1", [b"new", b"shared"], seed="2")
    env.push_blob("team/app", b"never used")
    blobs, stored, manifests = env.blob_digests(), env.stored_digests(), env.manifest_count()

    dry = env.collect(dry_run=True, delete_untagged=True)

    assert (env.blob_digests(), env.stored_digests(), env.manifest_count()) == (blobs, stored, manifests)
    real = env.collect(delete_untagged=True)
    assert dry.dry_run and not real.dry_run
    assert (dry.manifests_deleted, dry.blobs_deleted, dry.bytes_freed) == (
        real.manifests_deleted,
        real.blobs_deleted,
        real.bytes_freed,
    )
    assert sorted(dry.blobs) == sorted(real.blobs) and dry.manifests == real.manifests
    assert real.blobs_deleted == 3  # the old layer, the first config, the unused blob


def test_progress_and_cancel_are_reported_between_batches(env: Env) -> None:
    for number in range(5):
        env.push_blob("team/app", f"orphan {number}".encode())
    seen: list[tuple[int, int | None]] = []

    class Watching:
        def log(self, line: str) -> None:
            pass

        def progress(self, done: int, total: int | None = None) -> None:
            seen.append((done, total))

        def check_cancelled(self) -> None:
            if seen and seen[-1][0] >= 4:
                raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        env.collector().run(GCOptions(batch_size=2), Watching())
    assert seen[0] == (0, 5) and seen[-2:] == [(2, 5), (4, 5)]
    assert len(env.blob_digests()) == 1  # two batches went; the rest waits for the next run
    assert env.stored_digests() == env.blob_digests()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_batch_of_a_long_run_is_collected(env: Env, batch_size: int) -> None:
    # Small batches make many windows of candidates (gc.blobs.WINDOW_BATCHES batches' worth of
    # rows each), with kept and collectable blobs mixed in every one.
    for number in range(8):
        env.push_image("team/app", f"v{number}", [f"layer {number}".encode()], seed=str(number))
    orphans = {env.push_blob("team/app", f"orphan {number}".encode())["digest"] for number in range(25)}
    kept = env.blob_digests() - orphans

    dry = env.collect(dry_run=True, batch_size=batch_size)
    report = env.collect(batch_size=batch_size)

    assert set(dry.blobs) == set(report.blobs) == orphans and report.blobs_deleted == 25
    assert env.blob_digests() == kept and env.stored_digests() == kept


def test_options_from_job_params() -> None:
    options = GCOptions.from_params({"dry_run": True, "min_age": "0s", "delete_untagged": True})
    assert options.dry_run and options.delete_untagged and options.min_age == timedelta(0)
    assert GCOptions.from_params({"min_age": "90m"}).min_age == timedelta(minutes=90)
    assert GCOptions.from_params({}).min_age == timedelta(hours=2)
    for bad in ({"min_age": "soon"}, {"min_age": "-1h"}, {"dry_run": "yes"}, {"workers": 0}, {"colour": 1}):
        with pytest.raises(GCOptionsInvalid):
            GCOptions.from_params(bad)


def test_quota_usage_drops_by_what_gc_deletes(env: Env) -> None:
    env.push_image("team/app", "v1", [b"v1 layer" * 100], seed="1")
    env.push_image("team/app", "v1", [b"v2 layer" * 100], seed="2")  # the first is untagged now
    env.push_blob("team/app", b"never used" * 10)
    before = env.quotas.get("team").used_bytes

    report = env.collect(delete_untagged=True)

    assert report.manifests_deleted == 1 and report.blobs_deleted == 3
    assert env.quotas.get("team").used_bytes == before - report.bytes_freed
