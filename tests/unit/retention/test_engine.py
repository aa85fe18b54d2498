"""The rule matrix on the pure engine: which tags each policy keeps, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dockyard.retention.engine import NOT_RETAINED, Artifact, plan_repository
from dockyard.retention.interfaces import Outcome, Policy, RetentionPolicyInvalid, parse_policy

# Parametrized over SQLite and PostgreSQL by tests/unit/retention/conftest.py (or no DB at all).
pytestmark = pytest.mark.db_independent

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def artifact(
    n: int, *tags: str, pushed: float, pulled: float | None = None, dependent: bool = False
) -> Artifact:
    """Artifact n, pushed `pushed` days ago, pulled `pulled` days ago (None: never)."""
    return Artifact(
        id=n,
        digest=f"sha256:{n:064x}",
        tags=tags,
        pushed_at=days_ago(pushed),
        pulled_at=None if pulled is None else days_ago(pulled),
        dependent=dependent,
    )


def policy(*rules: dict[str, Any]) -> Policy:
    return parse_policy({"rules": list(rules)})


def kept_and_deleted(pol: Policy, artifacts: list[Artifact], repository: str = "app") -> tuple[set, set]:
    decisions = plan_repository(pol, repository, artifacts, NOW)
    assert decisions is not None
    kept = {d.tag or d.digest for d in decisions if d.outcome is Outcome.KEPT}
    deleted = {d.tag or d.digest for d in decisions if d.outcome is Outcome.DELETED}
    return kept, deleted


# Five versions pushed a day apart: v5 newest. v2 and v4 were pulled (v2 most recently).
VERSIONS = [
    artifact(1, "v1", pushed=5),
    artifact(2, "v2", pushed=4, pulled=0.5),
    artifact(3, "v3", pushed=3),
    artifact(4, "v4", pushed=2, pulled=1.5),
    artifact(5, "v5", pushed=1),
]


@pytest.mark.parametrize(
    ("rule", "kept"),
    [
        ({"action": "latestPushedK", "count": 3}, {"v3", "v4", "v5"}),
        ({"action": "latestPushedK", "count": 1}, {"v5"}),
        ({"action": "latestPushedK", "count": 10}, {"v1", "v2", "v3", "v4", "v5"}),
        ({"action": "latestPulledN", "count": 1}, {"v2"}),
        ({"action": "latestPulledN", "count": 2}, {"v2", "v4"}),
        # Never pulled come after every pulled one, newest push first.
        ({"action": "latestPulledN", "count": 3}, {"v2", "v4", "v5"}),
        ({"action": "nDaysSinceLastPush", "days": 3}, {"v3", "v4", "v5"}),
        ({"action": "nDaysSinceLastPush", "days": 1}, {"v5"}),
        ({"action": "nDaysSinceLastPull", "days": 1}, {"v2"}),
        ({"action": "nDaysSinceLastPull", "days": 2}, {"v2", "v4"}),
        ({"action": "nDaysSinceLastPull", "days": 30}, {"v2", "v4"}),  # never pulled is never recent
        ({"action": "always"}, {"v1", "v2", "v3", "v4", "v5"}),
    ],
)
def test_each_action(rule: dict[str, Any], kept: set[str]) -> None:
    got_kept, got_deleted = kept_and_deleted(policy(rule), VERSIONS)
    assert got_kept == kept
    assert got_deleted == {"v1", "v2", "v3", "v4", "v5"} - kept


def test_the_reason_names_the_rule_that_kept_it() -> None:
    pol = policy({"action": "always", "tags": {"match": "v5"}}, {"action": "latestPushedK", "count": 2})
    decisions = plan_repository(pol, "app", VERSIONS, NOW)
    assert decisions is not None
    reasons = {d.tag: d.reason for d in decisions}
    assert reasons == {
        "v5": "rule 1 (always)",
        "v4": "rule 2 (latestPushedK 2)",
        "v3": NOT_RETAINED,
        "v2": NOT_RETAINED,
        "v1": NOT_RETAINED,
    }


# dev builds are the newest two; "latest" shares an artifact with v5.
TAGGED = [
    artifact(1, "v3", pushed=9),
    artifact(2, "v4", pushed=8),
    artifact(3, "v5", "latest", pushed=7),
    artifact(4, "dev-1", pushed=2),
    artifact(5, "dev-2", pushed=1),
]
ALL_TAGS = {"v3", "v4", "v5", "latest", "dev-1", "dev-2"}


@pytest.mark.parametrize(
    ("tags", "kept"),
    [
        # Tags no rule selects are not candidates, so nothing retains them: in a covered repository they go.
        ({"match": "v*"}, {"v4", "v5", "latest"}),
        ({"match": "{v*,latest}"}, {"v4", "v5", "latest"}),
        ({"match": ["v*", "latest"]}, {"v4", "v5", "latest"}),
        ({"match": "**", "exclude": "dev-*"}, {"v4", "v5", "latest"}),
        ({"match": "dev-*"}, {"dev-1", "dev-2"}),
        # An artifact is a candidate when ANY of its tags is selected: v5 still brings in "latest".
        ({"match": "**", "exclude": "latest"}, {"dev-1", "dev-2"}),
        ({"match": "v5"}, {"v5", "latest"}),
        ({"match": "**", "exclude": ["v*", "dev-*"]}, {"v5", "latest"}),
        ({"match": "nothing-matches"}, set()),
    ],
)
def test_tag_patterns_with_excludes(tags: dict[str, Any], kept: set[str]) -> None:
    got_kept, got_deleted = kept_and_deleted(
        policy({"action": "latestPushedK", "count": 2, "tags": tags}), TAGGED
    )
    assert got_kept == kept
    assert got_deleted == ALL_TAGS - kept


def test_a_retained_artifact_keeps_every_tag_even_one_no_rule_selects() -> None:
    # "latest" points at v5's artifact: v5 is retained, so "latest" stays; "latest" alone never
    # retains anything (the rule only looks at v* tags), so v3's artifact loses "stable" too.
    artifacts = [
        artifact(1, "v3", "stable", pushed=3),
        artifact(2, "v4", pushed=2),
        artifact(3, "v5", "latest", pushed=1),
    ]
    kept, deleted = kept_and_deleted(
        policy({"action": "latestPushedK", "count": 1, "tags": {"match": "v*"}}), artifacts
    )
    assert kept == {"v5", "latest"}
    assert deleted == {"v3", "stable", "v4"}


def test_rules_are_ored() -> None:
    pol = policy(
        {"action": "latestPushedK", "count": 1},  # v5
        {"action": "nDaysSinceLastPull", "days": 1},  # v2
        {"action": "always", "tags": {"match": "v1"}},  # v1
    )
    kept, deleted = kept_and_deleted(pol, VERSIONS)
    assert kept == {"v1", "v2", "v5"}
    assert deleted == {"v3", "v4"}


def test_the_rule_order_only_changes_the_reason() -> None:
    first = policy({"action": "always"}, {"action": "latestPushedK", "count": 1})
    second = policy({"action": "latestPushedK", "count": 1}, {"action": "always"})
    for pol, reason in ((first, "rule 1 (always)"), (second, "rule 1 (latestPushedK 1)")):
        decisions = plan_repository(pol, "app", VERSIONS, NOW)
        assert decisions is not None
        assert {d.tag: d.reason for d in decisions}["v5"] == reason
        assert all(d.outcome is Outcome.KEPT for d in decisions)


def test_an_empty_policy_deletes_nothing() -> None:
    assert plan_repository(policy(), "app", VERSIONS, NOW) is None
    assert plan_repository(parse_policy({}), "app", VERSIONS, NOW) is None


def test_disabled_rules_do_not_count() -> None:
    pol = policy({"action": "always", "disabled": True})
    assert plan_repository(pol, "app", VERSIONS, NOW) is None
    pol = policy({"action": "always", "disabled": True}, {"action": "latestPushedK", "count": 1})
    assert kept_and_deleted(pol, VERSIONS) == ({"v5"}, {"v1", "v2", "v3", "v4"})


@pytest.mark.parametrize(
    ("repositories", "covered"),
    [
        ({}, {"app", "app/api", "tools/ci"}),
        ({"match": "*"}, {"app"}),
        ({"match": "app/**"}, {"app/api"}),
        ({"match": "**", "exclude": "tools/**"}, {"app", "app/api"}),
        ({"match": "{app,tools/*}"}, {"app", "tools/ci"}),
        ({"match": "**/api"}, {"app/api"}),
    ],
)
def test_repository_selectors_decide_the_scope(repositories: dict[str, Any], covered: set[str]) -> None:
    pol = policy({"action": "latestPushedK", "count": 1, "repositories": repositories})
    for name in ("app", "app/api", "tools/ci"):
        decisions = plan_repository(pol, name, VERSIONS, NOW)
        if name in covered:
            assert decisions is not None
            assert {d.tag for d in decisions if d.outcome is Outcome.DELETED} == {"v1", "v2", "v3", "v4"}
        else:
            assert decisions is None, name


def test_rules_apply_only_to_their_own_repositories() -> None:
    pol = policy(
        {"action": "always", "repositories": {"match": "keep/**"}},
        {"action": "latestPushedK", "count": 2},
    )
    assert kept_and_deleted(pol, VERSIONS, "keep/all")[1] == set()
    assert kept_and_deleted(pol, VERSIONS, "other")[0] == {"v4", "v5"}


UNTAGGED = [
    artifact(1, pushed=5),
    artifact(2, pushed=4),
    artifact(3, "v1", pushed=3),
    artifact(4, pushed=2, dependent=True),  # a signature or an index's child: goes with its owner
    artifact(5, "v2", pushed=1),
]


def digests(*numbers: int) -> set[str]:
    return {f"sha256:{n:064x}" for n in numbers}


def test_untagged_artifacts_are_left_alone_unless_a_rule_selects_them() -> None:
    kept, deleted = kept_and_deleted(policy({"action": "latestPushedK", "count": 1}), UNTAGGED)
    assert (kept, deleted) == ({"v2"}, {"v1"})


def test_untagged_selected_and_not_retained_are_deleted() -> None:
    pol = policy({"action": "latestPushedK", "count": 1, "tags": {"untagged": True}})
    kept, deleted = kept_and_deleted(pol, UNTAGGED)
    assert kept == {"v2"}
    assert deleted == {"v1"} | digests(1, 2)


def test_untagged_can_be_retained_like_any_other_artifact() -> None:
    pol = policy({"action": "latestPushedK", "count": 3, "tags": {"untagged": True}})
    kept, deleted = kept_and_deleted(pol, UNTAGGED)
    assert kept == {"v1", "v2"} | digests(2)  # 3 newest candidates: v2, v1, untagged #2
    assert deleted == digests(1)


def test_untagged_only_rule_keeps_tags_through_another_rule() -> None:
    pol = policy(
        {"action": "always", "tags": {"match": "**"}},
        {"action": "nDaysSinceLastPush", "days": 4, "tags": {"match": "no-tag-matches", "untagged": True}},
    )
    decisions = plan_repository(pol, "app", UNTAGGED, NOW)
    assert decisions is not None
    outcome = {d.tag or d.digest: (d.outcome, d.reason) for d in decisions}
    assert outcome[f"sha256:{1:064x}"] == (Outcome.DELETED, "untagged, not retained by any rule")
    assert outcome[f"sha256:{2:064x}"] == (
        Outcome.KEPT,
        "rule 2 (nDaysSinceLastPush 4)",
    )  # the bound is inclusive
    assert outcome["v1"][0] is Outcome.KEPT


def test_ties_in_push_time_go_to_the_later_row() -> None:
    same = [artifact(1, "a", pushed=1), artifact(2, "b", pushed=1), artifact(3, "c", pushed=1)]
    assert kept_and_deleted(policy({"action": "latestPushedK", "count": 2}), same)[0] == {"b", "c"}


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"rules": [{"action": "latestPushedK"}]}, "latestPushedK needs `count`"),
        ({"rules": [{"action": "nDaysSinceLastPull"}]}, "nDaysSinceLastPull needs `days`"),
        ({"rules": [{"action": "always", "count": 3}]}, "`count` is only for"),
        ({"rules": [{"action": "latestPushedK", "count": 3, "days": 2}]}, "`days` is only for"),
        ({"rules": [{"action": "keepSome"}]}, "rules.0.action"),
        ({"rules": [{"action": "latestPushedK", "count": 0}]}, "rules.0.count"),
        ({"rules": [{"action": "always", "tags": {"match": "[v"}}]}, "unclosed '['"),
        ({"rules": [{"action": "always", "repositories": {"exclude": ["ok", "{a"]}}]}, "unclosed '{'"),
        ({"rules": [{"action": "always", "tags": {"regex": "v.*"}}]}, "rules.0.tags.regex"),
        ({"rules": [{"action": "always"}] * 16}, "at most 15"),
        ({"rules": [], "schedule": "every day"}, "expected 5 fields"),
        ({"rules": [], "schedule": "0 25 * * *"}, "hour"),
        ({"rules": "always"}, "rules"),
    ],
)
def test_bad_policies_are_refused_with_a_clear_message(document: Any, says: str) -> None:
    with pytest.raises(RetentionPolicyInvalid) as caught:
        parse_policy(document)
    assert says in caught.value.message


def test_a_policy_reads_back_as_written() -> None:
    document = {
        "schedule": "0  3 * * *",
        "rules": [
            {"action": "latestPushedK", "count": 3, "repositories": {"match": "**"}, "tags": {"match": "v*"}}
        ],
    }
    pol = parse_policy(document)
    assert pol.schedule == "0 3 * * *"
    assert parse_policy(pol.model_dump(mode="json")) == pol
