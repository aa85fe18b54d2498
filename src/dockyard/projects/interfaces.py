"""Projects, their members and their robots' permissions: the values and errors of `projects`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.accounts.interfaces import InvalidName, Page
from dockyard.errors import Category, DockyardError

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = [
    "ImmutableRule",
    "ImmutableRuleNotFound",
    "InvalidImmutableRule",
    "InvalidName",  # defined in accounts, raised here too for bad project names
    "InvalidPermission",
    "InvalidQuota",
    "InvalidRole",
    "Member",
    "MemberExists",
    "MemberKind",
    "MemberNotFound",
    "Page",
    "PolicyDenied",
    "Project",
    "ProjectEvents",
    "ProjectExists",
    "ProjectNotFound",
    "ProjectQuota",
    "QuotaExceeded",
    "Role",
    "TagImmutable",
]


class ProjectNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "project not found"


class ProjectExists(DockyardError):
    category = Category.CONFLICT
    message = "a project with this name already exists"


class MemberNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "project member not found"


class MemberExists(DockyardError):
    category = Category.CONFLICT
    message = "already a member of this project"


class InvalidRole(DockyardError):
    category = Category.INVALID
    message = "unknown project role"


class InvalidPermission(DockyardError):
    """A robot permission that is unknown, or on a project the robot may not reach."""

    category = Category.INVALID
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


# --- policies: tag immutability and storage quotas (projects.immutability, projects.quotas) -------
class PolicyDenied(DockyardError):
    """A project policy refuses a write that is otherwise valid (each API maps it to "denied")."""

    category = Category.DENIED
    message = "denied by project policy"


class TagImmutable(PolicyDenied):
    """Pushing a different manifest onto an immutable tag, or deleting one (directly or with its manifest)."""

    category = Category.PROTECTED
    message = "tag is immutable"


class QuotaExceeded(PolicyDenied):
    message = "project storage quota exceeded"


class PullRefused(PolicyDenied):
    """A pull policy refuses a manifest GET; the message names the policy (projects.pull_policies)."""

    message = "denied by the project's pull policy"


class InvalidPullPolicy(DockyardError):
    category = Category.INVALID
    message = "invalid pull policy"


class ImmutableRuleNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "immutability rule not found"


class InvalidImmutableRule(DockyardError):
    category = Category.INVALID
    message = "invalid immutability rule"


class InvalidQuota(DockyardError):
    category = Category.INVALID
    message = "invalid quota"


@dataclass(frozen=True, slots=True)
class ImmutableRule:
    """Tags of repositories whose path inside the project matches (or, excluding, does not match)
    `repository_pattern`, and whose name matches (or does not) `tag_pattern`, are immutable.
    Patterns are doublestar globs as in Harbor: `*`, `**`, `?`, `{a,b}`."""

    id: int
    project: str
    repository_pattern: str
    tag_pattern: str
    repository_excluding: bool = False
    tag_excluding: bool = False
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ProjectQuota:
    project: str
    limit_bytes: int | None  # None: unlimited
    used_bytes: int
    warn_percent: int


class ProjectEvents(Protocol):
    """Project events for webhook policies (webhooks/producers.py), from the services that decide them:
    a quota warning, a quota refusal, an immutable tag's refusal. `event` is a webhook event type."""

    def in_transaction(self, connection: Connection, project: str, event: str, data: dict[str, Any]) -> None:
        """Append to the outbox in the caller's transaction: it is sent only if that commits."""

    def note(self, project: str, event: str, data: dict[str, Any]) -> None:
        """No I/O (a refusal's transaction rolls back): the event joins the next batch written to the
        outbox, within a second."""
