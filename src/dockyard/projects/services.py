"""Projects and their members."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.accounts.groups import ensure_group
from dockyard.accounts.interfaces import UserNotFound, UserSource
from dockyard.accounts.models import GroupRow, RobotRow, UserRow, username_is
from dockyard.db.base import utcnow
from dockyard.db.dialect import insert_ignore
from dockyard.db.paging import page_rows, substring
from dockyard.db.session import Database
from dockyard.projects.interfaces import (
    Member,
    MemberExists,
    MemberKind,
    MemberNotFound,
    Page,
    Project,
    ProjectExists,
    ProjectNotFound,
)
from dockyard.projects.models import ProjectMemberRow, ProjectRow
from dockyard.projects.rbac import Role, parse_role, validate_project_name

_COLUMNS = (ProjectRow.id, ProjectRow.name, ProjectRow.public, ProjectRow.created_at)
_MEMBER_SORTABLE = {"role": ProjectMemberRow.role, "created_at": ProjectMemberRow.created_at}
_SORTABLE = {"name": ProjectRow.name, "created_at": ProjectRow.created_at, "id": ProjectRow.id}


# Built once, on the table's columns: building a statement and its cache key cost more CPU than
# running it, and these run on most management API requests.
_table = ProjectRow.__table__
_BY_NAME = select(_table.c.id, _table.c.name, _table.c.public, _table.c.created_at).where(
    _table.c.name == bindparam("name")
)
_ID_BY_NAME = select(_table.c.id).where(_table.c.name == bindparam("name"))
_ALL = select(_table.c.id, _table.c.name, _table.c.public, _table.c.created_at)
_ALL_SORTABLE = {"name": _table.c.name, "created_at": _table.c.created_at, "id": _table.c.id}


def _project(row: Any) -> Project:
    return Project(id=row.id, name=row.name, public=bool(row.public), created_at=row.created_at)


def project_id(connection: Connection, name: str) -> int:
    found = connection.execute(_ID_BY_NAME, {"name": name}).scalar()
    if found is None:
        raise ProjectNotFound(detail={"project": name})
    return int(found)


class ProjectService:
    def __init__(self, db: Database, on_delete: Callable[[], None] | None = None) -> None:
        """`on_delete` runs after a delete commits: caches of project policies (quota limits,
        immutability rules) keyed by name must forget a project that may come back without them."""
        self._db = db
        self._on_delete = on_delete

    def create(self, name: str, *, public: bool = False, owner: str | None = None) -> Project:
        """A new project; `owner` (a username) becomes its project admin, as in Harbor."""
        validate_project_name(name)
        now = utcnow()
        try:
            with self._db.write() as connection:
                new_id = connection.execute(
                    insert(ProjectRow)
                    .values(name=name, public=public, created_at=now, updated_at=now)
                    .returning(ProjectRow.id)
                ).scalar_one()
                if owner is not None:
                    user_id = _user_id(connection, owner)
                    connection.execute(
                        insert(ProjectMemberRow).values(
                            project_id=new_id, user_id=user_id, role=Role.PROJECT_ADMIN.value, created_at=now
                        )
                    )
        except IntegrityError as error:
            raise ProjectExists(detail={"project": name}) from error
        return self.get(name)

    def ensure(self, name: str) -> Project:
        """The project, created (private, no members) if missing: for a push by someone who may create
        projects. Safe against a concurrent create of the same name."""
        validate_project_name(name)
        now = utcnow()
        with self._db.write() as connection:
            insert_ignore(
                connection, ProjectRow, {"name": name, "public": False, "created_at": now, "updated_at": now}
            )
            row = connection.execute(select(*_COLUMNS).where(ProjectRow.name == name)).one()
        return _project(row)

    def find(self, name: str) -> Project | None:
        with self._db.read() as connection:
            row = connection.execute(_BY_NAME, {"name": name}).first()
        return _project(row) if row else None

    def get(self, name: str) -> Project:
        project = self.find(name)
        if project is None:
            raise ProjectNotFound(detail={"project": name})
        return project

    def list(
        self,
        *,
        visible: Collection[str] | None = None,
        search: str | None = None,
        public: bool | None = None,
        offset: int = 0,
        limit: int = 100,
        sort: str = "name",
        descending: bool = False,
    ) -> Page[Project]:
        """Projects, only those named in `visible` when it is given (see AccessPolicy.visible_projects)."""
        if visible is None and not search and public is None:  # all of them: statements built once
            with self._db.read() as connection:
                rows, total = page_rows(
                    connection,
                    _ALL,
                    sortable=_ALL_SORTABLE,
                    sort=sort,
                    descending=descending,
                    offset=offset,
                    limit=limit,
                    tiebreak=_table.c.id,
                    values={},
                )
            return Page([_project(row) for row in rows], total)
        query = select(*_COLUMNS)
        if visible is not None:
            query = query.where(ProjectRow.name.in_(sorted(visible)))
        if search:
            query = query.where(substring(ProjectRow.name, search))
        if public is not None:
            query = query.where(ProjectRow.public == public)
        with self._db.read() as connection:
            rows, total = page_rows(
                connection,
                query,
                sortable=_SORTABLE,
                sort=sort,
                descending=descending,
                offset=offset,
                limit=limit,
                tiebreak=ProjectRow.id,
            )
        return Page([_project(row) for row in rows], total)

    def update(self, name: str, *, public: bool | None = None) -> Project:
        if public is not None:
            with self._db.write() as connection:
                result = connection.execute(
                    update(ProjectRow)
                    .where(ProjectRow.name == name)
                    .values(public=public, updated_at=utcnow())
                )
            if result.rowcount == 0:
                raise ProjectNotFound(detail={"project": name})
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete the project, its members, its robots' permissions and its project-level robots.

        The caller checks first that it holds no repositories (the registry knows those)."""
        with self._db.write() as connection:
            result = connection.execute(delete(ProjectRow).where(ProjectRow.name == name))
            if result.rowcount == 0:
                raise ProjectNotFound(detail={"project": name})
            connection.execute(delete(RobotRow).where(RobotRow.project == name))
        if self._on_delete is not None:
            self._on_delete()


