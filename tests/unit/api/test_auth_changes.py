"""Which management writes announce an authorization change (`dockyard.api.auth_changes`): every write
route of the API, read from its routers, is either one that changes who may do what (listed here, a
second opinion beside the module's QUIET_WRITES) or quiet. A new route fails here until it is sorted."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from starlette.routing import Mount

from dockyard.api.auth_changes import QUIET_WRITES, AnnounceWrites, announces
from tests.support.asgi import call, http_scope
from tests.support.authz import Endpoint, api_endpoints

pytestmark = pytest.mark.db_independent  # no database: the route table and ASGI messages only

READS = frozenset({"GET", "HEAD", "OPTIONS"})
P, PR = "/projects/{project}", "/projects/{project}/robots"
# Every write that changes an account, a credential, a group, a membership, a robot's permissions, a
# project's existence or visibility, a session or a token signing key: what the AUTH caches hold.
CHANGES_WHO_MAY_DO_WHAT = frozenset(
    {
        ("/logout", "POST"),
        ("/oidc/callback", "POST"),  # makes or updates the account and its groups
        ("/me/cli-secret", "POST"),
        ("/me/password", "PUT"),
        ("/me/tokens", "POST"),
        ("/me/tokens/{token_id}", "DELETE"),
        ("/system/signing-keys/rotate", "POST"),
        ("/system/signing-keys/{kid}/retire", "POST"),
        ("/users", "POST"),
        ("/users/{username}", "PATCH"),
        ("/users/{username}", "DELETE"),
        ("/users/{username}/password", "PUT"),
        ("/groups", "POST"),
        ("/groups/{group_id}", "DELETE"),
        ("/groups/{group_id}/members/{username}", "PUT"),
        ("/groups/{group_id}/members/{username}", "DELETE"),
        ("/projects", "POST"),
        (P, "PATCH"),  # its visibility
        (P, "DELETE"),
        (f"{P}/members", "POST"),
        (f"{P}/members/{{member_id}}", "PATCH"),
        (f"{P}/members/{{member_id}}", "DELETE"),
        ("/robots", "POST"),
        ("/robots/{name}", "PATCH"),
        ("/robots/{name}", "DELETE"),
        ("/robots/{name}/secret", "POST"),
        (PR, "POST"),
        (f"{PR}/{{name}}", "PATCH"),
        (f"{PR}/{{name}}", "DELETE"),
        (f"{PR}/{{name}}/secret", "POST"),
    }
)
WRITES = [e for e in api_endpoints() if e.method not in READS]


def example_path(endpoint: Endpoint) -> str:
    """The route's path with its parameters filled in (a repository name has slashes)."""

    def value(parameter: re.Match[str]) -> str:
        return "team/app" if parameter.group(2) else f"x-{parameter.group(1)}"

    return re.sub(r"{(\w+)(:path)?}", value, endpoint.path)


@pytest.mark.parametrize("endpoint", WRITES, ids=str)
def test_each_write_route_announces_exactly_when_it_changes_who_may_do_what(endpoint: Endpoint) -> None:
    changes = (endpoint.path, endpoint.method) in CHANGES_WHO_MAY_DO_WHAT
    announced = announces(endpoint.method, example_path(endpoint))
    unsorted = (
        f"{endpoint} is not sorted: into CHANGES_WHO_MAY_DO_WHAT here if it changes an account, a "
        "credential, a group, a membership, a robot's permissions, a project's visibility or a signing "
        "key; else into api.auth_changes.QUIET_WRITES"
    )
    silenced = f"{endpoint} changes who may do what, yet api.auth_changes.QUIET_WRITES silences it"
    assert announced == changes, unsorted if announced else silenced


def test_the_lists_name_only_existing_routes() -> None:
    writes = {(e.path, e.method) for e in WRITES}
    assert writes >= CHANGES_WHO_MAY_DO_WHAT
    for template in QUIET_WRITES:
        below = [e for e in WRITES if e.path == template or e.path.startswith(template + "/")]
        assert below, f"QUIET_WRITES names {template}, under which the API has no write route"
    assert len(WRITES) >= 80  # the routers were really read


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/users", False),
        ("HEAD", "/users/x", False),
        ("POST", "/jobsx", True),  # not below /jobs: announced, as anything unknown
        ("POST", "/jobs/1/cancel", False),
        ("DELETE", "/repositories/team/app/tags/v1", False),
        ("PATCH", "/projects/webhooks", True),  # a project called `webhooks`
        ("POST", "/projects/p/webhooks/robots", False),
        ("POST", "/projects/p/robots", True),
        ("POST", "/projects/p/robots/webhooks/secret", True),  # a robot called `webhooks`
    ],
)
def test_a_path_is_quiet_only_below_a_quiet_route(method: str, path: str, expected: bool) -> None:
    assert announces(method, path) is expected


def answered(status: int) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def announcements(method: str, path: str, status: int = 200) -> int:
    """How many times a request through the API's mount announced a change, each before the answer
    started (by then the client may act on it)."""
    sent: list[dict[str, Any]] = []
    made: list[int] = []  # how many messages had gone out at each announcement
    mount = Mount("/api/v1", app=AnnounceWrites(answered(status), lambda: made.append(len(sent))))
    asyncio.run(call(mount, http_scope(method, "/api/v1" + path, root_path=""), sent))
    assert sent[0]["status"] == status
    assert set(made) <= {0}, "announced after the answer started"
    return len(made)


def test_a_successful_account_change_announces_once_before_the_answer() -> None:
    assert announcements("PATCH", "/users/alice") == 1
    assert announcements("DELETE", "/projects/p/members/3", 204) == 1
    assert announcements("POST", "/logout", 204) == 1


def test_reads_refusals_and_quiet_writes_announce_nothing() -> None:
    assert announcements("GET", "/users") == 0
    assert announcements("PATCH", "/users/alice", 403) == 0
    assert announcements("PUT", "/projects/p/retention") == 0
    assert announcements("POST", "/login") == 0
