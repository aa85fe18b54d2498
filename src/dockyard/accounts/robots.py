"""Robot accounts: non-human identities for CI, with a secret shown once, an expiry, and a disable switch.

Their per-project permissions live in `projects` (which knows projects); this module keeps the identity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.accounts.credentials import (
    ROBOT_SECRET_PREFIX,
    Credential,
    CredentialKind,
    fingerprint,
    hash_secret,
    new_secret,
    same_fingerprint,
    secret_matches,
)
from dockyard.accounts.interfaces import (
    DEAD_CREDENTIAL,
    CredentialState,
    InvalidExpiry,
    NewRobot,
    Page,
    Robot,
    RobotExists,
    RobotNotFound,
)
from dockyard.accounts.models import RobotRow
from dockyard.accounts.names import is_robot_name, robot_full_name
from dockyard.db.base import utcnow
from dockyard.db.paging import page_rows, substring
from dockyard.db.session import Database

_COLUMNS = (
    RobotRow.id,
    RobotRow.name,
    RobotRow.project,
    RobotRow.description,
    RobotRow.expires_at,
    RobotRow.disabled,
    RobotRow.created_at,
)
_SORTABLE = {"name": RobotRow.name, "created_at": RobotRow.created_at, "expires_at": RobotRow.expires_at}
_UNSET: Any = object()


def _robot(row: Any) -> Robot:
    return Robot(
        id=row.id,
        name=row.name,
        project=row.project,
        description=row.description,
        expires_at=row.expires_at,
        disabled=bool(row.disabled),
        created_at=row.created_at,
    )


def insert_robot(
    connection: Connection,
    name: str,
    project: str | None,
    *,
    description: str | None = None,
    expires_at: datetime | None = None,
) -> NewRobot:
    """Create a robot inside the caller's transaction (so its permissions can go in the same one)."""
    full_name = robot_full_name(name, project)
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidExpiry()
    secret = new_secret(ROBOT_SECRET_PREFIX)
    try:
        with connection.begin_nested():
            robot_id = connection.execute(
                insert(RobotRow)
                .values(
                    name=full_name,
                    project=project,
                    description=description,
                    secret_hash=hash_secret(secret),
                    expires_at=expires_at,
                    disabled=False,
                    created_at=now,
                    updated_at=now,
                )
                .returning(RobotRow.id)
            ).scalar_one()
    except IntegrityError as error:
        raise RobotExists(detail={"robot": full_name}) from error
    row = connection.execute(select(*_COLUMNS).where(RobotRow.id == robot_id)).one()
    return NewRobot(_robot(row), secret)


# Built once: a robot's bearer tokens check it on every miss.
_SECRET_STATE = select(RobotRow.name, RobotRow.disabled, RobotRow.expires_at, RobotRow.secret_hash).where(
    RobotRow.id == bindparam("robot_id")
)


