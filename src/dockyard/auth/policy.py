"""The one place that decides what a principal may do: scopes for tokens, permissions for the API.

Every answer comes from the DB as it is now (the account's admin flag, whether it is disabled or
expired, its roles), not from what the principal claimed when it logged in, so a demotion or a
disabled account takes effect on the next request. A call costs one or two indexed queries; there
is no cache to go stale across worker processes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Select, or_, select

from dockyard.accounts.models import RobotRow, UserGroupRow, UserRow
from dockyard.auth.interfaces import Principal, PrincipalKind, Scope
from dockyard.content.reference import validate_name
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import NameInvalid
from dockyard.projects.models import ProjectMemberRow, ProjectRow, RobotPermissionRow
from dockyard.projects.rbac import (
    ALL_PERMISSIONS,
    PUBLIC_PERMISSIONS,
    REGISTRY_ACTIONS,
    Permission,
    permissions_of_robot_actions,
    permissions_of_role,
    project_of,
)

CATALOG = ("registry", "catalog")


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which projects a principal may see: all of them (system admins), or the ones named."""

    all: bool
    projects: frozenset[str] = frozenset()

    def includes(self, project: str) -> bool:
        return self.all or project in self.projects


@dataclass(slots=True)
class _Access:
    active: bool  # the account exists, is enabled and not expired (always True for anonymous)
    admin: bool = False
    projects: dict[str, frozenset[Permission]] = field(default_factory=dict)

    def permissions(self, project: str) -> frozenset[Permission]:
        if not self.active:
            return frozenset()
        if self.admin:
            return ALL_PERMISSIONS
        return self.projects.get(project, frozenset())


class AccessPolicy:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- tokens -------------------------------------------------------------------------------
    def grant(self, principal: Principal, requested: Sequence[Scope]) -> list[Scope]:
        """The scopes to put in a token: what was asked, cut down to what is allowed.

        Repository scopes (any resource class) grant pull/push/delete per the role table; `*` asks
        for all three and is granted as the ones allowed. A project that does not exist grants
        nothing, except to system admins (a push then creates it). `registry:catalog:*` is granted to
        any enabled account (listings are filtered by `visible_projects`). Unknown types, names and
        actions are dropped, as are scopes left with no action. Duplicates are merged."""
        merged: dict[tuple[str, str, str | None], set[str]] = {}
        for scope in requested:
            merged.setdefault((scope.type, scope.name, scope.resource_class), set()).update(scope.actions)
        projects = {
            project_of(name)
            for (kind, name, _), _actions in merged.items()
            if kind == "repository" and _valid_repository(name)
        }
        needs_account = any((kind, name) == CATALOG for kind, name, _ in merged)
        access = self._access(principal, projects) if projects or needs_account else _Access(active=True)
        granted: list[Scope] = []
        for (kind, name, resource_class), actions in merged.items():
            allowed = _granted_actions(principal, access, kind, name, actions)
            if allowed:
                granted.append(Scope(kind, name, frozenset(allowed), resource_class))
        return granted

    # --- the management API -------------------------------------------------------------------
    def permissions(self, principal: Principal, project: str) -> frozenset[Permission]:
        """Everything the principal may do in `project` (empty if it does not exist)."""
        return self._access(principal, {project}).permissions(project)

    def can(self, principal: Principal, project: str, permission: Permission) -> bool:
        return permission in self.permissions(principal, project)

    def is_admin(self, principal: Principal) -> bool:
        """A system administrator, enabled, as the DB says now."""
        access = self._access(principal, set())
        return access.active and access.admin

    def can_create_projects(self, principal: Principal) -> bool:
        return self.is_admin(principal)

    def visible_projects(self, principal: Principal) -> Visibility:
        """The projects whose existence and contents the principal may see (to filter listings)."""
        with self._db.read() as connection:
            account = _account(connection, principal)
            if account is None:
                return Visibility(all=False)
            admin, user_id, robot_id = account
            if admin:
                return Visibility(all=True)
            query = select(ProjectRow.name)
            if user_id is not None:
                query = query.where(or_(ProjectRow.public, ProjectRow.id.in_(_member_projects(user_id))))
            elif robot_id is not None:
                robot_projects = select(RobotPermissionRow.project_id).where(
                    RobotPermissionRow.robot_id == robot_id
                )
                query = query.where(or_(ProjectRow.public, ProjectRow.id.in_(robot_projects)))
            else:
                query = query.where(ProjectRow.public)
            return Visibility(all=False, projects=frozenset(connection.execute(query).scalars()))

    # --- internals ----------------------------------------------------------------------------
    def _access(self, principal: Principal, projects: Collection[str]) -> _Access:
        with self._db.read() as connection:
            account = _account(connection, principal)
            if account is None:
                return _Access(active=False)
            admin, user_id, robot_id = account
            access = _Access(active=True, admin=admin)
            if admin or not projects:
                return access
            names = sorted(projects)
            if user_id is not None:
                rows = connection.execute(
                    select(ProjectRow.name, ProjectRow.public, ProjectMemberRow.role)
                    .outerjoin(
                        ProjectMemberRow,
                        (ProjectMemberRow.project_id == ProjectRow.id)
                        & or_(
                            ProjectMemberRow.user_id == user_id,
                            ProjectMemberRow.group_id.in_(
                                select(UserGroupRow.group_id).where(UserGroupRow.user_id == user_id)
                            ),
                        ),
                    )
                    .where(ProjectRow.name.in_(names))
                )
                for row in rows:
                    extra = permissions_of_role(row.role) if row.role else frozenset()
                    _add(access, row.name, row.public, extra)
            elif robot_id is not None:
                rows = connection.execute(
                    select(ProjectRow.name, ProjectRow.public, RobotPermissionRow.actions)
                    .outerjoin(
                        RobotPermissionRow,
                        (RobotPermissionRow.project_id == ProjectRow.id)
                        & (RobotPermissionRow.robot_id == robot_id),
                    )
                    .where(ProjectRow.name.in_(names))
                )
                for row in rows:
                    extra = permissions_of_robot_actions(row.actions) if row.actions else frozenset()
                    _add(access, row.name, row.public, extra)
            else:
                rows = connection.execute(
                    select(ProjectRow.name, ProjectRow.public).where(ProjectRow.name.in_(names))
                )
                for row in rows:
                    _add(access, row.name, row.public, frozenset())
            return access


