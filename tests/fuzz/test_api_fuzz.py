"""Fuzzing /api/v1 with schemathesis, from the API's own OpenAPI document: every operation gets
generated path parameters, queries and bodies (within the schema and outside it), sent as the
administrator so they reach the handlers. None may get a 5xx; every refusal is the API's error body
(`{"errors": [{"code", "message"}]}`); the API still answers after each operation's test
(`api_alive`), the registry still serves after the module.

Not derandomized: each run draws new cases (a failure prints how to reproduce it, and the example
database replays it first on the next local run)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from fastapi.routing import APIRoute
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from dockyard.api.management.router_groups import ALL, router
from tests.fuzz.target import EXAMPLES, Target
from tests.support.inprocess import ADMIN, basic
from tests.support.ociclient import describe

MOUNT = "/api/v1"


def operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI document, read at collection time from the API's
    routers, which FastAPI builds the document from (building the document itself cost each test
    process of `make test` ~0.7 s of CPU; test_every_documented_operation_is_fuzzed checks they agree)."""
    found = []
    for name in ALL:
        for route in router(name).routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                found += [(method, route.path_format) for method in sorted(route.methods)]
    return found


@pytest.fixture(scope="module")
def api_document(target: Target) -> dict[str, Any]:
    document = target.http.get(f"{MOUNT}/openapi.json")
    assert document.status_code == 200, describe(document)
    return dict(document.json())


@pytest.fixture(scope="module")
def api_schema(api_document: dict[str, Any]) -> Any:
    # Imported here, not at the top: every test process collects this module, one runs it, and
    # schemathesis costs ~0.1 s of CPU to import.
    import schemathesis

    return schemathesis.openapi.from_dict(api_document)


def test_every_documented_operation_is_fuzzed(api_document: dict[str, Any]) -> None:
    documented = {(method.upper(), path) for path, item in api_document["paths"].items() for method in item}
    assert set(operations()) == documented


def send(target: Target, case: Any) -> Any:
    """The case as the administrator sends it, through the app's own TestClient (one event loop)."""
    request = case.as_transport_kwargs(base_url=f"{target.http.base_url}{MOUNT}", headers=basic(*ADMIN))
    cookies = request.pop("cookies", None)
    if "data" in request and isinstance(request["data"], str | bytes):
        request["content"] = request.pop("data")
    if cookies:
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        request["headers"] = {**request["headers"], "Cookie": cookie}
    return target.http.request(**request)


def assert_api_answer(response: Any) -> None:
    """Not a server error; a refusal is the API's error body."""
    assert response.status_code < 500, describe(response)
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert response.headers.get("content-type") == "application/json", describe(response)
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"errors"}, describe(response)
        assert all({"code", "message"} <= set(error) for error in body["errors"]), describe(response)


# Only the input parts a negative case can break (see `negatable`): schemathesis throws away a negative
# case that broke nothing, and it did so for a third of all cases drawn (56 operations never got one).
PLAIN_STRING = {"type": "string"}


def negatable(operation: Any) -> bool:
    """Whether the operation has input a negative case can break: a body, a query, header or cookie
    parameter, or a path parameter with more of a schema than "any string" (in a path everything is a
    string, so only a constraint can be broken)."""
    if operation.body or any(True for _ in (*operation.query, *operation.headers, *operation.cookies)):
        return True
    return any(
        {key: value for key, value in parameter.definition.get("schema", {}).items() if key != "title"}
        != PLAIN_STRING
        for parameter in operation.path_parameters
    )


def cases(operation: Any) -> st.SearchStrategy[Any]:
    """Valid input (it reaches the handlers' logic) and, where there is input to break, invalid input
    (it tests the validation in front)."""
    from schemathesis import GenerationMode

    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if negatable(operation):
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


# No shrinking: a failure is reported as found (its request is in the message), not minimized first; one
# shrink took 312 s on the loaded CI machine. DOCKYARD_FUZZ_SHRINK=1 turns it on to investigate a failure.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("DOCKYARD_FUZZ_SHRINK") == "1":
    PHASES.append(Phase.shrink)


@pytest.mark.parametrize(("method", "path"), operations(), ids=lambda value: str(value))
def test_no_api_request_gets_a_server_error(
    method: str, path: str, api_schema: Any, api_alive: Target
) -> None:
    operation = api_schema[path][method]
    # Fewer examples where the only input is path strings (or none): no negative cases, and positive
    # ones vary only in those strings.
    examples = max(1, EXAMPLES // 5 if negatable(operation) else EXAMPLES // 12)

    @settings(max_examples=examples, phases=PHASES)
    @given(case=cases(operation))
    def check(case: Any) -> None:
        assert_api_answer(send(api_alive, case))

    check()
