"""Route a management API request among the routes that can answer its path's first segment only.

FastAPI 0.165 keeps each included router as one route, and a router's `matches()` tries every route
of its own: a request under `/projects` went through some ten routers before its own, ~0.5 ms of CPU
before any handler ran (bench/api_requests.py). `SegmentDispatch` takes the place of the API router's
route loop: for the first segment of the path (`projects` of `/projects/p1/members`) it hands the
request to a copy of the router that holds only the routes with a path under that segment (and any
whose first segment is a parameter), in the API's order. Those are all the routes that can match the
path, or its twin with or without a trailing slash, so the answer is the one the whole router gives:
the same route, the same 405 for a wrong method, the same redirect. A segment no route has
(`/no-such-thing`) goes to the whole router, whose 404 it is.

The copies are rebuilt when the router's route list is replaced (a worker includes routers on first
use, `router_groups`); they are never changed in place.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from fastapi.routing import APIRouter
from starlette._utils import get_route_path  # the path the routes match against
from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

ANY_SEGMENT = "{"  # a route whose first segment is a parameter: a candidate for every path


def install(router: APIRouter) -> None:
    """Route `router`'s HTTP requests by first segment (websockets and the lifespan as before)."""
    # Starlette calls the router through `middleware_stack`, which is its `app` unless the router was
    # given a body limit of its own (the API's is the app's): replacing it would drop that limit.
    assert router.max_body_size is None, "the router's own body limit would be bypassed"
    router.middleware_stack = SegmentDispatch(router)


class SegmentDispatch:
    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self._built_from: list[BaseRoute] | None = None
        self._by_segment: dict[str, APIRouter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router.app(scope, receive, send)
            return
        routers = self._routers()
        narrow = routers.get(first_segment(get_route_path(scope)))
        if narrow is None:
            await self.router.app(scope, receive, send)
            return
        scope.setdefault("router", self.router)  # url_for and friends see every route
        await narrow.app(scope, receive, send)

    def _routers(self) -> dict[str, APIRouter]:
        routes = self.router.routes
        if routes is not self._built_from:
            by_segment = narrowed(self.router, routes)
            self._by_segment, self._built_from = by_segment, routes  # the table, then what it is of
        return self._by_segment


def narrowed(router: APIRouter, routes: list[BaseRoute]) -> dict[str, APIRouter]:
    """For each first segment some route names: a copy of `router` with the routes that may match it."""
    segments = [frozenset(segments_of(route)) for route in routes]
    named = set().union(*segments) - {ANY_SEGMENT}
    by_segment: dict[str, APIRouter] = {}
    for segment in named:
        narrow = copy.copy(router)
        narrow.routes = [
            route for route, has in zip(routes, segments, strict=True) if segment in has or ANY_SEGMENT in has
        ]
        by_segment[segment] = narrow
    return by_segment


def segments_of(route: BaseRoute) -> Iterator[str]:
    """The first segments of the paths `route` answers; ANY_SEGMENT if it may answer any."""
    included = getattr(route, "original_router", None)  # FastAPI 0.165: an included router
    if included is not None and getattr(route, "include_context", None) is not None:
        if route.include_context.prefix or included.prefix:  # type: ignore[attr-defined]
            yield ANY_SEGMENT  # not in this API: not worth working out
            return
        for each in included.routes:
            yield from segments_of(each)
        return
    path = getattr(route, "path", None)
    if isinstance(route, Mount) or included is not None or not isinstance(path, str):
        yield ANY_SEGMENT  # a mount, a host, something new: tried for every path, as before
        return
    segment = first_segment(path)
    yield ANY_SEGMENT if "{" in segment else segment


def first_segment(path: str) -> str:
    """`projects` of `/projects/p1`; ANY_SEGMENT (no table entry: the whole router) for a path not
    starting with `/`."""
    return path.split("/", 2)[1] if path.startswith("/") else ANY_SEGMENT
