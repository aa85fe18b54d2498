"""A worker includes the management API's routers on the first request under their paths
(`dockyard.api.management.router_groups`): the table of paths must match the routers, and the API
included piece by piece must be the API built whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from fastapi.routing import APIRoute

from dockyard.api.management import ManagementServices
from dockyard.api.management.app import create_lazy_management_app, create_management_app
from dockyard.api.management.router_groups import ALL, ROUTERS, include_routers, router, routers_for
from tests.support.asgi import call, http_scope

pytestmark = pytest.mark.db_independent  # no database: routes and the OpenAPI document only
NO_SERVICES = cast(ManagementServices, None)  # neither is called here


@pytest.mark.parametrize(("name", "segments"), ROUTERS)
def test_each_router_is_listed_under_the_first_segments_of_its_paths(
    name: str, segments: frozenset[str]
) -> None:
    routes = router(name).routes
    assert {cast(APIRoute, route).path.split("/")[1] for route in routes} == segments
    # Its place in the order is read from its endpoints' module.
    assert {cast(APIRoute, route).endpoint.__module__ for route in routes} == {
        f"dockyard.api.management.routers.{name}"
    }


def test_a_path_names_the_routers_with_routes_under_its_first_segment() -> None:
    assert routers_for("/repositories/team/app/artifacts/v1/signature") == (
        "signatures",
        "scans",
        "files",
        "artifact_contents",
        "repositories",
    )
    assert routers_for("/jobs/12") == ("jobs",)
    assert routers_for("/openapi.json") == ALL  # the whole document
    assert routers_for("/docs") == ALL
    assert routers_for("/no-such-thing") == ALL  # a 404 only once every router had its say


def test_routers_included_in_any_order_match_in_the_order_of_the_whole_api() -> None:
    whole = create_management_app(NO_SERVICES)
    lazy = create_lazy_management_app(NO_SERVICES)
    included: set[str] = set()
    for path in ("/jobs", "/repositories/a/b", "/projects/p", "/users"):
        include_routers(lazy.app, routers_for(path), included)
    # /repositories/{name:path} (repositories) after the artifact routes of signatures and scans.
    assert "repositories" in included and "signatures" in included and "system" not in included
    include_routers(lazy.app, ALL, included)
    assert _routes(lazy.app.routes) == _routes(whole.routes)
    assert list(lazy.app.openapi()["paths"]) == list(whole.openapi()["paths"])


def test_the_openapi_document_of_the_lazy_api_is_the_whole_apis() -> None:
    lazy = create_lazy_management_app(NO_SERVICES)
    answer = asyncio.run(_get(lazy, "/api/v1/openapi.json"))
    assert answer["status"] == 200 and lazy.included == set(ALL)
    document = json.loads(answer["body"])
    whole = create_management_app(NO_SERVICES).openapi()
    assert document.pop("servers") == [{"url": "/api/v1"}]  # where it is mounted
    assert list(document["paths"]) == list(whole["paths"]) and document == json.loads(json.dumps(whole))


def test_concurrent_first_requests_include_each_router_once() -> None:
    lazy = create_lazy_management_app(NO_SERVICES)

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(_get(lazy, "/api/v1/openapi.json"), _get(lazy, "/api/v1/docs")))

    assert [answer["status"] for answer in asyncio.run(both())] == [200, 200]
    assert _routes(lazy.app.routes) == _routes(create_management_app(NO_SERVICES).routes)


def _routes(routes: list[Any]) -> list[Any]:
    """Each route as its router (FastAPI 0.165 keeps an included router as one route) or its path."""
    return [getattr(route, "original_router", None) or (route.path, route.methods) for route in routes]


async def _get(app: Any, path: str) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    await call(app, http_scope("GET", path), sent)
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return {"status": sent[0]["status"], "body": body}


def test_first_requests_on_two_event_loops_wait_for_each_other() -> None:
    """The portal's in-process calls and test clients run the API on more than one event loop: the
    requests that wait for an inclusion must not depend on the loop that waited first."""
    lazy = create_lazy_management_app(NO_SERVICES)

    async def pair(first: str, second: str) -> list[int]:
        # Paths no route answers: each segment's routers are included, no handler runs.
        paths = (f"/api/v1/{first}/no/such/route", f"/api/v1/{second}/no/such/route")
        return [answer["status"] for answer in await asyncio.gather(*(_get(lazy, path) for path in paths))]

    assert asyncio.run(pair("jobs", "users")) == [404, 404]
    assert asyncio.run(pair("projects", "groups")) == [404, 404]  # another loop
    assert {"jobs", "users", "projects", "groups"} <= lazy.included
