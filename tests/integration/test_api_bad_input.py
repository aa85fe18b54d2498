"""Bad input on /api/v1 gets a 4xx in the API's error body (`{"errors": [{"code", "message"}]}`), never
a 500: paging past any integer the database holds, ids past 64 bits or below 1, Basic credentials
that are not base64 of UTF-8, paths the mount cannot route. The list and id routes are read from the
API's OpenAPI document, so a new router is covered the day it is added."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.inprocess import ADMIN, TestClient, in_process_client
from tests.support.ociclient import describe

MOUNT = "/api/v1"
HUGE = "9223372036854775807"  # 2^63 - 1: as a page, the row offset overflows 64 bits


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with in_process_client(tmp_path_factory.mktemp("api-bad-input")) as http:
        assert http.post(f"{MOUNT}/projects", json={"name": "team"}, auth=ADMIN).status_code == 201
        yield http


def assert_api_error(response: Any, status: int) -> None:
    assert response.status_code == status, describe(response)
    assert response.headers["content-type"] == "application/json", describe(response)
    body = response.json()
    assert set(body) == {"errors"} and {"code", "message"} <= set(body["errors"][0]), describe(response)


def operations(api: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    document = api.get(f"{MOUNT}/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def required_fields(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """The fields the operation's JSON body must have (none: `{}` will do, or it takes no body)."""
    body = operation.get("requestBody")
    if body is None:
        return []
    schema = body["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return list(schema.get("required", []))


def concrete(path: str) -> str:
    """A template's string parameters filled in with names that exist (`{project}`: team)."""
    return path.replace("{project}", "team").replace("{name}", "team/app").replace("{username}", "admin")


def test_every_list_refuses_pages_past_what_the_database_can_offset(api: TestClient) -> None:
    lists = [
        path
        for method, path, operation in operations(api)
        if method == "GET" and any(p["name"] == "page" for p in operation.get("parameters", []))
    ]
    assert len(lists) >= 10, lists
    for path in lists:
        for params in (
            {"page": HUGE},
            {"page": "9" * 30},
            {"page": "0"},
            {"page": "-1"},
            {"page_size": "0"},
            {"page_size": HUGE},
            {"page_size": "101"},
            {"page": "1e3"},
        ):
            response = api.get(MOUNT + concrete(path), params=params, auth=ADMIN)
            assert_api_error(response, 400)


@pytest.mark.parametrize("listing", ["projects", "jobs", "audit"])
def test_the_last_page_allowed_is_answered_empty(api: TestClient, listing: str) -> None:
    response = api.get(f"{MOUNT}/{listing}", params={"page": "1000000000", "page_size": "100"}, auth=ADMIN)
    assert response.status_code == 200 and response.json() == [], describe(response)


def test_every_numeric_id_refuses_numbers_its_column_cannot_hold(api: TestClient) -> None:
    """Each id route says its range in the OpenAPI document (1 to 2^31-1 for INTEGER keys, which
    PostgreSQL's int4 holds, 2^63-1 for BIGINT ones); past it, and below 1, is a 400. The largest id
    the range allows goes on like any other (a 404 here), never to a database error."""
    with_ids = []
    for method, path, operation in operations(api):
        ids = {
            p["name"]: p["schema"]
            for p in operation.get("parameters", [])
            if p["in"] == "path" and p.get("schema", {}).get("type") == "integer"
        }
        if ids:
            with_ids.append((method, path, ids, operation))
    assert len(with_ids) >= 10, with_ids
    document = api.get(f"{MOUNT}/openapi.json").json()
    for method, path, ids, operation in with_ids:
        for schema in ids.values():
            assert schema.get("minimum") == 1 and schema.get("maximum") in (2**31 - 1, 2**63 - 1), path
        for pick in ("maximum", "past", "99999999999999999999999", "0", "-1", "1" + "0" * 5000):
            url = concrete(path)
            for name, schema in ids.items():
                value = {"maximum": schema["maximum"], "past": schema["maximum"] + 1}.get(pick, pick)
                url = url.replace("{" + name + "}", str(value))
            response = api.request(method, MOUNT + url, auth=ADMIN, json={})
            if pick == "maximum":  # no such row: 404, unless the empty body is refused first
                assert_api_error(response, 400 if required_fields(document, operation) else 404)
            else:
                assert_api_error(response, 400)


def test_a_job_id_filter_past_its_column_is_refused(api: TestClient) -> None:
    """The runs' job_id filter holds a BIGINT like the job's own id: past it is a 400, not a driver error."""
    for value in (str(2**63), "0"):
        response = api.get(f"{MOUNT}/replication/runs", params={"job_id": value}, auth=ADMIN)
        assert_api_error(response, 400)
    largest = api.get(f"{MOUNT}/replication/runs", params={"job_id": str(2**63 - 1)}, auth=ADMIN)
    assert largest.status_code == 200 and largest.json() == [], describe(largest)


@pytest.mark.parametrize(
    "header",
    [
        "Basic ñ".encode(),  # non-ASCII in place of base64
        b"Basic \xff\xfe",
        b"Basic " + base64.b64encode(b"admin:\xff\xfe"),  # base64 of something that is not UTF-8
        b"Basic " + base64.b64encode("admé:pässword".encode("latin-1")),
        b"Basic " + base64.b64encode(b"no-colon"),
        b"Basic =",
    ],
)
def test_basic_credentials_that_do_not_decode_are_a_401(api: TestClient, header: bytes) -> None:
    response = api.get(f"{MOUNT}/projects", headers={"Authorization": header})
    assert_api_error(response, 401)


def test_an_authorization_header_over_the_limit_is_a_401_without_any_hashing(api: TestClient) -> None:
    oversized = b"Basic " + base64.b64encode(b"admin:" + b"x" * 16 * 1024)
    assert_api_error(api.get(f"{MOUNT}/projects", headers={"Authorization": oversized}), 401)


def test_a_path_the_mount_does_not_route_is_still_the_apis_404(api: TestClient) -> None:
    # Starlette's path patterns stop at a newline: the mount does not take this path.
    assert_api_error(api.get(f"{MOUNT}/projects/%0A0", auth=ADMIN), 404)


def test_a_project_robot_update_with_no_actions_is_refused(api: TestClient) -> None:
    created = api.post(f"{MOUNT}/projects/team/robots", json={"name": "ci", "actions": ["pull"]}, auth=ADMIN)
    assert created.status_code == 201, describe(created)
    response = api.patch(f"{MOUNT}/projects/team/robots/ci", json={"actions": []}, auth=ADMIN)
    assert_api_error(response, 400)
    still = api.get(f"{MOUNT}/projects/team/robots/ci", auth=ADMIN).json()
    assert still["permissions"] == [{"project": "team", "actions": ["pull"]}]


def test_nul_characters_are_refused_wherever_text_is_taken(api: TestClient) -> None:
    """PostgreSQL's text cannot hold a NUL (it was a 500 there) and SQLite would store it: a 400 on both,
    for every string query parameter of every GET, a name in the path, and a string in a JSON body."""
    queried = []
    for method, path, operation in operations(api):
        texts = [
            p["name"]
            for p in operation.get("parameters", [])
            if p["in"] == "query" and "string" in json_types(p.get("schema", {}))
        ]
        if method == "GET" and texts:
            queried.append(path)
            for name in texts:
                assert_api_error(api.get(MOUNT + concrete(path), params={name: "a\x00b"}, auth=ADMIN), 400)
    assert len(queried) >= 5, queried
    assert_api_error(api.get(f"{MOUNT}/projects/te%00am", auth=ADMIN), 400)
    created = api.post(f"{MOUNT}/projects", json={"name": "nul", "description": "a\x00b"}, auth=ADMIN)
    assert_api_error(created, 400)
    assert api.get(f"{MOUNT}/projects/nul", auth=ADMIN).status_code == 404


def json_types(schema: dict[str, Any]) -> set[str]:
    """The types a parameter's schema allows (`anyOf` for optional ones)."""
    if "type" in schema:
        return {schema["type"]}
    return {kind for option in schema.get("anyOf", []) for kind in json_types(option)}
