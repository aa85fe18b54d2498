"""The role table, written out here independently: every role against every permission."""

from __future__ import annotations

import itertools

import pytest

from dockyard.projects.interfaces import InvalidName, InvalidRole
from dockyard.projects.rbac import (
    PUBLIC_PERMISSIONS,
    Permission,
    Role,
    parse_role,
    permissions_of_robot_actions,
    permissions_of_role,
    project_of,
    validate_project_name,
)

P = Permission
# role -> permissions it has; anything not listed must be denied. Harbor's rbac_role.go: guests already
# read members, robots and the log.
EXPECTED: dict[Role, set[Permission]] = {
    Role.LIMITED_GUEST: {P.PROJECT_READ, P.PULL},
    Role.GUEST: {P.PROJECT_READ, P.PULL, P.MEMBER_READ, P.LOG_READ, P.ROBOT_READ},
    Role.DEVELOPER: {P.PROJECT_READ, P.PULL, P.MEMBER_READ, P.LOG_READ, P.ROBOT_READ, P.PUSH},
    Role.MAINTAINER: {P.PROJECT_READ, P.PULL, P.MEMBER_READ, P.LOG_READ, P.ROBOT_READ, P.PUSH, P.DELETE},
    Role.PROJECT_ADMIN: set(Permission),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_role_table(role: Role, permission: Permission) -> None:
    assert (permission in permissions_of_role(role)) == (permission in EXPECTED[role])


def test_every_role_is_in_the_table() -> None:
    assert set(EXPECTED) == set(Role)


def test_roles_are_ordered_each_includes_the_one_below() -> None:
    order = [Role.LIMITED_GUEST, Role.GUEST, Role.DEVELOPER, Role.MAINTAINER, Role.PROJECT_ADMIN]
    for lower, higher in itertools.pairwise(order):
        assert permissions_of_role(lower) < permissions_of_role(higher)


def test_unknown_roles() -> None:
    assert permissions_of_role("owner") == frozenset()
    assert parse_role("developer") is Role.DEVELOPER
    with pytest.raises(InvalidRole):
        parse_role("owner")


def test_public_projects_allow_reading_and_pulling_only() -> None:
    assert {P.PROJECT_READ, P.PULL} == PUBLIC_PERMISSIONS


def test_robot_actions() -> None:
    assert permissions_of_robot_actions("pull") == {P.PULL, P.PROJECT_READ}
    assert permissions_of_robot_actions("pull,push,delete") == {P.PULL, P.PUSH, P.DELETE, P.PROJECT_READ}
    assert permissions_of_robot_actions("admin,*") == frozenset()


@pytest.mark.parametrize("name", ["team", "a", "my-team", "my__team", "team.io", "t_1", "a" * 255])
def test_valid_project_names(name: str) -> None:
    assert validate_project_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Team", "-team", "team-", "te am", "team/app", "a" * 256, "team+x", "te___am"]
)
def test_invalid_project_names(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_project_name(name)


def test_project_of_a_repository_is_its_first_component() -> None:
    assert project_of("team/app") == "team"
    assert project_of("team/sub/app") == "team"
    assert project_of("alpine") == "alpine"
