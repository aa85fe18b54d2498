"""Mirror mode: which proxy project serves a request whose name does not say (proxy.md#mirror-mode).

- containerd's `hosts.toml` mirrors add `?ns=<upstream host>`: `proxy.namespaces` maps the host to a
  proxy project, and the request's name is read inside it (`library/alpine` -> `hub/library/alpine`).
- docker's `registry-mirrors` send Docker Hub's names with no `ns`: `proxy.default_namespace` names the
  host whose project also serves pulls (GET/HEAD) of names whose first component is no project.

The router renames the request before the auth gate, so access is decided on the proxy project.
Requests when no mapping is configured cost one attribute test; a pull with a mapped `ns` costs a dict
lookup; names of known projects a set lookup (the names are read every 30 s); a pull the default project
takes, one indexed read (does that project exist now?).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import select

from dockyard.auth.interfaces import Scope
from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.session import Database
from dockyard.projects.models import ProjectRow
from dockyard.projects.rbac import project_of

# The project names are read again after this long. A name of no project known here is looked up
# (one indexed read) before the default project takes it: a project created a moment ago, by a push on
# another node, is never shadowed (push, then pull at once, as CI does).
PROJECTS_EXPIRY = 30.0
# Routes a registry-mirror reads (the default namespace renames only these, and only GET/HEAD).
_PULL_ROUTES = frozenset({"manifests", "blobs", "tags", "referrers"})
_READS = frozenset({"GET", "HEAD"})
_PULL_ONLY = frozenset({"pull"})
UNKNOWN: Any = object()


def namespace_of(query_string: bytes) -> str | None:
    """containerd's `ns` query parameter (the upstream host a mirror request is for), if any."""
    if b"ns=" not in query_string:
        return None
    for key, value in parse_qsl(query_string.decode("latin-1")):
        if key == "ns":
            return value.strip().lower() or None
    return None


class Mirrors:
    def __init__(
        self,
        namespaces: Mapping[str, str],
        default_namespace: str | None,
        db: Database,
        feed: ChangeFeed,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespaces = {host.lower(): project for host, project in namespaces.items()}
        self.default_project = self.namespaces.get(default_namespace.lower()) if default_namespace else None
        self.db = db
        self.feed = feed
        self.clock = clock
        self._lock = threading.Lock()
        # (generation, read at, project names)
        self._projects: tuple[int, float, frozenset[str]] | None = None

    def rename_now(self, key: str, method: str, name: str, query_string: bytes) -> str | None:
        """The name this request is served as (None: its own), or UNKNOWN when that needs the project
        names from the database: then call `rename` in a thread."""
        namespace = namespace_of(query_string)
        if namespace is not None:
            project = self.namespaces.get(namespace)
            return None if project is None else f"{project}/{name}"
        if self.default_project is None or key not in _PULL_ROUTES or method not in _READS:
            return None
        first = project_of(name)
        if first == self.default_project:
            return None
        cached = self._projects
        if cached is None or cached[0] != self.feed.generation(Topic.POLICIES):
            return UNKNOWN
        if first in cached[2] and self.clock() - cached[1] < PROJECTS_EXPIRY:
            return None
        return UNKNOWN

    def rename_scopes(self, scopes: list[Scope]) -> list[Scope]:
        """A token request's scopes as the router will check them. docker asks its registry-mirror for a
        token with its own scope (`repository:library/alpine:pull`), not the challenge's: a pull-only
        scope of a name the default project takes names that project's repository. Pushes and names of
        projects stay as they are. (containerd sends `ns` on /v2 only, and takes the challenge's scope.)"""
        if self.default_project is None:
            return scopes
        renamed = []
        for scope in scopes:
            if scope.type == "repository" and scope.actions == _PULL_ONLY:
                name = self.rename("manifests", "GET", scope.name, b"")
                if name is not None:
                    scope = replace(scope, name=name)
            renamed.append(scope)
        return renamed

    def rename(self, key: str, method: str, name: str, query_string: bytes) -> str | None:
        answer = self.rename_now(key, method, name, query_string)
        if answer is not UNKNOWN:
            return answer
        first = project_of(name)
        cached = self._projects
        generation = self.feed.generation(Topic.POLICIES)
        if cached is None or cached[0] != generation or self.clock() - cached[1] >= PROJECTS_EXPIRY:
            with self.db.read() as connection:
                names = frozenset(connection.scalars(select(ProjectRow.name)))
            with self._lock:
                self._projects = (generation, self.clock(), names)
            exists = first in names
        else:
            with self.db.read() as connection:
                exists = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == first)) is not None
        return None if exists else f"{self.default_project}/{name}"
