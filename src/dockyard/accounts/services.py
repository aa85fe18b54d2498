"""The account services in one import: users, groups, personal tokens, robots, login limiting, bootstrap."""

from __future__ import annotations

from dockyard.accounts.bootstrap import bootstrap_admin
from dockyard.accounts.groups import GroupService
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.users import UserService

__all__ = [
    "GroupService",
    "InProcessLoginLimiter",
    "PersonalTokenService",
    "RobotService",
    "UserService",
    "bootstrap_admin",
]
