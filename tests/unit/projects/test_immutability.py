"""Tag immutability: the doublestar pattern matrix, the rule matrix, and the rule store with its cache."""

from __future__ import annotations

import pytest

from dockyard.coordination.caches import GenerationCache
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.coordination.interfaces import Topic, generation_of
from dockyard.db.session import Database
from dockyard.projects import patterns
from dockyard.projects.immutability import (
    ImmutabilityRules,
    repository_path,
    rule_matches,
    validate_pattern,
)
from dockyard.projects.interfaces import (
    ImmutableRule,
    ImmutableRuleNotFound,
    InvalidImmutableRule,
    ProjectNotFound,
    TagImmutable,
)
from dockyard.projects.services import ProjectService


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("**", "", True),
        ("**", "app", True),
        ("**", "team/app/api", True),
        ("*", "app", True),
        ("*", "team/app", False),  # * stays inside one path component
        ("team/*", "team/app", True),
        ("team/*", "team/app/api", False),
        ("team/**", "team/app/api", True),
        ("team/**", "other/app", False),
        ("**/api", "api", True),
        ("**/api", "a/b/api", True),
        ("**/api", "a/b/api2", False),
        ("v*", "v1", True),
        ("v*", "v1.2.3", True),
        ("v*", "latest", False),
        ("v?", "v1", True),
        ("v?", "v12", False),
        ("v[0-9]*", "v3-rc", True),
        ("v[!0-9]*", "v3-rc", False),
        ("v[!0-9]*", "vx", True),
        ("{latest,stable}", "stable", True),
        ("{latest,stable}", "dev", False),
        ("{v1.*,release-{a,b}}", "release-b", True),
        ("{v1.*,release-{a,b}}", "v1.0", True),
        ("{v1.*,release-{a,b}}", "v2.0", False),
        ("1.0", "1x0", False),  # "." is literal
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
    ],
)
def test_pattern_matrix(pattern: str, name: str, expected: bool) -> None:
    assert patterns.matches(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["", "{a,b", "a}", "a,b", "[abc", "x\\", "[]", "a" * 256])
def test_malformed_patterns_are_refused_with_a_reason(pattern: str) -> None:
    with pytest.raises(InvalidImmutableRule) as raised:
        validate_pattern(pattern)
    assert raised.value.message != InvalidImmutableRule.message or pattern == ""


def _rule(repos: str = "**", tags: str = "**", **flags: bool) -> ImmutableRule:
    return ImmutableRule(id=1, project="library", repository_pattern=repos, tag_pattern=tags, **flags)


@pytest.mark.parametrize(
    ("rule", "repository", "tag", "immutable"),
    [
        (_rule(), "app", "anything", True),
        (_rule(tags="v*"), "app", "v1", True),
        (_rule(tags="v*"), "app", "latest", False),
        (_rule(tags="v*", tag_excluding=True), "app", "latest", True),
        (_rule(tags="v*", tag_excluding=True), "app", "v1", False),
        (_rule(repos="prod/**"), "prod/api", "x", True),
        (_rule(repos="prod/**"), "dev/api", "x", False),
        (_rule(repos="prod/**", repository_excluding=True), "dev/api", "x", True),
        (_rule(repos="prod/**", repository_excluding=True), "prod/api", "x", False),
        (_rule(repos="{a,b}", tags="{1.0,2.0}"), "b", "2.0", True),
        (_rule(repos="{a,b}", tags="{1.0,2.0}"), "c", "2.0", False),
        (_rule(enabled=False), "app", "v1", False),
    ],
)
def test_rule_matrix(rule: ImmutableRule, repository: str, tag: str, immutable: bool) -> None:
    assert rule_matches(rule, repository, tag) is immutable


def test_repository_paths_are_inside_the_project() -> None:
    assert repository_path("library/app") == "app"
    assert repository_path("library/team/app") == "team/app"
    assert repository_path("app") == ""


def test_rules_are_stored_checked_and_cached_until_they_change(db: Database) -> None:
    ProjectService(db).create("library")
    feed = InProcessChangeFeed()
    rules = ImmutabilityRules(
        db, GenerationCache(generation_of(feed, Topic.POLICIES)), lambda: feed.bump(Topic.POLICIES)
    )
    assert rules.rule_for("library/app", "v1") is None  # now cached: no rules
    rule = rules.add("library", "app", "v*")
    found = rules.rule_for("library/app", "v1")  # the add bumped the feed, so the cache was dropped
    assert found is not None and found.id == rule.id
    assert rules.rule_for("library/other", "v1") is None
    assert rules.rule_for("library/app", "latest") is None
    with pytest.raises(TagImmutable, match=rf"tag v1 in library/app is immutable \(rule {rule.id}\)"):
        rules.check_tag_removable("library/app", ["latest", "v1"])
    rules.check_tag_removable("library/app", ["latest"])

    updated = rules.update("library", rule.id, tag_pattern="v*", tag_excluding=True)
    assert updated.tag_excluding
    assert rules.rule_for("library/app", "v1") is None
    assert rules.rule_for("library/app", "latest") is not None
    rules.update("library", rule.id, enabled=False)
    assert rules.rule_for("library/app", "latest") is None

    rules.remove("library", rule.id)
    assert rules.list("library") == ()
    with pytest.raises(ImmutableRuleNotFound):
        rules.remove("library", rule.id)


def test_rule_errors(db: Database) -> None:
    ProjectService(db).create("library")
    rules = ImmutabilityRules(db)
    with pytest.raises(ProjectNotFound):
        rules.add("nope", "**", "**")
    with pytest.raises(ProjectNotFound):
        rules.list("nope")
    with pytest.raises(InvalidImmutableRule):
        rules.add("library", "{a", "**")
    with pytest.raises(ImmutableRuleNotFound):
        rules.get("library", 999)


def test_the_rules_are_read_once_until_they_change(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache held nothing while empty (an empty cache is falsy, and the generation noted was 0),
    so every tag write read the rules again whenever the feed's generation was not 0."""
    ProjectService(db).create("library")
    feed = InProcessChangeFeed()
    feed.bump(Topic.POLICIES)  # any generation, not only a fresh feed's first
    rules = ImmutabilityRules(
        db, GenerationCache(generation_of(feed, Topic.POLICIES)), lambda: feed.bump(Topic.POLICIES)
    )
    reads = []
    real_read = db.read

    def counted_read() -> object:
        reads.append(1)
        return real_read()

    monkeypatch.setattr(db, "read", counted_read)
    for _ in range(3):
        assert rules.rule_for("library/app", "v1") is None
    assert len(reads) == 1
