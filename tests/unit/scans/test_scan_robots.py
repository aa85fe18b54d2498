"""The pull robot an external scan makes (scans.adapters.Adapters.pull_authorization): recorded in the
audit log when made and deleted, and the robots a killed scan left behind swept by the next scan, never a
robot that is not a scan's. Run on SQLite and PostgreSQL (the `database` fixture)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from dockyard.accounts.models import RobotRow
from dockyard.accounts.robots import RobotService
from dockyard.audit.interfaces import ActorKind, AuditAction, ResourceType
from dockyard.audit.services import CollectingRecorder
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.endpoints.secrets import SecretBox
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import ProjectService
from dockyard.scans.adapters import Adapters
from dockyard.upstream.addresses import AddressGuard


@dataclass
class IssuedToken:
    token: str


class Tokens:
    """The token service's one call the adapter makes (issuing needs signing keys, tested elsewhere)."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime

    def issue(self, principal: object, scopes: object) -> IssuedToken:
        return IssuedToken(f"token-for-{getattr(principal, 'name', '?')}")


def robot_names(database: Database) -> set[str]:
    with database.read() as connection:
        return set(connection.execute(select(RobotRow.name)).scalars())


def adapters(database: Database, audit: CollectingRecorder) -> Adapters:
    box = SecretBox(b"passphrase")
    guard = AddressGuard(["127.0.0.0/8"])
    return Adapters(database, lambda: box, guard, "http://127.0.0.1:5000", Tokens, audit=audit)


def test_the_scan_robot_is_audited_when_made_and_deleted(database: Database) -> None:
    ProjectService(database).create("team")
    audit = CollectingRecorder()
    authorization, done = adapters(database, audit).pull_authorization("team/app", 30)
    (robot,) = robot_names(database)
    assert robot.startswith("robot$team+scan-") and authorization == f"Bearer token-for-{robot}"
    done()
    assert robot_names(database) == set()
    made, deleted = audit.events
    assert (made.action, deleted.action) == (AuditAction.CREATE, AuditAction.DELETE)
    for event in (made, deleted):
        assert (event.actor, event.actor_kind) == ("scan", ActorKind.SYSTEM)
        assert (event.resource_type, event.resource_name) == (ResourceType.ROBOT, robot)
        assert event.detail is not None and event.detail["repository"] == "team/app"


def test_robots_a_killed_scan_left_are_swept_by_the_next_scan_and_only_those(database: Database) -> None:
    ProjectService(database).create("team")
    robots = RobotService(database)
    access = RobotAccessService(database, robots)
    soon = utcnow() + timedelta(hours=1)
    for name in ("scan-leftover", "scan-running", "ci", "scanner-of-mine"):
        access.create(name, project="team", permissions={"team": ["pull"]}, expires_at=soon)
    robots.create("scan-system", expires_at=soon)  # a system robot: not a scan's
    # The leftover and three robots that are not a scan's expired long ago; the running scan's has not.
    expired = utcnow() - timedelta(hours=2)
    others = {"robot$team+ci", "robot$scan-system", "robot$team+scanner-of-mine"}
    leftovers = {"robot$team+scan-leftover", *others}
    with database.write() as connection:
        connection.execute(update(RobotRow).where(RobotRow.name.in_(leftovers)).values(expires_at=expired))
    audit = CollectingRecorder()
    _, done = adapters(database, audit).pull_authorization("team/app", 30)
    swept = [e for e in audit.events if e.action is AuditAction.DELETE]
    assert [e.resource_name for e in swept] == ["robot$team+scan-leftover"]
    names = robot_names(database)
    assert "robot$team+scan-leftover" not in names
    assert {"robot$team+scan-running", *others} <= names
    done()