class MemberService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_user(self, project: str, username: str, role: str | Role) -> Member:
        role = parse_role(role)
        with self._db.write() as connection:
            user_id = _user_id(connection, username)
            member_id = self._insert(connection, project, {"user_id": user_id}, role, username)
        return self.get(project, member_id)

    def add_group(self, project: str, group: str, role: str | Role) -> Member:
        """Give a group a role; a directory group may be added before any of its members has logged in."""
        role = parse_role(role)
        with self._db.write() as connection:
            group_id = ensure_group(connection, group, UserSource.LDAP).id
            member_id = self._insert(connection, project, {"group_id": group_id}, role, group)
        return self.get(project, member_id)

    def get(self, project: str, member_id: int) -> Member:
        with self._db.read() as connection:
            row = connection.execute(
                _member_query().where(ProjectRow.name == project, ProjectMemberRow.id == member_id)
            ).first()
        if row is None:
            raise MemberNotFound(detail={"project": project, "id": member_id})
        return _member(row)

    def list(
        self,
        project: str,
        *,
        search: str | None = None,
        role: str | None = None,
        offset: int = 0,
        limit: int = 100,
        sort: str = "name",
        descending: bool = False,
    ) -> Page[Member]:
        if not search and role is None:  # statements built once
            query, name, values = _MEMBERS_OF, _MEMBER_NAME, {"project": project}
        else:
            query, name, values = _member_query().where(ProjectRow.name == project), _member_name(), None
        if search:
            query = query.where(substring(name, search))
        if role is not None:
            query = query.where(ProjectMemberRow.role == parse_role(role).value)
        with self._db.read() as connection:
            project_id(connection, project)  # an unknown project is an error, not an empty list
            rows, total = page_rows(
                connection,
                query,
                sortable={"name": name, **_MEMBER_SORTABLE},
                sort=sort,
                descending=descending,
                offset=offset,
                limit=limit,
                tiebreak=ProjectMemberRow.id,
                values=values,
            )
        return Page([_member(row) for row in rows], total)

    def set_role(self, project: str, member_id: int, role: str | Role) -> Member:
        role = parse_role(role)
        with self._db.write() as connection:
            result = connection.execute(
                update(ProjectMemberRow)
                .where(
                    ProjectMemberRow.id == member_id,
                    ProjectMemberRow.project_id == project_id(connection, project),
                )
                .values(role=role.value)
            )
        if result.rowcount == 0:
            raise MemberNotFound(detail={"project": project, "id": member_id})
        return self.get(project, member_id)

    def remove(self, project: str, member_id: int) -> None:
        with self._db.write() as connection:
            result = connection.execute(
                delete(ProjectMemberRow).where(
                    ProjectMemberRow.id == member_id,
                    ProjectMemberRow.project_id == project_id(connection, project),
                )
            )
        if result.rowcount == 0:
            raise MemberNotFound(detail={"project": project, "id": member_id})

    @staticmethod
    def _insert(connection: Connection, project: str, who: dict[str, int], role: Role, name: str) -> int:
        values = {"project_id": project_id(connection, project), "role": role.value, "created_at": utcnow()}
        try:
            with connection.begin_nested():
                return int(
                    connection.execute(
                        insert(ProjectMemberRow).values(**values, **who).returning(ProjectMemberRow.id)
                    ).scalar_one()
                )
        except IntegrityError as error:
            raise MemberExists(detail={"project": project, "member": name}) from error


def _member_name() -> Any:
    return func.coalesce(UserRow.username, GroupRow.name)


def _member_query() -> Any:
    return (
        select(
            ProjectMemberRow.id,
            ProjectRow.name.label("project"),
            ProjectMemberRow.user_id,
            _member_name().label("member_name"),
            ProjectMemberRow.role,
            ProjectMemberRow.created_at,
        )
        .join(ProjectRow, ProjectRow.id == ProjectMemberRow.project_id)
        .outerjoin(UserRow, UserRow.id == ProjectMemberRow.user_id)
        .outerjoin(GroupRow, GroupRow.id == ProjectMemberRow.group_id)
    )


def _member(row: Any) -> Member:
    return Member(
        id=row.id,
        project=row.project,
        kind=MemberKind.USER if row.user_id is not None else MemberKind.GROUP,
        name=row.member_name,
        role=Role(row.role),
        created_at=row.created_at,
    )


def _user_id(connection: Connection, username: str) -> int:
    found = connection.execute(select(UserRow.id).where(username_is(username))).scalar()
    if found is None:
        raise UserNotFound(detail={"username": username})
    return int(found)


_MEMBER_NAME = _member_name()
_MEMBERS_OF = _member_query().where(ProjectRow.name == bindparam("project"))
