"""Which tags a policy keeps: pure selection logic, no I/O (the rule matrix is unit-tested on this).

Per repository (named inside its project: `app/api` for `team/app/api`):
1. Only rules whose repository selector matches apply; with none, the repository is out of scope and
   nothing in it is touched (`plan_repository` returns None).
2. Each applying rule selects candidates with its tag selector: an artifact is a candidate when ANY of
   its tags matches a `match` pattern and no `exclude` pattern; an untagged artifact when the selector
   says `untagged`. The rule's action then retains some of its candidates.
3. An artifact is kept when ANY rule retains it, and then all its tags stay. Every tag of an artifact
   no rule retains is deleted; an untagged artifact is deleted only when some rule selected it
   (`untagged: true`) and none retained it.
Artifacts that belong to another one (referrers with a `subject`, children of an index) are never
candidates while untagged: they go with what they belong to, later, by garbage collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dockyard.projects.patterns import matches
from dockyard.retention.interfaces import Action, Decision, Outcome, Policy, Rule, Selector, TagSelector

NOT_RETAINED = "not retained by any rule"
UNTAGGED_NOT_RETAINED = "untagged, not retained by any rule"


@dataclass(frozen=True, slots=True)
class Artifact:
    """A manifest in one repository, as the rules see it."""

    id: int  # breaks ties between equal times: the later row counts as newer
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime  # the manifest's push, or a later move of one of its tags onto it
    pulled_at: datetime | None  # last pull (to the minute), None if never
    dependent: bool = False  # a referrer (has a subject) or a child of an index in the repository


def selects_name(selector: Selector, name: str) -> bool:
    return any(matches(p, name) for p in selector.match) and not any(
        matches(p, name) for p in selector.exclude
    )


def selects_artifact(selector: TagSelector, artifact: Artifact) -> bool:
    if not artifact.tags:
        return selector.untagged and not artifact.dependent
    return any(selects_name(selector, tag) for tag in artifact.tags)


def retained_by(rule: Rule, candidates: Sequence[Artifact], now: datetime) -> list[Artifact]:
    """The candidates the rule's action retains."""
    if rule.action is Action.ALWAYS:
        return list(candidates)
    if rule.action is Action.LATEST_PUSHED:
        assert rule.count is not None
        return sorted(candidates, key=_push_order, reverse=True)[: rule.count]
    if rule.action is Action.LATEST_PULLED:
        assert rule.count is not None
        # Never pulled sorts after every pull; among those, the most recently pushed come first.
        return sorted(candidates, key=_pull_order, reverse=True)[: rule.count]
    assert rule.days is not None
    since = now - timedelta(days=rule.days)
    if rule.action is Action.DAYS_SINCE_PUSH:
        return [a for a in candidates if a.pushed_at >= since]
    return [a for a in candidates if a.pulled_at is not None and a.pulled_at >= since]


def repository_in_scope(policy: Policy, repository: str) -> bool:
    return any(selects_name(rule.repositories, repository) for _, rule in policy.active_rules)


def plan_repository(
    policy: Policy, repository: str, artifacts: Iterable[Artifact], now: datetime
) -> list[Decision] | None:
    """A decision per tag (and per selected untagged artifact); None when no rule covers the repository.
    `repository` is the name inside the project (without `project/`)."""
    rules = [
        (index, rule) for index, rule in policy.active_rules if selects_name(rule.repositories, repository)
    ]
    if not rules:
        return None
    artifacts = sorted(artifacts, key=_push_order, reverse=True)
    kept: dict[str, str] = {}  # digest -> the first rule (in policy order) that retains it
    untagged_selected: set[str] = set()
    for index, rule in rules:
        candidates = [a for a in artifacts if selects_artifact(rule.tags, a)]
        untagged_selected.update(a.digest for a in candidates if not a.tags)
        for artifact in retained_by(rule, candidates, now):
            kept.setdefault(artifact.digest, rule.describe(index))
    decisions: list[Decision] = []
    for artifact in artifacts:
        reason = kept.get(artifact.digest)
        if artifact.tags:
            outcome = Outcome.KEPT if reason else Outcome.DELETED
            decisions += [
                Decision(tag, artifact.digest, outcome, reason or NOT_RETAINED)
                for tag in sorted(artifact.tags)
            ]
        elif artifact.digest in untagged_selected:
            outcome = Outcome.KEPT if reason else Outcome.DELETED
            decisions.append(Decision(None, artifact.digest, outcome, reason or UNTAGGED_NOT_RETAINED))
    return decisions


def _push_order(artifact: Artifact) -> tuple[datetime, int]:
    return artifact.pushed_at, artifact.id


def _pull_order(artifact: Artifact) -> tuple[bool, datetime, datetime, int]:
    pulled = artifact.pulled_at
    return pulled is not None, pulled or artifact.pushed_at, artifact.pushed_at, artifact.id
