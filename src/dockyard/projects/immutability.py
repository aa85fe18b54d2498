"""Tag immutability: rules per project, and the check every tag change and delete goes through.

A rule names repositories (by their path inside the project: `app`, `team/app`) and tags with
doublestar globs, as Harbor does (projects/patterns.py, shared with retention).

Each side is "matching" (the default) or "excluding" (everything the pattern does not match). A tag is
immutable when an enabled rule of its project matches both its repository and its name. Then:
- a manifest PUT onto the tag with a *different* digest is refused (the same digest again is fine);
- deleting the tag, or deleting by digest a manifest the tag points at, is refused.
Refusals raise `TagImmutable` (projects.interfaces); the registry service raises it for every caller
(the /v2 API, the management API, retention), so none of them can move or drop such a tag.

Rules are read on every tag PUT, so `ImmutabilityRules` caches them per project; the composition root
hands in a cache emptied by the registry's change feed, and `on_change` bumps it after each rule change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from dockyard.coordination.interfaces import InvalidatedCache
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects import patterns
from dockyard.projects.interfaces import (
    ImmutableRule,
    ImmutableRuleNotFound,
    InvalidImmutableRule,
    ProjectEvents,
    TagImmutable,
)
from dockyard.projects.models import ImmutableRuleRow, ProjectRow
from dockyard.projects.rbac import project_of
from dockyard.projects.services import project_id

MAX_RULES_PER_PROJECT = 100  # Harbor allows 15; rules are checked in a loop on every tag PUT


# --- patterns -----------------------------------------------------------------------------------
def validate_pattern(pattern: str) -> str:
    """The pattern, or InvalidImmutableRule saying what is wrong with it."""
    try:
        return patterns.validate_pattern(pattern)
    except patterns.PatternInvalid as exc:
        raise InvalidImmutableRule(exc.message, detail=exc.detail) from None


# --- rules --------------------------------------------------------------------------------------
def rule_matches(rule: ImmutableRule, repository_path: str, tag: str) -> bool:
    """Whether the rule makes `tag` of the repository at `repository_path` (inside its project) immutable."""
    if not rule.enabled:
        return False
    if patterns.matches(rule.repository_pattern, repository_path) == rule.repository_excluding:
        return False
    return patterns.matches(rule.tag_pattern, tag) != rule.tag_excluding


def repository_path(repository: str) -> str:
    """The repository's name inside its project: `library/team/app` -> `team/app`."""
    return repository.split("/", 1)[1] if "/" in repository else ""


