"""The management API's routers, and how a worker includes them: each on the first request under its
paths, not all at the API's build.

A worker keeps every module it imports for good, and the API's 27 routers with their pydantic models
are ~8 MiB of the ~13 MiB it takes (FastAPI itself the rest). A request names the routers it may need
by the first segment of its path (`/repositories/...`: the five that have routes there); an unknown
segment (`/openapi.json`, `/docs`, a path no router has) includes them all, so the OpenAPI document is
whole and a 404 is a real one. `ROUTERS` lists each router's first segments;
tests/unit/api/management/test_router_groups.py checks them against the routes.

An included router's routes are built once per process (`IncludedRouters`) and every API app built in
it holds those same route objects: FastAPI 0.165 builds an included router's route state (each route's
response and body fields, its dependencies, its handler) per inclusion, on the first request that
reaches it, ~25-90 ms of CPU a router. A worker builds one API; the test suite's in-process stacks
build one per test, and paid it in each.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable

import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRouter
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

# In the order the API matches them: an earlier route wins. Signatures, scans, files and an artifact's
# contents come before repositories, whose /repositories/{name:path} would take
# .../artifacts/{ref}/signature.
ROUTERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("signatures", frozenset({"projects", "repositories"})),  # trusted keys, signature verdicts
    ("sigstore", frozenset({"projects", "sigstore"})),  # Sigstore trust roots and identities (keyless)
    ("scans", frozenset({"projects", "repositories"})),  # vulnerability scans, scan settings
    ("files", frozenset({"repositories"})),  # the layer browser: files of layers and images, diffs
    ("artifact_contents", frozenset({"repositories"})),  # an artifact's config and referrers
    ("system", frozenset({"health", "systeminfo"})),
    ("sign_in", frozenset({"system"})),
    ("keys", frozenset({"system"})),
    ("session", frozenset({"login", "logout"})),
    ("oidc", frozenset({"me", "oidc", "system"})),
    ("users", frozenset({"me", "users"})),
    ("groups", frozenset({"groups"})),
    ("projects", frozenset({"projects"})),
    ("robots", frozenset({"projects", "robots"})),
    ("repositories", frozenset({"repositories"})),
    ("search", frozenset({"search"})),
    ("audit", frozenset({"audit"})),
    ("quotas", frozenset({"projects"})),  # project policies
    ("immutable_rules", frozenset({"projects"})),
    ("webhooks", frozenset({"projects"})),
    ("jobs", frozenset({"jobs"})),  # background jobs and their schedules
    ("retention", frozenset({"projects"})),  # tag retention policies and runs
    ("endpoints", frozenset({"endpoints"})),  # registry endpoints (remote registries)
    ("notifications", frozenset({"notifications"})),  # registry:2 notification endpoints, deliveries
    ("vulndb", frozenset({"projects", "vulndb"})),  # the offline vulnerability database's status
    ("replication", frozenset({"replication"})),  # replication policies and their runs
    ("scanners", frozenset({"scanners"})),  # external scanners (Harbor pluggable scanner API adapters)
)
ALL = tuple(name for name, _ in ROUTERS)
_ORDER = {name: index for index, name in enumerate(ALL)}
_PACKAGE = "dockyard.api.management.routers."
_RANKS: dict[int, int] = {}  # id of a router's APIRouter: its place in ROUTERS


def routers_for(path: str) -> tuple[str, ...]:
    """The routers that may answer `path` (relative to the API's mount): all for an unknown segment."""
    segment = path.lstrip("/").split("/", 1)[0]
    named = tuple(name for name, segments in ROUTERS if segment in segments)
    return named or ALL


def router(name: str) -> APIRouter:
    module = importlib.import_module(_PACKAGE + name)
    found: APIRouter = module.router
    _RANKS[id(found)] = _ORDER[name]
    return found


class IncludedRouters:
    """Each router as the API includes it, built once per process: the routes `FastAPI.include_router`
    adds for it, on `template` (an app configured as every API app is, with no services), which all
    API apps then share. What an inclusion builds comes from the including app's configuration only
    (its dependencies, response class, ids; `dependency_overrides`, which no API app sets, from the
    template), never from its services: a request's handlers find those on its own app
    (`context.services_of`: `request.app`, the app the request came through)."""

    def __init__(self, template: Callable[[], FastAPI]) -> None:
        self._template = template
        self._app: FastAPI | None = None
        self._routes: dict[str, list[BaseRoute]] = {}
        self._lock = threading.Lock()

    def routes(self, name: str) -> list[BaseRoute]:
        """The routes of router `name` as included (imported and included on first use)."""
        with self._lock:
            built = self._routes.get(name)
            if built is None:
                if self._app is None:
                    self._app = self._template()
                found = router(name)
                before = len(self._app.router.routes)
                self._app.include_router(found)
                built = self._routes[name] = self._app.router.routes[before:]
            return built


def include_routers(
    app: FastAPI, names: Iterable[str], included: set[str], shared: IncludedRouters | None = None
) -> None:
    """Include the routers `names` not in `included` yet, and keep every route in `ROUTERS`' order.
    Their routes are the process's (`shared`, by default `app.included_routers()`).

    Run in a thread while the event loop routes other requests: the app's route list is replaced,
    never sorted in place, so a request being routed meanwhile goes through a whole list; until the
    sorted one is in place the new routes are at its end, where they can only answer paths under
    their own first segments, whose requests wait for `included` to name them (`RouterGroups`)."""
    wanted = sorted(set(names) - included, key=_ORDER.__getitem__)
    if not wanted:
        return
    if shared is None:
        from dockyard.api.management.app import included_routers

        shared = included_routers()
    routes = [shared.routes(name) for name in wanted]  # all built first: an import error includes nothing
    app.router.routes = [*app.router.routes, *(route for each in routes for route in each)]
    app.router.routes = sorted(app.router.routes, key=_rank)
    included.update(wanted)


def _rank(route: object) -> int:
    """A route's router's place in `ROUTERS`; FastAPI's own routes (the OpenAPI document, /docs) first.
    FastAPI 0.165 keeps an included router as one route (`original_router`); earlier versions copied its
    routes into the app, known here by their endpoints' module (each router's are its module's)."""
    original = getattr(route, "original_router", None)
    if original is not None:
        return _RANKS.get(id(original), -1)
    module = getattr(getattr(route, "endpoint", None), "__module__", "")
    return _ORDER.get(module.removeprefix(_PACKAGE), -1)


class RouterGroups:
    """ASGI: the API's FastAPI app, each router included on the first request that may need it. The
    imports run in a thread (the event loop serves on meanwhile); requests needing routers being
    included wait for them."""

    def __init__(self, app: FastAPI, shared: IncludedRouters | None = None) -> None:
        self.app = app
        self.shared = shared  # None: the process's (include_routers)
        self.included: set[str] = set()
        # A thread lock, taken in the worker thread that includes: an asyncio.Lock belongs to one event
        # loop, and the API may be called from several (the portal's in-process calls, test clients).
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            names = routers_for(_route_path(scope))
            if not self.included.issuperset(names):
                await self._include(names)
        await self.app(scope, receive, send)

    async def _include(self, names: tuple[str, ...]) -> None:
        await anyio.to_thread.run_sync(self._include_now, names)

    def _include_now(self, names: tuple[str, ...]) -> None:
        with self._lock:
            if not self.included.issuperset(names):
                include_routers(self.app, names, self.included, self.shared)


def _route_path(scope: Scope) -> str:
    """The path below the API's mount (Starlette's Mount leaves `path` whole, `root_path` its prefix)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
