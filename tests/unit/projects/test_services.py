"""Projects, members (users and groups) and robots' permissions."""

from __future__ import annotations

import pytest

from dockyard.accounts.interfaces import InvalidName, RobotNotFound, UserNotFound
from dockyard.projects.interfaces import (
    InvalidPermission,
    InvalidRole,
    MemberExists,
    MemberKind,
    MemberNotFound,
    ProjectExists,
    ProjectNotFound,
    Role,
)
from tests.unit.accounts.fixtures import PASSWORD, Services


def test_create_get_update_delete(services: Services) -> None:
    project = services.projects.create("team")
    assert not project.public and services.projects.get("team") == project
    with pytest.raises(ProjectExists):
        services.projects.create("team")
    with pytest.raises(InvalidName):
        services.projects.create("Team")
    assert services.projects.update("team", public=True).public
    services.projects.delete("team")
    assert services.projects.find("team") is None
    with pytest.raises(ProjectNotFound):
        services.projects.delete("team")
    with pytest.raises(ProjectNotFound):
        services.projects.update("team", public=False)


def test_the_creator_becomes_project_admin(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    services.projects.create("team", owner="alice")
    [member] = services.members.list("team").items
    assert (member.kind, member.name, member.role) == (MemberKind.USER, "alice", Role.PROJECT_ADMIN)
    with pytest.raises(UserNotFound):
        services.projects.create("other", owner="nobody")
    assert services.projects.find("other") is None  # all or nothing


def test_ensure_is_idempotent(services: Services) -> None:
    first = services.projects.ensure("team")
    assert services.projects.ensure("team") == first
    assert not first.public
    with pytest.raises(InvalidName):
        services.projects.ensure("Bad")


def test_list_filters(services: Services) -> None:
    for name, public in [("b-team", True), ("a-team", False), ("c-team", False)]:
        services.projects.create(name, public=public)
    assert [p.name for p in services.projects.list().items] == ["a-team", "b-team", "c-team"]
    assert [p.name for p in services.projects.list(visible={"c-team", "b-team", "zzz"}).items] == [
        "b-team",
        "c-team",
    ]
    assert services.projects.list(visible=set()).total == 0
    assert [p.name for p in services.projects.list(public=True).items] == ["b-team"]
    assert [p.name for p in services.projects.list(search="A-").items] == ["a-team"]
    page = services.projects.list(limit=1, offset=1, sort="name", descending=True)
    assert [p.name for p in page.items] == ["b-team"] and page.total == 3


def test_members(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    services.users.create("bob", PASSWORD)
    services.projects.create("team")
    alice = services.members.add_user("team", "alice", "developer")
    group = services.members.add_group("team", "cn=devs,dc=org", Role.GUEST)
    assert group.kind is MemberKind.GROUP and group.role is Role.GUEST
    with pytest.raises(MemberExists):
        services.members.add_user("team", "alice", "guest")
    with pytest.raises(MemberExists):
        services.members.add_group("team", "cn=devs,dc=org", "guest")
    with pytest.raises(InvalidRole):
        services.members.add_user("team", "bob", "owner")
    with pytest.raises(UserNotFound):
        services.members.add_user("team", "nobody", "guest")
    with pytest.raises(ProjectNotFound):
        services.members.add_user("nope", "bob", "guest")
    assert services.members.set_role("team", alice.id, "maintainer").role is Role.MAINTAINER
    page = services.members.list("team")
    assert [(m.name, m.role) for m in page.items] == [
        ("alice", Role.MAINTAINER),
        ("cn=devs,dc=org", Role.GUEST),
    ]
    assert [m.name for m in services.members.list("team", search="DEVS").items] == ["cn=devs,dc=org"]
    assert [m.name for m in services.members.list("team", role="maintainer").items] == ["alice"]
    services.members.remove("team", alice.id)
    with pytest.raises(MemberNotFound):
        services.members.remove("team", alice.id)
    with pytest.raises(ProjectNotFound):
        services.members.list("nope")


def test_a_member_id_of_another_project_is_not_found(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    services.projects.create("team")
    services.projects.create("other")
    member = services.members.add_user("team", "alice", "guest")
    with pytest.raises(MemberNotFound):
        services.members.set_role("other", member.id, "project_admin")
    with pytest.raises(MemberNotFound):
        services.members.remove("other", member.id)
    assert services.members.get("team", member.id).role is Role.GUEST


def test_project_robots_get_permissions_on_their_project_only(services: Services) -> None:
    services.projects.create("team")
    services.projects.create("other")
    created = services.robot_access.create("ci", project="team", permissions={"team": ["pull", "push"]})
    assert created.robot.name == "robot$team+ci"
    assert services.robot_access.permissions("robot$team+ci") == {"team": {"pull", "push"}}
    with pytest.raises(InvalidPermission):
        services.robot_access.create("x", project="team", permissions={"other": ["pull"]})
    with pytest.raises(InvalidPermission):
        services.robot_access.set_permissions("robot$team+ci", {"other": ["pull"]})
    assert services.robots.find("robot$team+x") is None  # nothing half-made


def test_system_robots_may_span_projects(services: Services) -> None:
    services.projects.create("team")
    services.projects.create("other")
    services.robot_access.create("ci", permissions={"team": ["pull"], "other": ["pull", "delete"]})
    assert services.robot_access.permissions("robot$ci") == {"team": {"pull"}, "other": {"pull", "delete"}}
    services.robot_access.set_permissions("robot$ci", {"team": ["push"]})
    assert services.robot_access.permissions("robot$ci") == {"team": {"push"}}
    assert [r.name for r in services.robot_access.robots_with_access("team")] == ["robot$ci"]
    assert services.robot_access.robots_with_access("other") == []


@pytest.mark.parametrize(
    "permissions", [{"team": ["admin"]}, {"team": ["*"]}, {"team": []}, {"team": ["pull", "catalog"]}]
)
def test_robot_permissions_are_pull_push_delete_only(
    services: Services, permissions: dict[str, list[str]]
) -> None:
    services.projects.create("team")
    with pytest.raises(InvalidPermission):
        services.robot_access.create("ci", permissions=permissions)
    assert services.robots.find("robot$ci") is None


def test_robot_permissions_on_unknown_projects_or_robots(services: Services) -> None:
    with pytest.raises(ProjectNotFound):
        services.robot_access.create("ci", permissions={"nope": ["pull"]})
    with pytest.raises(ProjectNotFound):
        services.robot_access.create("ci", project="nope", permissions={})
    assert services.robots.find("robot$ci") is None
    with pytest.raises(RobotNotFound):
        services.robot_access.permissions("robot$ghost")


def test_deleting_a_project_removes_members_robot_permissions_and_project_robots(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    services.projects.create("team", owner="alice")
    services.projects.create("other")
    services.robot_access.create("ci", project="team", permissions={"team": ["pull"]})
    services.robot_access.create("ci", permissions={"team": ["pull"], "other": ["pull"]})
    services.projects.delete("team")
    assert services.robots.find("robot$team+ci") is None
    assert services.robot_access.permissions("robot$ci") == {"other": {"pull"}}
    services.projects.create("team")
    assert services.members.list("team").total == 0
