"""Groups of users: local ones, and directory (LDAP) groups mirrored from each login.

Project members can be groups, so a directory group gets its project role without anyone adding
its members one by one.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from dockyard.accounts.interfaces import Group, GroupExists, GroupNotFound, Page, UserNotFound, UserSource
from dockyard.accounts.models import GroupRow, UserGroupRow, UserRow, username_is
from dockyard.accounts.names import validate_group_name
from dockyard.db.base import utcnow
from dockyard.db.dialect import insert_ignore
from dockyard.db.paging import page_rows, substring
from dockyard.db.session import Database

_COLUMNS = (GroupRow.id, GroupRow.name, GroupRow.source)
# Built once: a session's check reads the user's groups on every miss (`users._CREDENTIAL_STATE`).
_GROUPS_OF = (
    select(GroupRow.name)
    .join(UserGroupRow, UserGroupRow.group_id == GroupRow.id)
    .where(UserGroupRow.user_id == bindparam("user_id"))
)


def _group(row: Any) -> Group:
    return Group(id=row.id, name=row.name, source=UserSource(row.source))


class GroupService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, name: str, source: UserSource = UserSource.LOCAL) -> Group:
        validate_group_name(name)
        try:
            with self._db.write() as connection:
                connection.execute(
                    insert(GroupRow).values(name=name, source=source.value, created_at=utcnow())
                )
        except IntegrityError as error:
            raise GroupExists(detail={"group": name}) from error
        return self.get(name)

    def ensure(self, name: str, source: UserSource = UserSource.LOCAL) -> Group:
        """The group, created if it does not exist yet (safe against a concurrent create)."""
        validate_group_name(name)
        with self._db.write() as connection:
            return ensure_group(connection, name, source)

    def find(self, name: str) -> Group | None:
        with self._db.read() as connection:
            row = connection.execute(select(*_COLUMNS).where(GroupRow.name == name)).first()
        return _group(row) if row else None

    def get(self, name: str) -> Group:
        group = self.find(name)
        if group is None:
            raise GroupNotFound(detail={"group": name})
        return group

    def get_by_id(self, group_id: int) -> Group:
        with self._db.read() as connection:
            row = connection.execute(select(*_COLUMNS).where(GroupRow.id == group_id)).first()
        if row is None:
            raise GroupNotFound(detail={"group_id": group_id})
        return _group(row)

    def list(
        self,
        *,
        search: str | None = None,
        offset: int = 0,
        limit: int = 100,
        sort: str = "name",
        descending: bool = False,
    ) -> Page[Group]:
        query = select(*_COLUMNS)
        if search:
            query = query.where(substring(GroupRow.name, search))
        with self._db.read() as connection:
            rows, total = page_rows(
                connection,
                query,
                sortable={"name": GroupRow.name, "id": GroupRow.id},
                sort=sort,
                descending=descending,
                offset=offset,
                limit=limit,
                tiebreak=GroupRow.id,
            )
        return Page([_group(row) for row in rows], total)

    def delete(self, name: str) -> None:
        """Delete a group, its user links and its project memberships."""
        with self._db.write() as connection:
            result = connection.execute(delete(GroupRow).where(GroupRow.name == name))
        if result.rowcount == 0:
            raise GroupNotFound(detail={"group": name})

    def add_user(self, name: str, username: str) -> None:
        with self._db.write() as connection:
            group_id = self._group_id(connection, name)
            user_id = _user_id(connection, username)
            insert_ignore(connection, UserGroupRow, {"user_id": user_id, "group_id": group_id})

    def remove_user(self, name: str, username: str) -> None:
        with self._db.write() as connection:
            group_id = self._group_id(connection, name)
            user_id = _user_id(connection, username)
            connection.execute(
                delete(UserGroupRow).where(UserGroupRow.user_id == user_id, UserGroupRow.group_id == group_id)
            )

    def members(self, name: str) -> builtins.list[str]:
        with self._db.read() as connection:
            group_id = self._group_id(connection, name)
            rows = connection.execute(
                select(UserRow.username)
                .join(UserGroupRow, UserGroupRow.user_id == UserRow.id)
                .where(UserGroupRow.group_id == group_id)
                .order_by(UserRow.username)
            )
            return [row.username for row in rows]

    def groups_of(self, user_id: int) -> frozenset[str]:
        with self._db.read() as connection:
            return frozenset(connection.scalars(_GROUPS_OF, {"user_id": user_id}))

    def set_directory_groups(
        self, user_id: int, names: Iterable[str], source: UserSource = UserSource.LDAP
    ) -> frozenset[str]:
        """Make the user's memberships of groups from `source` (LDAP, or the OpenID provider) exactly
        `names`; local groups are kept. For LDAP a group of that name that already exists is used
        whatever its source. An OpenID provider manages its user's memberships of every directory group
        (its own, and the LDAP-sourced ones project memberships create for a group named before anyone
        logged in): it joins and leaves those, never a local group (a name a local group has is left
        out: that membership would not be the provider's to take away again).
        Returns all the user's group names afterwards."""
        wanted = {name for name in names if name}
        for name in wanted:
            validate_group_name(name)
        with self._db.write() as connection:
            groups = [ensure_group(connection, name, source) for name in sorted(wanted)]
            managed = {source.value}
            if source is UserSource.OIDC:
                managed.add(UserSource.LDAP.value)
                groups = [group for group in groups if group.source.value in managed]
            ids = {group.id for group in groups}
            current = {
                row.group_id
                for row in connection.execute(
                    select(UserGroupRow.group_id)
                    .join(GroupRow, GroupRow.id == UserGroupRow.group_id)
                    .where(UserGroupRow.user_id == user_id, GroupRow.source.in_(sorted(managed)))
                )
            }
            if current - ids:
                connection.execute(
                    delete(UserGroupRow).where(
                        UserGroupRow.user_id == user_id, UserGroupRow.group_id.in_(current - ids)
                    )
                )
            insert_ignore(
                connection, UserGroupRow, [{"user_id": user_id, "group_id": gid} for gid in ids - current]
            )
        return self.groups_of(user_id)

    @staticmethod
    def _group_id(connection: Connection, name: str) -> int:
        group_id = connection.execute(select(GroupRow.id).where(GroupRow.name == name)).scalar()
        if group_id is None:
            raise GroupNotFound(detail={"group": name})
        return int(group_id)


def ensure_group(connection: Connection, name: str, source: UserSource) -> Group:
    insert_ignore(connection, GroupRow, {"name": name, "source": source.value, "created_at": utcnow()})
    row = connection.execute(select(*_COLUMNS).where(GroupRow.name == name)).one()
    return _group(row)


def _user_id(connection: Connection, username: str) -> int:
    user_id = connection.execute(select(UserRow.id).where(username_is(username))).scalar()
    if user_id is None:
        raise UserNotFound(detail={"username": username})
    return int(user_id)
