"""The management API routes a request among the routes under its path's first segment only
(`dockyard.api.management.dispatch`): every request must reach what the whole router would pick, the
same route with the same parameters, the same 405, redirect or 404."""

from __future__ import annotations

import asyncio
import re
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRouter

from dockyard.api.management import ManagementServices
from dockyard.api.management.app import create_management_app
from dockyard.api.management.dispatch import SegmentDispatch, narrowed
from tests.support.asgi import call, http_scope

pytestmark = pytest.mark.db_independent  # no database: routing only
NO_SERVICES = cast(ManagementServices, None)  # handlers that get this far fail, the same way each time
METHODS = ("GET", "POST", "DELETE")  # each route answers one or two of them: the others are a 405


def test_a_segment_is_tried_against_its_own_routers_only() -> None:
    app = create_management_app(NO_SERVICES)
    assert isinstance(app.router.middleware_stack, SegmentDispatch)
    table = narrowed(app.router, app.router.routes)
    assert [_name(route) for route in table["jobs"].routes] == ["jobs"]
    projects = [_name(route) for route in table["projects"].routes]
    assert projects[:4] == ["signatures", "sigstore", "scans", "projects"] and "jobs" not in projects
    assert "openapi.json" in table and "docs" in table  # FastAPI's own routes are segments too


def test_every_request_reaches_what_the_whole_router_picks() -> None:
    narrow = create_management_app(NO_SERVICES)
    whole = create_management_app(NO_SERVICES)
    whole.router.middleware_stack = whole.router.app  # FastAPI's own loop over every route
    requests = [(method, path) for method in METHODS for path in sorted(_paths(whole))]
    assert len(requests) > 800
    picked = asyncio.run(_routes(narrow, requests))
    assert picked == asyncio.run(_routes(whole, requests))
    statuses = {outcome for _, _, outcome, *_ in picked}
    assert {401, 404, 405, 307, "AttributeError"} <= statuses, statuses  # the cases were all there


async def _routes(app: FastAPI, requests: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    return [await _route(app, method, path) for method, path in requests]


def _paths(app: FastAPI) -> set[str]:
    """Each route's path with its parameters filled in, with and without a trailing slash, and one step
    further; and paths no route has."""
    paths = {"/", "", "/no-such-thing", "//projects", "/projects/", "/openapi.json", "/docs", "/docs/"}
    for path in app.openapi()["paths"]:
        filled = re.sub(r"\{[^}]+\}", "1", path)
        paths |= {filled, filled + "/", filled + "/more"}
    return paths


async def _route(app: FastAPI, method: str, path: str) -> tuple[Any, ...]:
    """What answered: the status or the exception, the redirect, the endpoint and its parameters."""
    scope = http_scope(method, "/api/v1" + path, raw_path=path)
    sent: list[dict[str, Any]] = []
    try:
        await call(app, scope, sent)
        outcome: Any = sent[0]["status"]
    except Exception as error:  # a handler given no services
        outcome = type(error).__name__
    headers = dict(sent[0]["headers"]) if sent else {}
    endpoint = getattr(scope.get("endpoint"), "__qualname__", None)
    return method, path, outcome, headers.get(b"location"), endpoint, scope.get("path_params")


def _name(route: Any) -> str:
    router: APIRouter | None = getattr(route, "original_router", None)
    if router is None:
        return cast(str, route.path.split("/")[1])
    return cast(str, router.routes[0].endpoint.__module__.rsplit(".", 1)[1])  # type: ignore[attr-defined]
