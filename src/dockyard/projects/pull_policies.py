"""A project's pull policies (columns of `projects`): what a manifest GET must satisfy.

- `require_signature`: the artifact (or, for a platform manifest, an index of the repository that
  references it) has a signature that verifies against the project's trusted keys;
- `block_severity` (none, low, medium, high, critical): no vulnerability at or above it;
- `block_unscanned`: the artifact has been scanned.

Read on every manifest GET, so kept per process (GenerationCache on Topic.POLICIES); a change bumps
the topic. The checks themselves are in `signatures.pull_gate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from dockyard.coordination.interfaces import InvalidatedCache
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.interfaces import InvalidPullPolicy, ProjectNotFound
from dockyard.projects.models import ProjectRow

SEVERITIES = ("none", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class PullPolicy:
    require_signature: bool = False
    block_severity: str = "none"
    block_unscanned: bool = False

    @property
    def active(self) -> bool:
        return self.require_signature or self.block_severity != "none" or self.block_unscanned


NO_POLICY = PullPolicy()
_projects = ProjectRow.__table__
# Built once: building a statement costs more CPU than running it.
_POLICY = select(
    _projects.c.require_signature, _projects.c.block_severity, _projects.c.block_unscanned
).where(_projects.c.name == bindparam("project"))


def validate_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise InvalidPullPolicy(
            f"block_severity is one of {', '.join(SEVERITIES)}", detail={"block_severity": severity}
        )
    return severity


class PullPolicies:
    def __init__(
        self,
        db: Database,
        cache: InvalidatedCache[str, PullPolicy],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._cache = cache
        self._on_change = on_change

    def cached(self, project: str) -> PullPolicy | None:
        """The project's policy if this process has it (no I/O); None when it must be read."""
        return self._cache.get(project)

    def get(self, project: str) -> PullPolicy:
        """The project's policy (no policy for a project that does not exist: nothing to enforce)."""
        found = self._cache.get(project)
        if found is not None:
            return found
        generation = self._cache.current_generation()
        with self._db.read() as connection:
            row = connection.execute(_POLICY, {"project": project}).first()
        policy = NO_POLICY if row is None else PullPolicy(bool(row[0]), str(row[1]), bool(row[2]))
        if not policy.active:
            policy = NO_POLICY
        self._cache.put(project, policy, generation)
        return policy

    def read(self, project: str) -> PullPolicy:
        """The stored policy, read from the database (raises ProjectNotFound)."""
        with self._db.read() as connection:
            row = connection.execute(_POLICY, {"project": project}).first()
        if row is None:
            raise ProjectNotFound(detail={"project": project})
        return PullPolicy(bool(row[0]), str(row[1]), bool(row[2]))

    def set(
        self,
        project: str,
        *,
        require_signature: bool | None = None,
        block_severity: str | None = None,
        block_unscanned: bool | None = None,
    ) -> PullPolicy:
        values: dict[str, object] = {}
        if require_signature is not None:
            values["require_signature"] = require_signature
        if block_severity is not None:
            values["block_severity"] = validate_severity(block_severity)
        if block_unscanned is not None:
            values["block_unscanned"] = block_unscanned
        if values:
            with self._db.write() as connection:
                changed = connection.execute(
                    update(ProjectRow).where(ProjectRow.name == project).values(**values, updated_at=utcnow())
                ).rowcount
            if not changed:
                raise ProjectNotFound(detail={"project": project})
            self._on_change()
        return self.read(project)
