"""What the management API needs, handed in by the composition root (`app.py`): nothing is built here."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from dockyard.api.management.sessions import SessionCodec
from dockyard.auth.interfaces import Authenticator, Principal
from dockyard.db.session import Database
from dockyard.registry.queries import RegistryQueries
from dockyard.registry.services import Registry
from dockyard.storage.driver.base import StorageDriver


@dataclass(frozen=True, slots=True)
class SystemInfo:
    version: str
    storage_driver: str  # "filesystem" | "inmemory" | ...
    auth_mode: str  # "dockyard" (own accounts and tokens), "htpasswd", "token" (external), "none"
    ldap: bool  # an LDAP/AD directory is configured
    read_only: bool
    delete_enabled: bool


class PrincipalLookup(Protocol):
    """Turns a session's account back into a principal, as it is now."""

    def principal(self, kind: str, name: str) -> Principal | None:
        """None when the account is gone, disabled or expired."""
        ...


class AccessChecks(Protocol):
    """The slice of auth.policy.AccessPolicy the API uses."""

    def can(self, principal: Principal, project: str, permission: str) -> bool: ...

    def visible_projects(self, principal: Principal) -> Collection[str] | None:
        """Names of the projects the principal may read; None for all of them (administrators)."""
        ...


@dataclass
class ManagementServices:
    db: Database
    driver: StorageDriver
    registry: Registry
    queries: RegistryQueries
    system: SystemInfo
    authenticator: Authenticator
    principals: PrincipalLookup
    sessions: SessionCodec
    access: AccessChecks


def services_of(request: Request) -> ManagementServices:
    services: ManagementServices = request.app.state.services
    return services