def _account(connection: Connection, principal: Principal) -> tuple[bool, int | None, int | None] | None:
    """(is admin, user id, robot id) of an enabled account; None if it is unknown, disabled or expired.

    Anonymous is (False, None, None)."""
    if principal.kind is PrincipalKind.ANONYMOUS:
        return False, None, None
    if principal.kind is PrincipalKind.USER:
        user_query = select(
            UserRow.id, UserRow.username, UserRow.admin, UserRow.directory_admin, UserRow.disabled
        )
        user_query = user_query.where(
            UserRow.id == principal.id if principal.id is not None else UserRow.username == principal.name
        )
        user = connection.execute(user_query).first()
        if user is None or user.username != principal.name or user.disabled:
            return None
        return bool(user.admin or user.directory_admin), int(user.id), None
    if principal.kind is PrincipalKind.ROBOT:
        robot_query = select(RobotRow.id, RobotRow.name, RobotRow.disabled, RobotRow.expires_at)
        robot_query = robot_query.where(
            RobotRow.id == principal.id if principal.id is not None else RobotRow.name == principal.name
        )
        robot = connection.execute(robot_query).first()
        if robot is None or robot.name != principal.name or robot.disabled:
            return None
        if robot.expires_at is not None and robot.expires_at <= utcnow():
            return None
        return False, None, int(robot.id)
    return None


def _member_projects(user_id: int) -> Select[int]:
    groups = select(UserGroupRow.group_id).where(UserGroupRow.user_id == user_id)
    return select(ProjectMemberRow.project_id).where(
        or_(ProjectMemberRow.user_id == user_id, ProjectMemberRow.group_id.in_(groups))
    )


def _add(access: _Access, project: str, public: bool, extra: frozenset[Permission]) -> None:
    # A user may have several rows for one project (their own role and their groups' roles): union.
    granted = access.projects.get(project, frozenset()) | extra
    if public:
        granted |= PUBLIC_PERMISSIONS
    access.projects[project] = granted


def _granted_actions(
    principal: Principal, access: _Access, kind: str, name: str, actions: set[str]
) -> set[str]:
    if (kind, name) == CATALOG:
        authenticated = access.active and not principal.is_anonymous
        return {"*"} if "*" in actions and authenticated else set()
    if kind != "repository" or not _valid_repository(name):
        return set()
    wanted = set(REGISTRY_ACTIONS) if "*" in actions else actions & REGISTRY_ACTIONS.keys()
    permissions = access.permissions(project_of(name))
    return {action for action in wanted if REGISTRY_ACTIONS[action] in permissions}


def _valid_repository(name: str) -> bool:
    try:
        validate_name(name)
    except NameInvalid:
        return False
    return True
