"""A migrated database (SQLite; PostgreSQL in the PostgreSQL pass) and the account/project services on
it, for the unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.accounts.groups import GroupService
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.users import UserService
from dockyard.db.session import Database
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService
from tests.support.postgres import migrated_scratch_database

PASSWORD = "correct horse battery staple"


def migrated_database(directory: Path) -> Database:
    """SQLite in `directory`; or, in the PostgreSQL pass, a fresh database of its own there (so the
    same tests run on both): see tests/support/postgres.py."""
    return migrated_scratch_database(directory)


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
