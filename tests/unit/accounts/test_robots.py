"""Robot accounts: names, secrets shown once, expiry, disable, secret refresh."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dockyard.accounts.interfaces import InvalidExpiry, InvalidName, RobotExists, RobotLevel, RobotNotFound
from dockyard.accounts.models import RobotRow
from dockyard.db.base import utcnow
from tests.unit.accounts.fixtures import Services


def test_system_and_project_robots(services: Services) -> None:
    system = services.robots.create("ci")
    project = services.robots.create("ci", "team", description="builds")
    assert system.robot.name == "robot$ci" and system.robot.level is RobotLevel.SYSTEM
    assert project.robot.name == "robot$team+ci" and project.robot.level is RobotLevel.PROJECT
    assert project.robot.project == "team" and project.robot.description == "builds"
    assert system.secret.startswith("dyr_") and system.secret != project.secret
    with services.db.read() as connection:
        stored = list(connection.execute(select(RobotRow.secret_hash)).scalars())
    assert system.secret not in stored and project.secret not in stored


def test_duplicates_and_bad_names(services: Services) -> None:
    services.robots.create("ci", "team")
    with pytest.raises(RobotExists):
        services.robots.create("ci", "team")
    with pytest.raises(InvalidName):
        services.robots.create("CI")
    with pytest.raises(InvalidName):
        services.robots.create("ci", "Team")
    with pytest.raises(InvalidExpiry):
        services.robots.create("old", expires_at=utcnow() - timedelta(seconds=1))


def test_authenticate(services: Services) -> None:
    created = services.robots.create("ci", "team")
    robot = services.robots.authenticate("robot$team+ci", created.secret)
    assert robot == created.robot
    assert services.robots.authenticate("robot$team+ci", created.secret + "x") is None
    assert services.robots.authenticate("robot$other+ci", created.secret) is None
    assert services.robots.authenticate("team+ci", created.secret) is None


def test_disabled_and_expired_robots_are_refused(services: Services) -> None:
    created = services.robots.create("ci", expires_at=utcnow() + timedelta(days=1))
    services.robots.update("robot$ci", disabled=True)
    assert services.robots.authenticate("robot$ci", created.secret) is None
    services.robots.update("robot$ci", disabled=False)
    assert services.robots.authenticate("robot$ci", created.secret) is not None
    with services.db.write() as connection:
        connection.execute(update(RobotRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert services.robots.authenticate("robot$ci", created.secret) is None
    assert services.robots.get("robot$ci").expired(utcnow())
    with pytest.raises(InvalidExpiry):
        services.robots.update("robot$ci", expires_at=utcnow() - timedelta(days=1))
    services.robots.update("robot$ci", expires_at=None)  # never expires
    assert services.robots.authenticate("robot$ci", created.secret) is not None


def test_refresh_secret_retires_the_old_one(services: Services) -> None:
    created = services.robots.create("ci")
    fresh = services.robots.refresh_secret("robot$ci")
    assert fresh != created.secret
    assert services.robots.authenticate("robot$ci", created.secret) is None
    assert services.robots.authenticate("robot$ci", fresh) is not None
    with pytest.raises(RobotNotFound):
        services.robots.refresh_secret("robot$nope")


def test_list_and_delete(services: Services) -> None:
    services.robots.create("ci")
    services.robots.create("ci", "team")
    services.robots.create("deploy", "team")
    services.robots.create("ci", "other")
    assert services.robots.list().total == 4
    assert [r.name for r in services.robots.list(project=None).items] == ["robot$ci"]
    assert [r.name for r in services.robots.list(project="team").items] == [
        "robot$team+ci",
        "robot$team+deploy",
    ]
    assert [r.name for r in services.robots.list(search="deploy").items] == ["robot$team+deploy"]
    services.robots.delete("robot$team+ci")
    assert services.robots.find("robot$team+ci") is None
    with pytest.raises(RobotNotFound):
        services.robots.delete("robot$team+ci")
