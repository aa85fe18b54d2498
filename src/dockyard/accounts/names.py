"""Name rules for users, groups and robot accounts."""

from __future__ import annotations

import re

from dockyard.accounts.interfaces import InvalidName

ROBOT_PREFIX = "robot$"
# `$` is reserved for robots and `:` separates Basic credentials, so neither is allowed in a username.
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")
# Robot short names and the project part of a project robot: lowercase, as project names are.
_ROBOT_PART_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
MAX_GROUP_NAME = 512


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
        raise InvalidName(
            "invalid username: 1-255 characters of letters, digits and . _ @ + -, starting with a "
            "letter or digit",
            detail={"username": username},
        )
    return username


def validate_group_name(name: str) -> str:
    # Directory groups may be DNs ("cn=devs,ou=groups,dc=example,dc=org"): any printable text.
    if not name or len(name) > MAX_GROUP_NAME or not name.isprintable() or name != name.strip():
        raise InvalidName("invalid group name", detail={"group": name})
    return name


def is_robot_name(username: str) -> bool:
    return username.startswith(ROBOT_PREFIX)


def robot_full_name(name: str, project: str | None) -> str:
    """`robot$<name>` for a system robot, `robot$<project>+<name>` for a project robot (Harbor's form)."""
    _check_robot_part(name, "name")
    if project is None:
        return f"{ROBOT_PREFIX}{name}"
    _check_robot_part(project, "project")
    return f"{ROBOT_PREFIX}{project}+{name}"


def split_robot_name(full_name: str) -> tuple[str, str | None]:
    """(short name, project or None) of a full robot name; InvalidName if it is not one."""
    if not is_robot_name(full_name):
        raise InvalidName("not a robot account name", detail={"robot": full_name})
    rest = full_name[len(ROBOT_PREFIX) :]
    project, plus, name = rest.partition("+")
    if not plus:
        name, project_or_none = project, None
    else:
        project_or_none = project
    robot_full_name(name, project_or_none)  # validates both parts
    return name, project_or_none


def _check_robot_part(value: str, what: str) -> None:
    if not isinstance(value, str) or len(value) > 255 or not _ROBOT_PART_RE.fullmatch(value):
        raise InvalidName(
            f"invalid robot {what}: lowercase letters and digits, separated by . _ __ or -",
            detail={what: value},
        )
