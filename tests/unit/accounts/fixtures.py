"""A migrated SQLite database and the account/project services on it, for the unit tests."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from dockyard.accounts.groups import GroupService
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.users import UserService
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService

PASSWORD = "correct horse battery staple"


def migrated_database(directory: Path) -> Database:
    """SQLite in `directory`; or, when DOCKYARD_TEST_POSTGRES_URL names a PostgreSQL server, a fresh
    database of its own there (so the same tests run on both)."""
    server = os.environ.get("DOCKYARD_TEST_POSTGRES_URL")
    if server:
        name = f"dockyard_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        engine = build_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    else:
        engine = build_engine(f"sqlite:///{directory / 'dockyard.db'}")
    upgrade(engine)
    return Database(engine)


@dataclass
class Services:
    db: Database
    users: UserService
    groups: GroupService
    tokens: PersonalTokenService
    robots: RobotService
    projects: ProjectService
    members: MemberService
    robot_access: RobotAccessService

    @classmethod
    def on(cls, db: Database) -> Services:
        robots = RobotService(db)
        return cls(
            db=db,
            users=UserService(db),
            groups=GroupService(db),
            tokens=PersonalTokenService(db),
            robots=robots,
            projects=ProjectService(db),
            members=MemberService(db),
            robot_access=RobotAccessService(db, robots),
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    max_failures: int = 5, window: float = 60.0, clock: FakeClock | None = None
) -> InProcessLoginLimiter:
    return InProcessLoginLimiter(max_failures, window, clock=clock or FakeClock())