class RobotService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        name: str,
        project: str | None = None,
        *,
        description: str | None = None,
        expires_at: datetime | None = None,
    ) -> NewRobot:
        """A robot with no permissions yet (see projects.RobotAccessService.create for both at once)."""
        with self._db.write() as connection:
            return insert_robot(connection, name, project, description=description, expires_at=expires_at)

    def find(self, full_name: str) -> Robot | None:
        with self._db.read() as connection:
            row = connection.execute(select(*_COLUMNS).where(RobotRow.name == full_name)).first()
        return _robot(row) if row else None

    def get(self, full_name: str) -> Robot:
        robot = self.find(full_name)
        if robot is None:
            raise RobotNotFound(detail={"robot": full_name})
        return robot

    def list(
        self,
        *,
        project: str | None = _UNSET,
        search: str | None = None,
        offset: int = 0,
        limit: int = 100,
        sort: str = "name",
        descending: bool = False,
    ) -> Page[Robot]:
        """All robots; `project=None` for system robots only, `project="team"` for team's robots."""
        query = select(*_COLUMNS)
        if project is None:
            query = query.where(RobotRow.project.is_(None))
        elif project is not _UNSET:
            query = query.where(RobotRow.project == project)
        if search:
            query = query.where(substring(RobotRow.name, search))
        with self._db.read() as connection:
            rows, total = page_rows(
                connection,
                query,
                sortable=_SORTABLE,
                sort=sort,
                descending=descending,
                offset=offset,
                limit=limit,
                tiebreak=RobotRow.id,
            )
        return Page([_robot(row) for row in rows], total)

    def update(
        self,
        full_name: str,
        *,
        description: str | None = _UNSET,
        expires_at: datetime | None = _UNSET,
        disabled: bool | None = None,
    ) -> Robot:
        changes: dict[str, Any] = {}
        if description is not _UNSET:
            changes["description"] = description
        if expires_at is not _UNSET:
            if expires_at is not None and expires_at <= utcnow():
                raise InvalidExpiry()
            changes["expires_at"] = expires_at
        if disabled is not None:
            changes["disabled"] = disabled
        self._update(full_name, changes)
        return self.get(full_name)

    def refresh_secret(self, full_name: str) -> str:
        """A new secret for the robot; the old one stops working at once."""
        secret = new_secret(ROBOT_SECRET_PREFIX)
        self._update(full_name, {"secret_hash": hash_secret(secret)})
        return secret

    def delete(self, full_name: str) -> None:
        with self._db.write() as connection:
            result = connection.execute(delete(RobotRow).where(RobotRow.name == full_name))
        if result.rowcount == 0:
            raise RobotNotFound(detail={"robot": full_name})

    def delete_expired(self, name_prefix: str, before: datetime) -> tuple[str, ...]:
        """Delete the project robots named `robot$<project>+<name_prefix>...` that expired before
        `before` (robots made for one job, left behind when the job was killed); their names."""
        pattern = "robot$%+" + name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stale = (RobotRow.name.like(pattern, escape="\\")) & (RobotRow.expires_at < before)
        with self._db.write() as connection:
            names = tuple(str(n) for n in connection.execute(select(RobotRow.name).where(stale)).scalars())
            if names:
                connection.execute(delete(RobotRow).where(RobotRow.name.in_(names)))
        return names

    def authenticate(self, full_name: str, secret: str) -> Robot | None:
        """The robot when the secret is right and it is neither disabled nor expired."""
        login = self.login(full_name, secret)
        return login[0] if login is not None else None

    def login(self, full_name: str, secret: str) -> tuple[Robot, Credential] | None:
        """As authenticate, with the credential the secret is (a refreshed secret is another one)."""
        if not is_robot_name(full_name):
            return None
        with self._db.read() as connection:
            row = connection.execute(
                select(*_COLUMNS, RobotRow.secret_hash).where(RobotRow.name == full_name)
            ).first()
        if row is None or not secret_matches(secret, row.secret_hash):
            return None
        robot = _robot(row)
        if robot.disabled or robot.expired(utcnow()):
            return None
        return robot, Credential(CredentialKind.ROBOT_SECRET, fingerprint(row.secret_hash))

    def credential_state(self, robot_id: int, full_name: str, credential: Credential) -> CredentialState:
        """Whether a login with this robot's secret still stands: dead when the robot is gone,
        disabled, expired, or its secret was refreshed since."""
        if credential.kind is not CredentialKind.ROBOT_SECRET:
            return DEAD_CREDENTIAL
        with self._db.read() as connection:
            row = connection.execute(_SECRET_STATE, {"robot_id": robot_id}).first()
        if row is None or row.name != full_name or row.disabled:
            return DEAD_CREDENTIAL
        if row.expires_at is not None and row.expires_at <= utcnow():
            return DEAD_CREDENTIAL
        return CredentialState(same_fingerprint(credential.fingerprint, row.secret_hash), row.expires_at)

    def _update(self, full_name: str, changes: dict[str, Any]) -> None:
        changes["updated_at"] = utcnow()
        with self._db.write() as connection:
            result = connection.execute(update(RobotRow).where(RobotRow.name == full_name).values(changes))
        if result.rowcount == 0:
            raise RobotNotFound(detail={"robot": full_name})
