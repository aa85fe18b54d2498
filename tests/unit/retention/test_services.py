"""Retention against a real database (SQLite and PostgreSQL): policies, runs, dry runs, history."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from dockyard.db.session import Database
from dockyard.errors import DeleteDisabled, ManifestUnknown
from dockyard.projects.interfaces import ProjectNotFound
from dockyard.registry.models import Manifest, Tag
from dockyard.retention.interfaces import Decision, Outcome, RetentionPolicyNotFound, parse_policy
from dockyard.retention.services import LoggedProgress
from tests.unit.retention.world import KEEP_LAST_3, NOW, World, five_versions

# Parametrized over SQLite and PostgreSQL by tests/unit/retention/conftest.py (or no DB at all).
pytestmark = pytest.mark.db_independent


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def test_keep_the_last_3_deletes_exactly_the_older_tags(world: World) -> None:
    five_versions(world, "team/app")
    five_versions(world, "team/tools/ci")
    world.policies.put("team", KEEP_LAST_3)

    report = world.executor.run("team", dry_run=False)

    for name in ("team/app", "team/tools/ci"):
        assert world.tags(name) == ["v3", "v4", "v5"]
        assert world.registry.get_manifest(name, "v5").digest
        with pytest.raises(ManifestUnknown):
            world.registry.get_manifest(name, "v1")
    assert report.count(Outcome.DELETED) == 4
    deleted = sorted((e.actor, e.action.value, e.resource_name) for e in world.audit.events)
    assert deleted == [
        ("retention", "delete", f"{name}:{tag}")
        for name in ("team/app", "team/tools/ci")
        for tag in ("v1", "v2")
    ]
    assert report.count(Outcome.KEPT) == 6
    kept = {d.tag: d.reason for r in report.repositories for d in r.decisions if d.outcome is Outcome.KEPT}
    assert kept == {
        "v3": "rule 1 (latestPushedK 3)",
        "v4": "rule 1 (latestPushedK 3)",
        "v5": "rule 1 (latestPushedK 3)",
    }


def test_a_dry_run_reports_the_same_and_changes_nothing(world: World) -> None:
    repository_id = five_versions(world, "team/app")
    world.policies.put("team", KEEP_LAST_3)
    before = world.manifests(repository_id)

    dry = world.executor.run("team", dry_run=True)

    assert world.tags("team/app") == ["v1", "v2", "v3", "v4", "v5"]
    assert world.manifests(repository_id) == before
    deleted = [d.tag for r in dry.repositories for d in r.decisions if d.outcome is Outcome.DELETED]
    assert sorted(deleted) == ["v1", "v2"]
    real = world.executor.run("team", dry_run=False)
    assert [r.as_dict() for r in real.repositories] == [r.as_dict() for r in dry.repositories]


def test_tags_are_deleted_not_manifests_and_other_projects_are_untouched(world: World) -> None:
    repository_id = five_versions(world, "team/app")
    five_versions(world, "other/app")
    world.policies.put("team", KEEP_LAST_3)
    before = world.manifests(repository_id)
    world.executor.run("team", dry_run=False)
    assert world.manifests(repository_id) == before  # garbage collection frees the bytes later
    assert world.tags("other/app") == ["v1", "v2", "v3", "v4", "v5"]


def test_untagged_artifacts_go_only_when_a_rule_selects_them_and_referrers_stay(world: World) -> None:
    repository_id = world.repository("team/app")
    old = world.manifest(repository_id, days_ago=9)
    recent = world.manifest(repository_id, days_ago=1)
    image = world.manifest(repository_id, "v1", days_ago=8)
    signature = world.manifest(repository_id, days_ago=7, subject=image)

    world.policies.put("team", parse_policy({"rules": [{"action": "always"}]}))
    world.executor.run("team", dry_run=False)
    assert world.manifests(repository_id) == {old, recent, image, signature}

    untagged = {"action": "nDaysSinceLastPush", "days": 3, "tags": {"match": "**", "untagged": True}}
    world.policies.put("team", parse_policy({"rules": [{"action": "always"}, untagged]}))
    report = world.executor.run("team", dry_run=False)
    assert world.manifests(repository_id) == {recent, image, signature}
    assert [(d.digest, d.outcome) for r in report.repositories for d in r.decisions if d.tag is None] == [
        (recent, Outcome.KEPT),
        (old, Outcome.DELETED),
    ]


def test_recent_pulls_keep_old_images(world: World) -> None:
    repository_id = world.repository("team/app")
    world.manifest(repository_id, "old-but-used", days_ago=300, pulled_days_ago=0.1)
    world.manifest(repository_id, "old-unused", days_ago=200, pulled_days_ago=90)
    world.manifest(repository_id, "never-pulled", days_ago=100)
    world.policies.put("team", parse_policy({"rules": [{"action": "nDaysSinceLastPull", "days": 30}]}))
    world.executor.run("team", dry_run=False)
    assert world.tags("team/app") == ["old-but-used"]


def test_a_tag_moved_after_evaluation_is_left_alone(world: World) -> None:
    repository_id = world.repository("team/app")
    old = world.manifest(repository_id, "latest", days_ago=5)
    new = world.manifest(repository_id, days_ago=0)
    with world.db.write() as connection:
        new_id = connection.scalar(select(Manifest.id).where(Manifest.digest == new))
        connection.execute(update(Tag).where(Tag.name == "latest").values(manifest_id=new_id))
    # The plan said "delete latest (pointing at old)"; it points elsewhere now.
    decision = Decision("latest", old, Outcome.DELETED, "not retained by any rule")
    [carried] = world.executor._carry_out("team/app", [decision], LoggedProgress())
    assert (carried.outcome, carried.reason) == (Outcome.SKIPPED, "changed since it was evaluated")
    assert world.tags("team/app") == ["latest"]


def test_an_empty_or_missing_policy_deletes_nothing(world: World) -> None:
    five_versions(world, "team/app")
    assert world.executor.run("team", dry_run=False).repositories == []
    world.policies.put("team", parse_policy({"rules": []}))
    assert world.executor.run("team", dry_run=False).repositories == []
    assert world.tags("team/app") == ["v1", "v2", "v3", "v4", "v5"]


def test_with_deletes_disabled_a_real_run_fails_before_any_change(db: Database) -> None:
    world = World(db, delete_enabled=False)
    five_versions(world, "team/app")
    world.policies.put("team", KEEP_LAST_3)
    with pytest.raises(DeleteDisabled):
        world.executor.run("team", dry_run=False)
    assert world.tags("team/app") == ["v1", "v2", "v3", "v4", "v5"]
    assert world.executor.run("team", dry_run=True).count(Outcome.DELETED) == 2
    dry, real = world.runs.list("team")  # newest first
    assert (dry["dry_run"], dry["status"]) == (True, "succeeded")
    assert (real["dry_run"], real["status"]) == (False, "failed")
    assert "DeleteDisabled" in real["error"]


def test_policies_are_stored_per_project(world: World) -> None:
    world.projects.ensure("team")
    with pytest.raises(RetentionPolicyNotFound):
        world.policies.get("team")
    with pytest.raises(ProjectNotFound):
        world.policies.put("nobody", KEEP_LAST_3)
    document = {
        "schedule": "0 3 * * *",
        "rules": [{"action": "latestPushedK", "count": 3, "tags": {"match": "v*", "exclude": ["*-rc*"]}}],
    }
    world.policies.put("team", parse_policy(document))
    assert world.policies.get("team") == parse_policy(document)
    world.policies.put("team", KEEP_LAST_3)
    assert world.policies.get("team") == KEEP_LAST_3
    world.policies.delete("team")
    assert world.policies.find("team") is None
    with pytest.raises(RetentionPolicyNotFound):
        world.policies.delete("team")


def test_runs_are_recorded_with_their_reports(world: World) -> None:
    five_versions(world, "team/app")
    world.policies.put("team", KEEP_LAST_3)
    world.executor.run("team", dry_run=True, job_id=41)
    world.executor.run("team", dry_run=False, job_id=42)
    runs = world.runs.list("team")
    assert [(r["job_id"], r["dry_run"], r["status"]) for r in runs] == [
        (42, False, "succeeded"),
        (41, True, "succeeded"),
    ]
    assert runs[0]["summary"]["deleted"] == 2
    assert "report" not in runs[0]
    full = world.runs.get("team", runs[1]["id"])
    assert full is not None
    decisions = full["report"]["repositories"][0]["decisions"]
    assert {d["tag"]: d["outcome"] for d in decisions} == {
        "v1": "deleted",
        "v2": "deleted",
        "v3": "kept",
        "v4": "kept",
        "v5": "kept",
    }
    assert world.runs.get("team", 999_999) is None


def test_schedules_are_claimed_once(world: World) -> None:
    world.projects.ensure("team")
    world.policies.put("team", parse_policy({"rules": [], "schedule": "0 3 * * *"}))
    [(project, cron, last)] = world.policies.scheduled()
    assert (project, cron) == ("team", "0 3 * * *")
    assert world.policies.claim_schedule("team", last, NOW) is True
    assert world.policies.claim_schedule("team", last, NOW) is False  # another node was first
    assert world.policies.scheduled()[0][2] == NOW


def test_immutable_tags_are_kept_and_said_so(world: World) -> None:
    five_versions(world, "team/app")
    world.immutability.add("team", "**", "v1")
    world.policies.put("team", KEEP_LAST_3)

    for dry_run in (True, False):
        report = world.executor.run("team", dry_run=dry_run)
        outcomes = {d.tag: d.outcome for r in report.repositories for d in r.decisions}
        assert outcomes["v1"] is Outcome.KEPT_IMMUTABLE
        assert outcomes["v2"] is Outcome.DELETED
    assert world.tags("team/app") == ["v1", "v3", "v4", "v5"]
    [run, _] = world.runs.list("team", limit=2)
    assert run["summary"]["kept_immutable"] == 1


def test_policy_and_history_go_with_their_project(world: World) -> None:
    world.projects.ensure("gone")
    world.policies.put("gone", KEEP_LAST_3)
    world.executor.run("gone", dry_run=True)
    world.projects.delete("gone")
    world.projects.ensure("gone")  # a new project of the same name starts clean
    assert world.policies.find("gone") is None
    assert world.runs.list("gone") == []


def test_a_dry_run_report_lists_each_repository_and_those_no_rule_covers(world: World) -> None:
    five_versions(world, "team/app")
    five_versions(world, "team/sandbox/try")
    world.immutability.add("team", "**", "v1")
    policy = {"rules": [{"action": "latestPushedK", "count": 3, "repositories": {"exclude": "sandbox/**"}}]}
    world.policies.put("team", parse_policy(policy))

    document = world.executor.run("team", dry_run=True).as_dict()

    [app] = document["repositories"]
    assert (app["repository"], app["kept"], app["deleted"], app["kept_immutable"], app["skipped"]) == (
        "team/app",
        3,
        1,
        1,
        0,
    )
    assert {d["tag"]: d["outcome"] for d in app["decisions"]} == {
        "v1": "kept (immutable)",
        "v2": "deleted",
        "v3": "kept",
        "v4": "kept",
        "v5": "kept",
    }
    assert document["out_of_scope_repositories"] == ["team/sandbox/try"]
    [run] = world.runs.list("team")
    assert run["summary"]["out_of_scope"] == 1
    assert "repositories" not in run["summary"] and "out_of_scope_repositories" not in run["summary"]
    assert world.tags("team/sandbox/try") == ["v1", "v2", "v3", "v4", "v5"]
