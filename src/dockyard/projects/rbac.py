"""Who may do what in a project: Harbor's roles and the permission table, as data.

Every check goes through `permissions_of_role` / `ROBOT_ACTIONS` / `PUBLIC_PERMISSIONS` (via
`dockyard.auth.policy.AccessPolicy`), so changing what a role may do is a change to this table only.
"""

from __future__ import annotations

import re
from enum import StrEnum

from dockyard.projects.interfaces import InvalidName, InvalidRole, Role

__all__ = [
    "ALL_PERMISSIONS",
    "PUBLIC_PERMISSIONS",
    "REGISTRY_ACTIONS",
    "ROBOT_ACTIONS",
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "parse_role",
    "permissions_of_robot_actions",
    "permissions_of_role",
    "project_of",
    "validate_project_name",
]


class Permission(StrEnum):
    PULL = "pull"  # read manifests, blobs, tags, referrers
    PUSH = "push"  # upload blobs, put manifests and tags
    DELETE = "delete"  # delete manifests, tags, blobs
    PROJECT_READ = "project.read"  # see the project, its repositories and artifacts
    PROJECT_UPDATE = "project.update"  # change settings such as public/private
    PROJECT_DELETE = "project.delete"
    MEMBER_READ = "member.read"
    MEMBER_MANAGE = "member.manage"
    ROBOT_READ = "robot.read"
    ROBOT_MANAGE = "robot.manage"  # create, change, refresh and delete the project's robots
    LOG_READ = "log.read"  # the project's audit log


_LIMITED_GUEST = frozenset({Permission.PROJECT_READ, Permission.PULL})
# As in Harbor's role table (rbac_role.go): guests already see the project's members, robots and log.
_GUEST = _LIMITED_GUEST | {Permission.MEMBER_READ, Permission.LOG_READ, Permission.ROBOT_READ}
_DEVELOPER = _GUEST | {Permission.PUSH}
_MAINTAINER = _DEVELOPER | {Permission.DELETE}
_PROJECT_ADMIN = _MAINTAINER | {
    Permission.PROJECT_UPDATE,
    Permission.PROJECT_DELETE,
    Permission.MEMBER_MANAGE,
    Permission.ROBOT_MANAGE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.LIMITED_GUEST: _LIMITED_GUEST,  # pull only; cannot see members or logs
    Role.GUEST: _GUEST,  # read-only
    Role.DEVELOPER: _DEVELOPER,  # read and push
    Role.MAINTAINER: _MAINTAINER,  # and delete artifacts, see robots
    Role.PROJECT_ADMIN: _PROJECT_ADMIN,  # and manage members, robots and the project itself
}
ALL_PERMISSIONS = frozenset(Permission)
# What anyone, anonymous included, may do in a public project.
PUBLIC_PERMISSIONS = frozenset({Permission.PROJECT_READ, Permission.PULL})

# Robot permission lists name registry actions; each grants these permissions on its project.
ROBOT_ACTIONS: dict[str, frozenset[Permission]] = {
    "pull": frozenset({Permission.PULL, Permission.PROJECT_READ}),
    "push": frozenset({Permission.PUSH, Permission.PROJECT_READ}),
    "delete": frozenset({Permission.DELETE, Permission.PROJECT_READ}),
}
# Registry token actions and the permission each needs.
REGISTRY_ACTIONS: dict[str, Permission] = {
    "pull": Permission.PULL,
    "push": Permission.PUSH,
    "delete": Permission.DELETE,
}

# The first path component of an OCI repository name.
_PROJECT_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidRole(detail={"role": value, "roles": [role.value for role in Role]}) from None


def permissions_of_role(role: str | Role) -> frozenset[Permission]:
    """The role's permissions; an unknown role (e.g. from a newer version's row) grants nothing."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def permissions_of_robot_actions(actions: str | frozenset[str]) -> frozenset[Permission]:
    names = actions.split(",") if isinstance(actions, str) else actions
    granted: frozenset[Permission] = frozenset()
    for name in names:
        granted |= ROBOT_ACTIONS.get(name, frozenset())
    return granted


def validate_project_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not _PROJECT_NAME_RE.fullmatch(name):
        raise InvalidName(
            "invalid project name: 1-255 lowercase letters and digits, separated by . _ __ or -",
            detail={"project": name},
        )
    return name


def project_of(repository: str) -> str:
    """The project a repository lives in: its first path component (`team/app` -> `team`)."""
    return repository.split("/", 1)[0]
