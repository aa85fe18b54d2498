"""Robot accounts with their per-project permissions (pull, push, delete).

A system robot (`robot$ci`) may hold permissions on any projects; a project robot (`robot$team+ci`)
only on its own project, so it cannot be used to reach across projects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from dockyard.accounts.interfaces import NewRobot, Robot, RobotNotFound
from dockyard.accounts.models import RobotRow
from dockyard.accounts.robots import RobotService, insert_robot
from dockyard.db.session import Database
from dockyard.projects.interfaces import InvalidPermission
from dockyard.projects.models import ProjectRow, RobotPermissionRow
from dockyard.projects.rbac import ROBOT_ACTIONS
from dockyard.projects.services import project_id

RobotPermissions = Mapping[str, Iterable[str]]  # project name -> actions


class RobotAccessService:
    """Creates robots together with their permissions, in one transaction, and edits those permissions.

    The identity itself (secret refresh, disable, expiry, delete) is `accounts.RobotService`."""

    def __init__(self, db: Database, robots: RobotService) -> None:
        self._db = db
        self.robots = robots

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        permissions: RobotPermissions,
        description: str | None = None,
        expires_at: datetime | None = None,
    ) -> NewRobot:
        """A new robot; `project` makes it a project robot. Its secret is in the result only."""
        wanted = _normalise(permissions, project)
        with self._db.write() as connection:
            if project is not None:
                project_id(connection, project)
            created = insert_robot(connection, name, project, description=description, expires_at=expires_at)
            self._replace(connection, created.robot.id, wanted)
        return created

    def permissions(self, robot_name: str) -> dict[str, frozenset[str]]:
        """Project name -> actions the robot holds there."""
        with self._db.read() as connection:
            robot_id = self._robot(connection, robot_name)[0]
            rows = connection.execute(
                select(ProjectRow.name, RobotPermissionRow.actions)
                .join(ProjectRow, ProjectRow.id == RobotPermissionRow.project_id)
                .where(RobotPermissionRow.robot_id == robot_id)
            )
            return {row.name: frozenset(row.actions.split(",")) for row in rows}

    def set_permissions(self, robot_name: str, permissions: RobotPermissions) -> None:
        """Replace all the robot's permissions."""
        with self._db.write() as connection:
            robot_id, project = self._robot(connection, robot_name)
            self._replace(connection, robot_id, _normalise(permissions, project))

    def robots_with_access(self, project: str) -> list[Robot]:
        """Robots holding any permission on `project`, system robots included."""
        with self._db.read() as connection:
            names = connection.execute(
                select(RobotRow.name)
                .join(RobotPermissionRow, RobotPermissionRow.robot_id == RobotRow.id)
                .where(RobotPermissionRow.project_id == project_id(connection, project))
                .order_by(RobotRow.name)
            ).scalars()
            found = list(names)
        return [self.robots.get(name) for name in found]

    @staticmethod
    def _robot(connection: Connection, name: str) -> tuple[int, str | None]:
        row = connection.execute(select(RobotRow.id, RobotRow.project).where(RobotRow.name == name)).first()
        if row is None:
            raise RobotNotFound(detail={"robot": name})
        return int(row.id), row.project

    @staticmethod
    def _replace(connection: Connection, robot_id: int, wanted: dict[str, frozenset[str]]) -> None:
        rows = [
            {
                "robot_id": robot_id,
                "project_id": project_id(connection, project),
                "actions": ",".join(sorted(acts)),
            }
            for project, acts in sorted(wanted.items())
        ]
        connection.execute(delete(RobotPermissionRow).where(RobotPermissionRow.robot_id == robot_id))
        if rows:
            connection.execute(insert(RobotPermissionRow), rows)


def _normalise(permissions: RobotPermissions, own_project: str | None) -> dict[str, frozenset[str]]:
    """Check the permission list: known actions only, and only the own project for a project robot."""
    wanted: dict[str, frozenset[str]] = {}
    for project, actions in permissions.items():
        acts = frozenset(actions)
        unknown = acts - ROBOT_ACTIONS.keys()
        if unknown or not acts:
            raise InvalidPermission(
                "robot permissions are non-empty lists of pull, push and delete",
                detail={"project": project, "actions": sorted(acts)},
            )
        if own_project is not None and project != own_project:
            raise InvalidPermission(
                "a project robot can only have permissions on its own project",
                detail={"robot_project": own_project, "project": project},
            )
        wanted[project] = acts
    return wanted