class ImmutabilityRules:
    def __init__(
        self,
        db: Database,
        cache: InvalidatedCache[str, tuple[ImmutableRule, ...]] | None = None,  # project -> its rules
        on_change: Callable[[], None] | None = None,  # announces a change: the caches of rules forget
        events: ProjectEvents | None = None,  # refusals, for webhook policies
    ) -> None:
        self.events = events
        self._db = db
        self._cache = cache
        self._on_change = on_change

    # --- the checks ---------------------------------------------------------------------------
    def rule_for(self, repository: str, tag: str) -> ImmutableRule | None:
        """The first enabled rule that makes `tag` in `repository` (a full name) immutable, else None.
        Cached: no I/O once the project's rules are known."""
        rules = self.rules_of(project_of(repository))
        path = repository_path(repository)
        return next((rule for rule in rules if rule_matches(rule, path, tag)), None)

    def check_tag_removable(self, repository: str, tags: list[str] | tuple[str, ...]) -> None:
        """TagImmutable if any of `tags` of `repository` is immutable: for deletes of tags, and of
        manifests (pass the tags that point at the manifest)."""
        for tag in tags:
            rule = self.rule_for(repository, tag)
            if rule is not None:
                raise self.refusal(repository, tag, rule, "delete")

    def refusal(self, repository: str, tag: str, rule: ImmutableRule, operation: str) -> TagImmutable:
        """The error refusing to change `tag` (`operation`: push or delete), noted for webhook policies
        (no I/O: the caller's transaction rolls back)."""
        if self.events is not None:
            data = {"repository": repository, "tag": tag, "rule": rule.id, "operation": operation}
            self.events.note(project_of(repository), "immutable_refusal", data)
        return tag_immutable(repository, tag, rule)

    def rules_of(self, project: str) -> tuple[ImmutableRule, ...]:
        generation = self._cache.current_generation() if self._cache is not None else 0
        if self._cache is not None:
            cached = self._cache.get(project)
            if cached is not None:
                return cached
        with self._db.read() as connection:
            rules = self._select(connection, project)
        if self._cache is not None:
            self._cache.put(project, rules, generation)
        return rules

    # --- management ---------------------------------------------------------------------------
    def list(self, project: str) -> tuple[ImmutableRule, ...]:
        with self._db.read() as connection:
            project_id(connection, project)  # an unknown project is an error, not an empty list
            return self._select(connection, project)

    def get(self, project: str, rule_id: int) -> ImmutableRule:
        for rule in self.list(project):
            if rule.id == rule_id:
                return rule
        raise ImmutableRuleNotFound(detail={"project": project, "id": rule_id})

    def add(
        self,
        project: str,
        repository_pattern: str = "**",
        tag_pattern: str = "**",
        *,
        repository_excluding: bool = False,
        tag_excluding: bool = False,
        enabled: bool = True,
    ) -> ImmutableRule:
        validate_pattern(repository_pattern)
        validate_pattern(tag_pattern)
        with self._db.write() as connection:
            owner = project_id(connection, project)
            count = len(self._select(connection, project))
            if count >= MAX_RULES_PER_PROJECT:
                raise InvalidImmutableRule(
                    f"project {project} already has {count} immutability rules (the limit)",
                    detail={"project": project},
                )
            new_id = connection.execute(
                insert(ImmutableRuleRow)
                .values(
                    project_id=owner,
                    repository_pattern=repository_pattern,
                    repository_excluding=repository_excluding,
                    tag_pattern=tag_pattern,
                    tag_excluding=tag_excluding,
                    enabled=enabled,
                    created_at=utcnow(),
                )
                .returning(ImmutableRuleRow.id)
            ).scalar_one()
        self._changed()
        return self.get(project, int(new_id))

    def update(self, project: str, rule_id: int, **changes: Any) -> ImmutableRule:
        """Change any of repository_pattern, tag_pattern, repository_excluding, tag_excluding, enabled."""
        allowed = {"repository_pattern", "tag_pattern", "repository_excluding", "tag_excluding", "enabled"}
        values = {key: value for key, value in changes.items() if key in allowed and value is not None}
        for key in ("repository_pattern", "tag_pattern"):
            if key in values:
                validate_pattern(values[key])
        if values:
            with self._db.write() as connection:
                result = connection.execute(
                    update(ImmutableRuleRow)
                    .where(
                        ImmutableRuleRow.id == rule_id,
                        ImmutableRuleRow.project_id == project_id(connection, project),
                    )
                    .values(**values)
                )
            if result.rowcount == 0:
                raise ImmutableRuleNotFound(detail={"project": project, "id": rule_id})
            self._changed()
        return self.get(project, rule_id)

    def remove(self, project: str, rule_id: int) -> None:
        with self._db.write() as connection:
            result = connection.execute(
                delete(ImmutableRuleRow).where(
                    ImmutableRuleRow.id == rule_id,
                    ImmutableRuleRow.project_id == project_id(connection, project),
                )
            )
        if result.rowcount == 0:
            raise ImmutableRuleNotFound(detail={"project": project, "id": rule_id})
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    @staticmethod
    def _select(connection: Connection, project: str) -> tuple[ImmutableRule, ...]:
        rows = connection.execute(
            select(ImmutableRuleRow)
            .join(ProjectRow, ProjectRow.id == ImmutableRuleRow.project_id)
            .where(ProjectRow.name == project)
            .order_by(ImmutableRuleRow.id)
        ).all()
        return tuple(
            ImmutableRule(
                id=row.id,
                project=project,
                repository_pattern=row.repository_pattern,
                tag_pattern=row.tag_pattern,
                repository_excluding=bool(row.repository_excluding),
                tag_excluding=bool(row.tag_excluding),
                enabled=bool(row.enabled),
            )
            for row in rows
        )


def tag_immutable(repository: str, tag: str, rule: ImmutableRule) -> TagImmutable:
    return TagImmutable(
        f"tag {tag} in {repository} is immutable (rule {rule.id})",
        detail={"name": repository, "tag": tag, "rule": rule.id},
    )
