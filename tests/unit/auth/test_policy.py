"""AccessPolicy against a real (SQLite) DB: the role matrix, intersections, escalation attempts,
disabled and expired accounts, public and private projects, visibility."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from dockyard.accounts.models import RobotRow
from dockyard.auth.interfaces import ANONYMOUS, Principal, PrincipalKind, Scope
from dockyard.auth.policy import AccessPolicy, Visibility
from dockyard.db.base import utcnow
from dockyard.projects.rbac import Permission, Role
from tests.unit.accounts.fixtures import PASSWORD, Services, migrated_database
from tests.unit.projects.test_rbac import EXPECTED

REGISTRY_ACTIONS = {"pull": Permission.PULL, "push": Permission.PUSH, "delete": Permission.DELETE}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    db = migrated_database(tmp_path)
    yield Services.on(db)
    db.dispose()


@pytest.fixture
def policy(services: Services) -> AccessPolicy:
    return AccessPolicy(services.db)


def repo(name: str, *actions: str, resource_class: str | None = None) -> Scope:
    return Scope("repository", name, frozenset(actions), resource_class)


def user(services: Services, name: str, admin: bool = False) -> Principal:
    created = services.users.create(name, PASSWORD, admin=admin)
    return Principal(PrincipalKind.USER, name, created.id, created.is_admin)


def robot(services: Services, name: str, project: str | None, permissions: dict[str, list[str]]) -> Principal:
    created = services.robot_access.create(name, project=project, permissions=permissions)
    return Principal(PrincipalKind.ROBOT, created.robot.name, created.robot.id)


def as_dict(scopes: list[Scope]) -> dict[str, set[str]]:
    return {scope.name: set(scope.actions) for scope in scopes}


# --- the role matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("public", [False, True], ids=["private", "public"])
@pytest.mark.parametrize("role", list(Role))
def test_every_role_gets_exactly_its_table_row(
    services: Services, policy: AccessPolicy, role: Role, public: bool
) -> None:
    services.projects.create("team", public=public)
    member = user(services, "member")
    services.members.add_user("team", "member", role)
    expected = EXPECTED[role] | ({Permission.PULL, Permission.PROJECT_READ} if public else set())
    assert policy.permissions(member, "team") == expected
    for permission in Permission:
        assert policy.can(member, "team", permission) == (permission in expected)
    granted = policy.grant(member, [repo("team/app", "pull", "push", "delete")])
    wanted = {action for action, permission in REGISTRY_ACTIONS.items() if permission in expected}
    assert as_dict(granted) == ({"team/app": wanted} if wanted else {})


@pytest.mark.parametrize("role", list(Role))
def test_a_group_role_counts_like_a_user_role(services: Services, policy: AccessPolicy, role: Role) -> None:
    services.projects.create("team")
    member = user(services, "member")
    services.groups.create("devs")
    services.groups.add_user("devs", "member")
    services.members.add_group("team", "devs", role)
    assert policy.permissions(member, "team") == EXPECTED[role]


def test_user_and_group_roles_add_up(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    member = user(services, "member")
    services.members.add_user("team", "member", Role.GUEST)
    services.groups.create("release")
    services.groups.add_user("release", "member")
    services.members.add_group("team", "release", Role.MAINTAINER)
    assert policy.permissions(member, "team") == EXPECTED[Role.MAINTAINER]


def test_system_admin_may_do_everything_everywhere(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    root = user(services, "root", admin=True)
    assert policy.permissions(root, "team") == set(Permission)
    assert policy.permissions(root, "does-not-exist") == set(Permission)
    assert policy.is_admin(root) and policy.can_create_projects(root)
    assert as_dict(policy.grant(root, [repo("team/app", "*"), repo("new/app", "pull", "push")])) == {
        "team/app": {"pull", "push", "delete"},
        "new/app": {"pull", "push"},
    }


def test_permissions_in_several_projects_are_each_projects_own(
    services: Services, policy: AccessPolicy
) -> None:
    """A page of a listing reads them at once: what each project gives, for every kind of caller."""
    services.projects.create("team")
    services.projects.create("open", public=True)
    services.projects.create("closed")
    member = user(services, "member")
    services.members.add_user("team", "member", Role.DEVELOPER)
    callers = [
        member,
        user(services, "root", admin=True),
        ANONYMOUS,
        robot(services, "ci", "team", {"team": ["pull"]}),
    ]
    names = ["team", "open", "closed", "missing"]
    for caller in callers:
        assert policy.permissions_in(caller, names) == {
            name: policy.permissions(caller, name) for name in names
        }
    assert policy.permissions_in(member, names)["team"] == EXPECTED[Role.DEVELOPER]
    assert policy.permissions_in(member, []) == {}


# --- intersections ----------------------------------------------------------------------------


def test_grant_is_what_was_asked_and_allowed(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    dev = user(services, "dev")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    assert as_dict(policy.grant(dev, [repo("team/app", "pull")])) == {"team/app": {"pull"}}
    assert as_dict(policy.grant(dev, [repo("team/app", "pull", "push")])) == {"team/app": {"pull", "push"}}
    assert as_dict(policy.grant(dev, [repo("team/app", "delete")])) == {}
    assert policy.grant(dev, []) == []


def test_duplicate_scopes_merge_and_resource_class_is_echoed(
    services: Services, policy: AccessPolicy
) -> None:
    services.projects.create("team")
    dev = user(services, "dev")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    granted = policy.grant(
        dev,
        [
            repo("team/app", "pull"),
            repo("team/app", "push"),
            repo("team/app", "pull", resource_class="plugin"),
        ],
    )
    assert granted == [
        Scope("repository", "team/app", frozenset({"pull", "push"})),
        Scope("repository", "team/app", frozenset({"pull"}), "plugin"),
    ]


def test_several_projects_in_one_request(services: Services, policy: AccessPolicy) -> None:
    for name in ["team", "other", "open"]:
        services.projects.create(name, public=name == "open")
    dev = user(services, "dev")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    granted = policy.grant(
        dev,
        [repo("team/app", "pull", "push"), repo("other/app", "pull"), repo("open/lib", "pull", "push")],
    )
    assert as_dict(granted) == {"team/app": {"pull", "push"}, "open/lib": {"pull"}}


# --- escalation attempts ------------------------------------------------------------------------


def test_asking_for_everything_gets_only_what_the_role_allows(
    services: Services, policy: AccessPolicy
) -> None:
    services.projects.create("team")
    dev = user(services, "dev")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    assert as_dict(policy.grant(dev, [repo("team/app", "*")])) == {"team/app": {"pull", "push"}}
    assert as_dict(policy.grant(dev, [repo("team/app", "pull", "push", "delete", "admin", "*")])) == {
        "team/app": {"pull", "push"}
    }


def test_developer_cannot_delete_and_guest_cannot_push(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    dev, guest = user(services, "dev"), user(services, "guest")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    services.members.add_user("team", "guest", Role.GUEST)
    assert policy.grant(dev, [repo("team/app", "delete")]) == []
    assert as_dict(policy.grant(guest, [repo("team/app", "push", "pull")])) == {"team/app": {"pull"}}


def test_membership_in_one_project_gives_nothing_in_another(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    services.projects.create("secret")
    admin_of_team = user(services, "lead")
    services.members.add_user("team", "lead", Role.PROJECT_ADMIN)
    assert policy.grant(admin_of_team, [repo("secret/app", "pull"), repo("secret", "pull")]) == []
    assert policy.permissions(admin_of_team, "secret") == frozenset()
    assert not policy.is_admin(admin_of_team)


def test_names_that_try_to_reach_other_projects_get_nothing(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    services.projects.create("secret")
    dev = user(services, "dev")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    tricks = ["team/../secret/app", "/secret/app", "Team/app", "team//app", "", "team/app/", "secret/app\n"]
    assert policy.grant(dev, [repo(name, "pull", "push") for name in tricks]) == []


def test_claims_in_the_principal_are_not_trusted(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    plain = user(services, "plain")
    claims_admin = Principal(PrincipalKind.USER, "plain", plain.id, is_admin=True, groups=frozenset({"devs"}))
    services.groups.create("devs")
    services.members.add_group("team", "devs", Role.PROJECT_ADMIN)
    assert not policy.is_admin(claims_admin)
    assert policy.grant(claims_admin, [repo("team/app", "pull")]) == []
    root = user(services, "root", admin=True)
    impostor = Principal(PrincipalKind.USER, "plain", root.id, is_admin=True)  # id of root, name of plain
    assert policy.grant(impostor, [repo("team/app", "pull")]) == []
    assert policy.grant(Principal(PrincipalKind.USER, "ghost", 999), [repo("team/app", "pull")]) == []


def test_pushing_into_a_missing_project_only_for_those_who_may_create_it(
    services: Services, policy: AccessPolicy
) -> None:
    services.projects.create("team")
    lead = user(services, "lead")
    services.members.add_user("team", "lead", Role.PROJECT_ADMIN)
    root = user(services, "root", admin=True)
    assert policy.grant(lead, [repo("newproject/app", "pull", "push")]) == []
    assert not policy.can_create_projects(lead)
    assert as_dict(policy.grant(root, [repo("newproject/app", "push")])) == {"newproject/app": {"push"}}


def test_catalog(services: Services, policy: AccessPolicy) -> None:
    alice = user(services, "alice")
    catalog = Scope("registry", "catalog", frozenset({"*"}))
    assert policy.grant(alice, [catalog]) == [catalog]
    assert policy.grant(ANONYMOUS, [catalog]) == []
    assert policy.grant(alice, [Scope("registry", "catalog", frozenset({"pull"}))]) == []
    assert policy.grant(alice, [Scope("registry", "other", frozenset({"*"}))]) == []
    assert policy.grant(alice, [Scope("admin", "everything", frozenset({"*"}))]) == []


# --- accounts that changed ------------------------------------------------------------------------


def test_disabled_user_gets_nothing(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    services.projects.create("open", public=True)
    dev = user(services, "dev")
    services.members.add_user("team", "dev", Role.DEVELOPER)
    user(services, "root", admin=True)
    services.users.update("dev", disabled=True)
    assert policy.grant(dev, [repo("team/app", "pull"), repo("open/app", "pull")]) == []
    assert policy.grant(dev, [Scope("registry", "catalog", frozenset({"*"}))]) == []
    assert policy.visible_projects(dev) == Visibility(all=False)


def test_demoted_admin_loses_admin_at_once(services: Services, policy: AccessPolicy) -> None:
    user(services, "root", admin=True)
    other = user(services, "other", admin=True)
    services.users.update("other", admin=False)
    assert not policy.is_admin(other)
    assert policy.grant(other, [repo("team/app", "pull")]) == []


def test_robot_permissions(services: Services, policy: AccessPolicy) -> None:
    for name in ["team", "other", "open"]:
        services.projects.create(name, public=name == "open")
    ci = robot(services, "ci", "team", {"team": ["pull", "push"]})
    assert as_dict(policy.grant(ci, [repo("team/app", "*")])) == {"team/app": {"pull", "push"}}
    assert policy.grant(ci, [repo("other/app", "pull")]) == []
    assert as_dict(policy.grant(ci, [repo("open/app", "pull", "push")])) == {"open/app": {"pull"}}
    assert policy.permissions(ci, "team") == {Permission.PULL, Permission.PUSH, Permission.PROJECT_READ}
    assert not policy.can(ci, "team", Permission.MEMBER_READ)
    system = robot(services, "sys", None, {"team": ["pull"], "other": ["delete"]})
    assert as_dict(policy.grant(system, [repo("team/a", "*"), repo("other/b", "*")])) == {
        "team/a": {"pull"},
        "other/b": {"delete"},
    }


def test_expired_or_disabled_robot_gets_nothing(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("team")
    services.projects.create("open", public=True)
    ci = robot(services, "ci", "team", {"team": ["pull"]})
    services.robots.update(ci.name, disabled=True)
    assert policy.grant(ci, [repo("team/app", "pull"), repo("open/app", "pull")]) == []
    services.robots.update(ci.name, disabled=False)
    assert policy.grant(ci, [repo("team/app", "pull")]) != []
    with services.db.write() as connection:
        connection.execute(update(RobotRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert policy.grant(ci, [repo("team/app", "pull")]) == []
    assert policy.visible_projects(ci) == Visibility(all=False)


# --- public and private ---------------------------------------------------------------------------


def test_anonymous_pulls_public_projects_only(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("open", public=True)
    services.projects.create("closed")
    asked = [
        repo("open/app", "pull", "push", "delete"),
        repo("closed/app", "pull"),
        repo("missing/app", "pull"),
    ]
    assert as_dict(policy.grant(ANONYMOUS, asked)) == {"open/app": {"pull"}}
    assert policy.permissions(ANONYMOUS, "open") == {Permission.PULL, Permission.PROJECT_READ}
    assert not policy.is_admin(ANONYMOUS)


def test_making_a_project_private_takes_effect_at_once(services: Services, policy: AccessPolicy) -> None:
    services.projects.create("open", public=True)
    assert policy.grant(ANONYMOUS, [repo("open/app", "pull")]) != []
    services.projects.update("open", public=False)
    assert policy.grant(ANONYMOUS, [repo("open/app", "pull")]) == []


def test_visible_projects(services: Services, policy: AccessPolicy) -> None:
    for name in ["open", "team", "groupteam", "robotteam", "secret"]:
        services.projects.create(name, public=name == "open")
    member = user(services, "member")
    services.members.add_user("team", "member", Role.LIMITED_GUEST)
    services.groups.create("devs")
    services.groups.add_user("devs", "member")
    services.members.add_group("groupteam", "devs", Role.GUEST)
    ci = robot(services, "ci", None, {"robotteam": ["pull"]})
    root = user(services, "root", admin=True)
    assert policy.visible_projects(ANONYMOUS) == Visibility(False, frozenset({"open"}))
    assert policy.visible_projects(member) == Visibility(False, frozenset({"open", "team", "groupteam"}))
    assert policy.visible_projects(ci) == Visibility(False, frozenset({"open", "robotteam"}))
    assert policy.visible_projects(root) == Visibility(all=True)
    assert policy.visible_projects(root).includes("anything")
    assert not policy.visible_projects(member).includes("secret")


def test_pullable_projects(services: Services, policy: AccessPolicy) -> None:
    """Where an automatic mount may take a blob from: projects the principal may pull from, which a
    robot allowed only to push or delete in a project is not (it sees the project all the same)."""
    for name in ["open", "team", "groupteam", "pushonly", "secret"]:
        services.projects.create(name, public=name == "open")
    member = user(services, "member")
    services.members.add_user("team", "member", Role.LIMITED_GUEST)
    services.groups.create("devs")
    services.groups.add_user("devs", "member")
    services.members.add_group("groupteam", "devs", Role.DEVELOPER)
    ci = robot(services, "ci", None, {"team": ["pull", "push"], "pushonly": ["push", "delete"]})
    assert policy.visible_projects(ci).includes("pushonly")
    assert policy.pullable_projects(ci) == Visibility(False, frozenset({"open", "team"}))
    assert policy.pullable_projects(member) == Visibility(False, frozenset({"open", "team", "groupteam"}))
    assert policy.pullable_projects(ANONYMOUS) == Visibility(False, frozenset({"open"}))
    assert policy.pullable_projects(user(services, "root", admin=True)) == Visibility(all=True)
    services.users.update("member", disabled=True)
    assert policy.pullable_projects(member) == Visibility(all=False)
