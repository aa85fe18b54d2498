"""The /v2 gate remembers what the policy answered per project, not per repository: roles, robot
permissions and public access are all per project, so a client pulling from thousands of a project's
repositories asks the database once, with Basic credentials or with bearer tokens, while the answer for
another project, other actions or a name that is not valid is still its own. The whole app in-process
(tests/support/inprocess.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.support.inprocess import ADMIN, TestClient, in_process_client
from tests.support.ociclient import OCIClient, assert_error, describe, digest_of

USER = ("reader", "a-reader-password-that-is-long")
LAYER = b"one layer in every repository"


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    workdir: Path = tmp_path_factory.mktemp("gate-per-project")
    with in_process_client(workdir) as client:
        for project in ("team", "other"):
            assert client.post("/api/v1/projects", json={"name": project}, auth=ADMIN).status_code == 201
        made = client.post("/api/v1/users", json={"username": USER[0], "password": USER[1]}, auth=ADMIN)
        assert made.status_code == 201, made.text
        member = {"user": USER[0], "role": "guest"}  # pull only
        assert client.post("/api/v1/projects/team/members", json=member, auth=ADMIN).status_code == 201
        client.auth = ADMIN
        oci = OCIClient(client)
        for repository in ("team/a", "team/b", "team/c", "other/a"):
            oci.push_blob(repository, LAYER)
        client.auth = None
        yield client


@contextmanager
def policy_queries() -> Iterator[list[str]]:
    """The statements that read a principal's roles (auth.policy), from any engine in this process."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "project_members" in statement or "robot_permissions" in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _head(http: TestClient, repository: str, **kwargs: Any) -> int:
    return http.head(f"/v2/{repository}/blobs/{digest_of(LAYER)}", **kwargs).status_code


def test_basic_credentials_ask_once_per_project(http: TestClient) -> None:
    with policy_queries() as queries:
        assert _head(http, "team/a", auth=USER) == 200
    assert len(queries) == 1
    with policy_queries() as queries:
        assert [_head(http, name, auth=USER) for name in ("team/b", "team/c", "team/a")] == [200] * 3
    assert queries == []  # the same project: remembered
    with policy_queries() as queries:
        assert _head(http, "other/a", auth=USER) in (401, 403)  # not a member of `other`
        push = http.post("/v2/team/b/blobs/uploads/", auth=USER)  # guests may not push
    assert len(queries) == 2  # other actions, another project: asked again
    assert_error(push, 403, "DENIED")


def test_bearer_tokens_standing_is_checked_once_per_project(http: TestClient) -> None:
    def token(repository: str) -> str:
        answer = http.get(
            "/token", params={"service": "dockyard", "scope": f"repository:{repository}:pull"}, auth=USER
        )
        assert answer.status_code == 200, describe(answer)
        return str(answer.json()["token"])

    tokens = {name: token(name) for name in ("team/a", "team/b", "team/c")}
    with policy_queries() as queries:
        statuses = [
            _head(http, name, headers={"Authorization": f"Bearer {tokens[name]}"}) for name in tokens
        ]
    assert statuses == [200] * 3
    assert len(queries) <= 1  # the first one's standing, at most (a Basic answer may be remembered too)
    # A token still only opens the repositories it names, whatever is remembered for the project.
    assert _head(http, "team/b", headers={"Authorization": f"Bearer {tokens['team/a']}"}) == 401


def test_a_name_that_is_not_valid_is_not_answered_from_its_project(http: TestClient) -> None:
    assert _head(http, "team/a", auth=USER) == 200
    answer = http.get("/v2/team/NOT_VALID/tags/list", auth=USER)
    assert_error(answer, 400, "NAME_INVALID")
