"""Projects, their members and their robots' permissions: the values and errors of `projects`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dockyard.accounts.interfaces import InvalidName, Page
from dockyard.errors import DockyardError

__all__ = [
    "InvalidName",  # defined in accounts, raised here too for bad project names
    "InvalidPermission",
    "InvalidRole",
    "Member",
    "MemberExists",
    "MemberKind",
    "MemberNotFound",
    "Page",
    "Project",
    "ProjectExists",
    "ProjectNotFound",
    "Role",
]


class ProjectNotFound(DockyardError):
    message = "project not found"


class ProjectExists(DockyardError):
    message = "a project with this name already exists"


class MemberNotFound(DockyardError):
    message = "project member not found"


class MemberExists(DockyardError):
    message = "already a member of this project"


class InvalidRole(DockyardError):
    message = "unknown project role"


class InvalidPermission(DockyardError):
    """A robot permission that is unknown, or on a project the robot may not reach."""

    message = "invalid robot permission"


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public: bool  # anyone, even anonymous, may pull
    created_at: datetime


class Role(StrEnum):
    """Harbor's project roles; what each may do is the table in `projects.rbac`."""

    PROJECT_ADMIN = "project_admin"
    MAINTAINER = "maintainer"
    DEVELOPER = "developer"
    GUEST = "guest"
    LIMITED_GUEST = "limited_guest"


class MemberKind(StrEnum):
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    project: str
    kind: MemberKind
    name: str  # username or group name
    role: Role
    created_at: datetime
