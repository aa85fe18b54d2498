"""The one place that decides what a principal may do: scopes for tokens, permissions for the API.

Every answer comes from the DB as it is now (the account's admin flag, whether it is disabled or
expired, its roles), not from what the principal claimed when it logged in, so a demotion or a
disabled account takes effect on the next request. A token request costs one indexed query; there
is no cache to go stale across worker processes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, or_, select

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

    def permissions_in(
        self, principal: Principal, projects: Collection[str]
    ) -> dict[str, frozenset[Permission]]:
        """`permissions` in each of `projects`, read at once: a page of a listing in one query."""
        if not projects:
            return {}
        access = self._access(principal, set(projects))
        return {project: access.permissions(project) for project in projects}

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

    def pullable_projects(self, principal: Principal) -> Visibility:
        """The projects the principal may pull from, as the DB says now (its own roles and groups, a
        robot's permissions, public projects), whatever a token it holds names: where an automatic
        mount (no `from`) may take a blob from."""
        with self._db.read() as connection:
            account = _account(connection, principal)
            if account is None:
                return Visibility(all=False)
            admin, user_id, robot_id = account
            if admin:
                return Visibility(all=True)
            names = set(connection.scalars(select(ProjectRow.name).where(ProjectRow.public)))
            if user_id is not None:
                groups = select(UserGroupRow.group_id).where(UserGroupRow.user_id == user_id)
                rows = connection.execute(
                    select(ProjectRow.name, ProjectMemberRow.role)
                    .join(ProjectMemberRow, ProjectMemberRow.project_id == ProjectRow.id)
                    .where(or_(ProjectMemberRow.user_id == user_id, ProjectMemberRow.group_id.in_(groups)))
                )
                names.update(name for name, role in rows if Permission.PULL in permissions_of_role(role))
            elif robot_id is not None:
                rows = connection.execute(
                    select(ProjectRow.name, RobotPermissionRow.actions)
                    .join(RobotPermissionRow, RobotPermissionRow.project_id == ProjectRow.id)
                    .where(RobotPermissionRow.robot_id == robot_id)
                )
                names.update(
                    name for name, actions in rows if Permission.PULL in permissions_of_robot_actions(actions)
                )
            return Visibility(all=False, projects=frozenset(names))

    # --- internals ----------------------------------------------------------------------------
    def _access(self, principal: Principal, projects: Collection[str]) -> _Access:
        """One query: the account's state joined with its roles in the named projects."""
        names = sorted(projects)
        with self._db.read() as connection:
            if principal.kind is PrincipalKind.ANONYMOUS:
                access = _Access(active=True)
                if names:
                    for row in connection.execute(_PUBLIC, {"names": names}):
                        _add(access, row.project, row.public, frozenset())
                return access
            if principal.kind is PrincipalKind.USER:
                by_id = principal.id is not None
                statement = _USER_ACCESS_BY_ID if by_id else _USER_ACCESS_BY_NAME
                key = principal.id if by_id else principal.name
                rows = connection.execute(statement, {"key": key, "names": names}).all()
                if not rows or rows[0].username != principal.name or rows[0].disabled:
                    return _Access(active=False)
                access = _Access(active=True, admin=bool(rows[0].admin or rows[0].directory_admin))
                for row in rows:
                    if row.project is not None:
                        _add(access, row.project, row.public, permissions_of_role(row.role or ""))
                return access
            if principal.kind is PrincipalKind.ROBOT:
                by_id = principal.id is not None
                statement = _ROBOT_ACCESS_BY_ID if by_id else _ROBOT_ACCESS_BY_NAME
                key = principal.id if by_id else principal.name
                rows = connection.execute(statement, {"key": key, "names": names}).all()
                if not rows or rows[0].name != principal.name or not _robot_usable(rows[0]):
                    return _Access(active=False)
                access = _Access(active=True)
                for row in rows:
                    if row.project is not None:
                        _add(access, row.project, row.public, permissions_of_robot_actions(row.actions or ""))
                return access
        return _Access(active=False)


def _account(connection: Connection, principal: Principal) -> tuple[bool, int | None, int | None] | None:
    """(is admin, user id, robot id) of an enabled account; None if it is unknown, disabled or expired.

    Anonymous is (False, None, None)."""
    if principal.kind is PrincipalKind.ANONYMOUS:
        return False, None, None
    by_id = principal.id is not None
    key = principal.id if by_id else principal.name
    if principal.kind is PrincipalKind.USER:
        statement = _USER_ACCESS_BY_ID if by_id else _USER_ACCESS_BY_NAME
        user = connection.execute(statement, {"key": key, "names": []}).first()
        if user is None or user.username != principal.name or user.disabled:
            return None
        return bool(user.admin or user.directory_admin), int(user.id), None
    if principal.kind is PrincipalKind.ROBOT:
        statement = _ROBOT_ACCESS_BY_ID if by_id else _ROBOT_ACCESS_BY_NAME
        robot = connection.execute(statement, {"key": key, "names": []}).first()
        if robot is None or robot.name != principal.name or not _robot_usable(robot):
            return None
        return False, None, int(robot.id)
    return None


def _robot_usable(row: Any) -> bool:
    return not row.disabled and (row.expires_at is None or row.expires_at > utcnow())


# Built once: constructing a statement costs more than running it, and these run on every token request.
_users, _robots = UserRow.__table__, RobotRow.__table__
_projects, _members = ProjectRow.__table__, ProjectMemberRow.__table__
_robot_permissions, _user_groups = RobotPermissionRow.__table__, UserGroupRow.__table__
_NAMES: Any = bindparam("names", expanding=True)
_PUBLIC = select(_projects.c.name.label("project"), _projects.c.public).where(_projects.c.name.in_(_NAMES))


def _user_access(key_column: Any) -> Any:
    own_groups = select(_user_groups.c.group_id).where(_user_groups.c.user_id == _users.c.id)
    return (
        select(
            _users.c.id,
            _users.c.username,
            _users.c.admin,
            _users.c.directory_admin,
            _users.c.disabled,
            _projects.c.name.label("project"),
            _projects.c.public,
            _members.c.role,
        )
        .select_from(
            _users.outerjoin(_projects, _projects.c.name.in_(_NAMES)).outerjoin(
                _members,
                and_(
                    _members.c.project_id == _projects.c.id,
                    or_(
                        _members.c.user_id == _users.c.id,
                        _members.c.group_id.in_(own_groups),
                    ),
                ),
            )
        )
        .where(key_column == bindparam("key"))
    )


def _robot_access(key_column: Any) -> Any:
    return (
        select(
            _robots.c.id,
            _robots.c.name,
            _robots.c.disabled,
            _robots.c.expires_at,
            _projects.c.name.label("project"),
            _projects.c.public,
            _robot_permissions.c.actions,
        )
        .select_from(
            _robots.outerjoin(_projects, _projects.c.name.in_(_NAMES)).outerjoin(
                _robot_permissions,
                and_(
                    _robot_permissions.c.project_id == _projects.c.id,
                    _robot_permissions.c.robot_id == _robots.c.id,
                ),
            )
        )
        .where(key_column == bindparam("key"))
    )


_USER_ACCESS_BY_ID = _user_access(_users.c.id)
_USER_ACCESS_BY_NAME = _user_access(_users.c.username)
_ROBOT_ACCESS_BY_ID = _robot_access(_robots.c.id)
_ROBOT_ACCESS_BY_NAME = _robot_access(_robots.c.name)


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
