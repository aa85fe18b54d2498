"""Groups: local groups, and directory groups replaced at each login without touching local ones."""

from __future__ import annotations

import pytest

from dockyard.accounts.interfaces import GroupExists, GroupNotFound, UserNotFound, UserSource
from tests.unit.accounts.fixtures import PASSWORD, Services


def test_create_ensure_members(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    group = services.groups.create("devs")
    assert services.groups.ensure("devs") == group
    with pytest.raises(GroupExists):
        services.groups.create("devs")
    services.groups.add_user("devs", "alice")
    services.groups.add_user("devs", "alice")  # twice is once
    assert services.groups.members("devs") == ["alice"]
    assert services.groups.groups_of(services.users.get("alice").id) == {"devs"}
    services.groups.remove_user("devs", "alice")
    assert services.groups.members("devs") == []


def test_unknown_group_or_user(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    with pytest.raises(GroupNotFound):
        services.groups.add_user("nope", "alice")
    services.groups.create("devs")
    with pytest.raises(UserNotFound):
        services.groups.add_user("devs", "nobody")
    with pytest.raises(GroupNotFound):
        services.groups.delete("nope")


def test_list(services: Services) -> None:
    for name in ["ops", "devs", "qa"]:
        services.groups.create(name)
    page = services.groups.list(limit=2)
    assert [g.name for g in page.items] == ["devs", "ops"] and page.total == 3
    assert [g.name for g in services.groups.list(search="Q").items] == ["qa"]


def test_directory_groups_follow_the_directory_and_local_ones_stay(services: Services) -> None:
    user = services.users.create("alice", PASSWORD)
    services.groups.create("local-team")
    services.groups.add_user("local-team", "alice")
    groups = services.groups.set_directory_groups(user.id, ["cn=devs,dc=org", "cn=ops,dc=org"])
    assert groups == {"local-team", "cn=devs,dc=org", "cn=ops,dc=org"}
    assert services.groups.get("cn=devs,dc=org").source is UserSource.LDAP
    groups = services.groups.set_directory_groups(user.id, ["cn=ops,dc=org"])
    assert groups == {"local-team", "cn=ops,dc=org"}
    assert services.groups.set_directory_groups(user.id, []) == {"local-team"}


def test_deleting_a_group_removes_its_links(services: Services) -> None:
    user = services.users.create("alice", PASSWORD)
    services.groups.create("devs")
    services.groups.add_user("devs", "alice")
    services.groups.delete("devs")
    assert services.groups.groups_of(user.id) == frozenset()
