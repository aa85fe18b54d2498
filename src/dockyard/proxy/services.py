"""Which projects are proxies of which endpoint: stored, changed, and resolved on the hot path.

`ProxyProjects.serving(name)` answers "which proxy project serves this request": today the project named
by the repository's first component; the mirror modes (containerd's `?ns=`, docker's registry-mirrors,
registry:2's `proxy:` section) are meant to resolve through the same place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select

from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.base import utcnow
from dockyard.db.dialect import upsert
from dockyard.db.session import Database
from dockyard.endpoints.interfaces import EndpointKind, EndpointNotFound
from dockyard.endpoints.models import EndpointRow
from dockyard.projects.interfaces import ProjectNotFound
from dockyard.projects.models import ProjectRow
from dockyard.projects.rbac import project_of
from dockyard.proxy.interfaces import IMPLICIT_ENDPOINT, MAX_TAG_TTL, ProxyConfig, ProxySettingsInvalid
from dockyard.proxy.models import ProxyProjectRow
from dockyard.upstream.interfaces import RemoteRegistry

if TYPE_CHECKING:
    from dockyard.endpoints.services import EndpointService

# A node that misses a change-feed bump (none is lost in practice) still sees a change this soon.
RESOLVE_EXPIRY = 30.0
# Built once (building a statement costs more CPU than running it): every proxy project, or one.
_proxies, _projects, _endpoints = ProxyProjectRow.__table__, ProjectRow.__table__, EndpointRow.__table__
_ALL = (
    select(
        _projects.c.name,
        _projects.c.id,
        _endpoints.c.name.label("endpoint"),
        _endpoints.c.kind,
        _proxies.c.tag_ttl_seconds,
    )
    .select_from(
        _proxies.join(_projects, _projects.c.id == _proxies.c.project_id).join(
            _endpoints, _endpoints.c.id == _proxies.c.endpoint_id
        )
    )
    .order_by(_projects.c.name)
)
_ONE = _ALL.where(_projects.c.name == bindparam("project"))
_UNKNOWN: Any = object()


class ProxyProjects:
    def __init__(
        self,
        db: Database,
        feed: ChangeFeed,
        clock: Callable[[], float] = time.monotonic,
        implicit: ProxyConfig | None = None,
    ) -> None:
        self.db = db
        self.implicit = implicit  # registry:2's proxy section: serves every name
        self.feed = feed
        self.clock = clock
        self._lock = threading.Lock()
        # (generation, expires at, {project name: config}): every proxy project, read at once (a handful).
        self._all: tuple[int, float, dict[str, ProxyConfig]] | None = None

    # --- the hot path ----------------------------------------------------------------------------
    def serving_now(self, name: str) -> ProxyConfig | None:
        """The proxy project serving repository `name`, or None; `_UNKNOWN` (see `known`) when that
        needs a database read: then call `serving` in a thread."""
        if self.implicit is not None:
            return self.implicit
        cached = self._all
        if cached is None or cached[0] != self.feed.generation(Topic.POLICIES) or self.clock() >= cached[1]:
            return _UNKNOWN
        configs = cached[2]
        return configs.get(project_of(name)) if configs else None  # most registries have none

    @staticmethod
    def known(answer: object) -> bool:
        return answer is not _UNKNOWN

    def serving(self, name: str) -> ProxyConfig | None:
        answer = self.serving_now(name)
        if answer is not _UNKNOWN:
            return answer
        generation = self.feed.generation(Topic.POLICIES)
        configs = {config.project: config for config in self.list()}
        with self._lock:
            self._all = (generation, self.clock() + RESOLVE_EXPIRY, configs)
        return configs.get(project_of(name))

    # --- reading ---------------------------------------------------------------------------------
    def list(self) -> list[ProxyConfig]:
        with self.db.read() as connection:
            rows = connection.execute(_ALL).all()
        return [_config(row) for row in rows]

    def get(self, project: str) -> ProxyConfig | None:
        with self.db.read() as connection:
            row = connection.execute(_ONE, {"project": project}).first()
        return None if row is None else _config(row)

    # --- changing --------------------------------------------------------------------------------
    def set(self, project: str, endpoint: str, tag_ttl: int) -> ProxyConfig:
        """Make `project` a proxy of `endpoint` (or change which, or its TTL)."""
        if not isinstance(tag_ttl, int) or not 0 <= tag_ttl <= MAX_TAG_TTL:
            raise ProxySettingsInvalid(f"the tag TTL must be 0 to {MAX_TAG_TTL} seconds")
        now = utcnow()
        with self.db.write() as connection:
            project_id = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == project))
            if project_id is None:
                raise ProjectNotFound(f"project {project!r} not found")
            endpoint_id = connection.scalar(select(EndpointRow.id).where(EndpointRow.name == endpoint))
            if endpoint_id is None:
                raise EndpointNotFound(f"no registry endpoint named {endpoint!r}")
            upsert(
                connection,
                ProxyProjectRow,
                {
                    "project_id": project_id,
                    "endpoint_id": endpoint_id,
                    "tag_ttl_seconds": tag_ttl,
                    "created_at": now,
                    "updated_at": now,
                },
                key=["project_id"],
                update=["endpoint_id", "tag_ttl_seconds", "updated_at"],
            )
        self.feed.bump(Topic.POLICIES)
        found = self.get(project)
        assert found is not None
        return found

    def clear(self, project: str) -> None:
        """`project` is no proxy any more (what it cached stays, as ordinary content)."""
        with self.db.write() as connection:
            project_id = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == project))
            if project_id is None:
                raise ProjectNotFound(f"project {project!r} not found")
            connection.execute(delete(ProxyProjectRow).where(ProxyProjectRow.project_id == project_id))
        self.feed.bump(Topic.POLICIES)


class RemoteClients:
    """One upstream client per endpoint, kept while the endpoint is unchanged (its connections and
    bearer tokens are reused across pulls); a changed endpoint (URL, credentials) gets a new one."""

    def __init__(
        self,
        endpoints: Callable[[], EndpointService],
        implicit: Callable[[], RemoteRegistry] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.implicit = implicit  # the client of registry:2's proxy.remoteurl (IMPLICIT_ENDPOINT)
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[datetime, RemoteRegistry]] = {}

    def __call__(self, name: str) -> RemoteRegistry:
        if name == IMPLICIT_ENDPOINT and self.implicit is not None:
            with self._lock:
                cached = self._clients.get(name)
                if cached is None:
                    cached = self._clients[name] = (datetime.min, self.implicit())
            return cached[1]
        service = self.endpoints()
        endpoint = service.get(name)  # EndpointNotFound when it went
        with self._lock:
            cached = self._clients.get(name)
            if cached is not None and cached[0] == endpoint.updated_at:
                return cached[1]
        client = service.remote(name)
        with self._lock:
            self._clients[name] = (endpoint.updated_at, client)
        return client  # a replaced client is left to its users and the garbage collector

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for _, client in clients.values():
            client.close()


def _config(row: Any) -> ProxyConfig:
    return ProxyConfig(
        row.name, row.id, row.endpoint, row.kind == EndpointKind.DOCKER_HUB.value, row.tag_ttl_seconds
    )
