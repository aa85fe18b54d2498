"""A project's retention policy (validated with pydantic), the report of a run, and the errors.

A policy is a list of rules. Each rule picks artifacts (repository selector, then tag selector) and
retains some of them (its action). An artifact is kept when ANY rule retains it; in a repository that
at least one rule's repository selector covers, every tag of an artifact no rule retains is deleted.
docs/retention.md has the whole story.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dockyard.db.base import utcnow
from dockyard.errors import Category, DockyardError
from dockyard.jobs.cron import CronError, parse_cron
from dockyard.projects.patterns import PatternInvalid, validate_pattern

KIND = "retention"  # the job's kind (retention.tasks runs it; the management API queues it)
MAX_RULES = 15  # as Harbor
MAX_PATTERNS = 20


class RetentionPolicyNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "the project has no retention policy"


class RetentionPolicyInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid retention policy"


class Action(StrEnum):
    """Harbor's rule templates."""

    LATEST_PUSHED = "latestPushedK"  # the `count` most recently pushed
    LATEST_PULLED = "latestPulledN"  # the `count` most recently pulled (never pulled come last)
    DAYS_SINCE_PUSH = "nDaysSinceLastPush"  # pushed within the last `days` days
    DAYS_SINCE_PULL = "nDaysSinceLastPull"  # pulled within the last `days` days
    ALWAYS = "always"


COUNTED = frozenset({Action.LATEST_PUSHED, Action.LATEST_PULLED})
TIMED = frozenset({Action.DAYS_SINCE_PUSH, Action.DAYS_SINCE_PULL})


def _patterns(value: str | list[str]) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if len(items) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} patterns")
    for item in items:
        try:
            validate_pattern(item)
        except PatternInvalid as exc:
            raise ValueError(exc.message) from None
    return items


class Selector(BaseModel):
    """Names matching any `match` pattern and no `exclude` pattern (doublestar globs)."""

    model_config = ConfigDict(extra="forbid")

    match: list[str] = Field(default_factory=lambda: ["**"], description="Globs; a string or a list.")
    exclude: list[str] = Field(default_factory=list, description="Globs; a string or a list.")

    @field_validator("match", "exclude", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("match", "exclude")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        return _patterns(value)


class TagSelector(Selector):
    untagged: bool = Field(
        default=False,
        description="Also select artifacts without tags (then ones no rule retains are deleted).",
    )


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    count: int | None = Field(default=None, ge=1, le=100_000, description="For latestPushedK, latestPulledN.")
    days: int | None = Field(default=None, ge=1, le=36_500, description="For nDaysSinceLastPush/Pull.")
    repositories: Selector = Field(
        default_factory=Selector, description="Names inside the project, e.g. `app/api` for `team/app/api`."
    )
    tags: TagSelector = Field(default_factory=TagSelector)
    disabled: bool = False

    @model_validator(mode="after")
    def _parameters(self) -> Rule:
        if self.action in COUNTED and self.count is None:
            raise ValueError(f"{self.action.value} needs `count`")
        if self.action in TIMED and self.days is None:
            raise ValueError(f"{self.action.value} needs `days`")
        if self.action not in COUNTED and self.count is not None:
            raise ValueError(f"`count` is only for latestPushedK and latestPulledN, not {self.action.value}")
        if self.action not in TIMED and self.days is not None:
            raise ValueError(f"`days` is only for nDaysSinceLastPush/Pull, not {self.action.value}")
        return self

    def describe(self, index: int) -> str:
        """`rule 1 (latestPushedK 3)`: how reports name the rule that kept something."""
        parameter = self.count if self.count is not None else self.days
        return f"rule {index + 1} ({self.action.value}{'' if parameter is None else f' {parameter}'})"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    schedule: str | None = Field(
        default=None,
        max_length=128,
        description="A cron expression (`0 3 * * *`) to run the policy on; none: by hand only.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parse_cron(value).next_after(utcnow())
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return " ".join(value.split())

    @property
    def active_rules(self) -> list[tuple[int, Rule]]:
        return [(index, rule) for index, rule in enumerate(self.rules) if not rule.disabled]


def parse_policy(document: Any) -> Policy:
    """The policy, or RetentionPolicyInvalid with one readable line per problem."""
    from pydantic import ValidationError

    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = []
        for problem in exc.errors():
            where = ".".join(str(part) for part in problem.get("loc", ()))
            problems.append(f"{where}: {problem.get('msg', 'invalid')}" if where else problem.get("msg", ""))
        raise RetentionPolicyInvalid("; ".join(problems)) from None


# --- what a run decided ---------------------------------------------------------------------------
class Outcome(StrEnum):
    KEPT = "kept"
    DELETED = "deleted"  # (would be deleted, in a dry run)
    KEPT_IMMUTABLE = "kept (immutable)"  # not retained, but the tag is immutable
    SKIPPED = "skipped"  # changed while the run went (tag moved, already gone): left alone


@dataclass(frozen=True, slots=True)
class Decision:
    tag: str | None  # None: an untagged artifact
    digest: str
    outcome: Outcome
    reason: str  # the rule that kept it, or why it goes

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "digest": self.digest, "outcome": self.outcome.value, "reason": self.reason}


@dataclass
class RepositoryReport:
    repository: str
    decisions: list[Decision] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for d in self.decisions if d.outcome is outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            **{key: self.count(outcome) for key, outcome in OUTCOME_COUNTS.items()},
            "decisions": [d.as_dict() for d in self.decisions],
        }


@dataclass
class RunReport:
    project: str
    dry_run: bool
    started_at: datetime
    repositories: list[RepositoryReport] = field(default_factory=list)
    out_of_scope: list[str] = field(default_factory=list)  # repositories no rule covers: untouched
    run_id: int | None = None  # in the run history

    def count(self, outcome: Outcome) -> int:
        return sum(r.count(outcome) for r in self.repositories)

    def summary(self) -> dict[str, Any]:
        """The counts, without the per-repository lists (a job's result, the run list)."""
        return {
            "run_id": self.run_id,
            "project": self.project,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            **{key: self.count(outcome) for key, outcome in OUTCOME_COUNTS.items()},
            "out_of_scope": len(self.out_of_scope),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "repositories": [r.as_dict() for r in self.repositories],
            "out_of_scope_repositories": self.out_of_scope,
        }


# The counts in reports and summaries, by key.
OUTCOME_COUNTS = {
    "kept": Outcome.KEPT,
    "deleted": Outcome.DELETED,
    "kept_immutable": Outcome.KEPT_IMMUTABLE,
    "skipped": Outcome.SKIPPED,
}
