"""Tag immutability: rules per project, and the check every tag change and delete goes through.

A rule names repositories (by their path inside the project: `app`, `team/app`) and tags with
doublestar globs, as Harbor does:

- `*` any run of characters except `/`; `**` any run including `/` (`**` matches everything,
  `**/api` an `api` at any depth, `a/**` everything under `a`)
- `?` one character except `/`; `[abc]`, `[a-z]`, `[!a-z]` one character of (not of) a class
- `{a,b}` any of the alternatives (which may hold patterns and braces themselves)
- `\\x` the character x itself

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

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import Connection, delete, insert, select, update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.interfaces import (
    ImmutableRule,
    ImmutableRuleNotFound,
    InvalidImmutableRule,
    TagImmutable,
)
from dockyard.projects.models import ImmutableRuleRow, ProjectRow
from dockyard.projects.rbac import project_of
from dockyard.projects.services import project_id

MAX_PATTERN_LENGTH = 255
MAX_RULES_PER_PROJECT = 100  # Harbor allows 15; rules are checked in a loop on every tag PUT


# --- patterns -----------------------------------------------------------------------------------
def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).fullmatch(name) is not None


def validate_pattern(pattern: str) -> str:
    compile_pattern(pattern)
    return pattern


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern as a regular expression matching whole names; InvalidImmutableRule if malformed."""
    if not pattern:
        raise InvalidImmutableRule("empty pattern (use ** to match everything)", detail={"pattern": pattern})
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidImmutableRule(
            f"pattern longer than {MAX_PATTERN_LENGTH} characters", detail={"pattern": pattern}
        )
    regex, end = _translate(pattern, 0, in_braces=False)
    if end != len(pattern):  # a "}" or "," with no "{" before it
        raise InvalidImmutableRule(f"unexpected {pattern[end]!r} at {end}", detail={"pattern": pattern})
    return re.compile(regex, re.DOTALL)


def _translate(pattern: str, index: int, in_braces: bool) -> tuple[str, int]:
    """Translate from `index` up to the end, or (in braces) up to the `,` or `}` that ends an
    alternative; returns the regex and where it stopped."""
    out: list[str] = []
    while index < len(pattern):
        char = pattern[index]
        if char in ",}":
            if in_braces:
                return "".join(out), index
            raise InvalidImmutableRule(f"unexpected {char!r} at {index}", detail={"pattern": pattern})
        if char == "*":
            index = _star(pattern, index, out)
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            index = _char_class(pattern, index, out)
            continue
        elif char == "{":
            index = _alternatives(pattern, index, out)
            continue
        elif char == "\\":
            if index + 1 >= len(pattern):
                raise InvalidImmutableRule("pattern ends with a lone backslash", detail={"pattern": pattern})
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    if in_braces:
        raise InvalidImmutableRule("unclosed '{'", detail={"pattern": pattern})
    return "".join(out), index


def _star(pattern: str, index: int, out: list[str]) -> int:
    if not pattern.startswith("**", index):
        out.append("[^/]*")
        return index + 1
    end = index + 2
    at_start = index == 0 or pattern[index - 1] == "/"
    if at_start and pattern.startswith("/", end):
        out.append("(?:.*/)?")  # "**/": any number of leading directories, none included
        return end + 1
    out.append(".*")
    return end


def _char_class(pattern: str, index: int, out: list[str]) -> int:
    end = pattern.find("]", index + 2)  # a "]" right after "[" (or "[!") belongs to the class
    if end == -1:
        raise InvalidImmutableRule("unclosed '['", detail={"pattern": pattern})
    body = pattern[index + 1 : end]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    if not body:
        raise InvalidImmutableRule("empty character class", detail={"pattern": pattern})
    escaped = body.replace("\\", "\\\\").replace("[", "\\[")
    out.append(f"[^/{escaped}]" if negate else f"[{escaped}]")  # "/" is never matched by a class
    return end + 1


def _alternatives(pattern: str, index: int, out: list[str]) -> int:
    options: list[str] = []
    index += 1
    while True:
        regex, index = _translate(pattern, index, in_braces=True)
        options.append(regex)
        if pattern[index] == "}":
            out.append("(?:" + "|".join(options) + ")")
            return index + 1
        index += 1  # past ","


# --- rules --------------------------------------------------------------------------------------
def rule_matches(rule: ImmutableRule, repository_path: str, tag: str) -> bool:
    """Whether the rule makes `tag` of the repository at `repository_path` (inside its project) immutable."""
    if not rule.enabled:
        return False
    if matches(rule.repository_pattern, repository_path) == rule.repository_excluding:
        return False
    return matches(rule.tag_pattern, tag) != rule.tag_excluding


def repository_path(repository: str) -> str:
    """The repository's name inside its project: `library/team/app` -> `team/app`."""
    return repository.split("/", 1)[1] if "/" in repository else ""


class RuleCache(Protocol):
    """A cache that forgets everything when the rules change (registry.cache.GenerationCache is one)."""

    def current_generation(self) -> int: ...

    def get(self, key: str) -> tuple[ImmutableRule, ...] | None: ...

    def put(self, key: str, value: tuple[ImmutableRule, ...], generation: int) -> None: ...


class ImmutabilityRules:
    def __init__(
        self, db: Database, cache: RuleCache | None = None, on_change: Callable[[], None] | None = None
    ) -> None:
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
                raise tag_immutable(repository, tag, rule)

    def rules_of(self, project: str) -> tuple[ImmutableRule, ...]:
        generation = self._cache.current_generation() if self._cache else 0
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
