"""Immutable tags against a real server (two worker processes, so rule changes must reach both):
a tag under a rule cannot move to another digest nor be deleted, through /v2 or the management API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.ociclient import OCIClient, assert_error, bearer_client, describe
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "immutable-Passw0rd")
REPOS = ("imm/app", "imm/other", "imm/team/app")


def registry_client(server: RunningServer, repos: tuple[str, ...]) -> httpx.Client:
    return bearer_client(server.url, ADMIN, repos)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from tests.support.server import start_server

    running = start_server(
        tmp_path_factory.mktemp("immutable"),
        {"auth": {"enabled": True}, "http": {"workers": 2}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    api = httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT)
    assert api.post("/projects", json={"name": "imm"}).status_code == 201
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with registry_client(server, REPOS) as http:
        yield OCIClient(http)


@pytest.fixture
def rule(api: httpx.Client) -> Iterator[Callable[..., dict[str, object]]]:
    added: list[int] = []

    def add(**body: object) -> dict[str, object]:
        response = api.post("/projects/imm/immutable-rules", json=body)
        assert response.status_code == 201, describe(response)
        added.append(int(response.json()["id"]))
        return dict(response.json())

    yield add
    for rule_id in added:
        api.delete(f"/projects/imm/immutable-rules/{rule_id}")


def _denied(response: httpx.Response, message: str) -> None:
    assert_error(response, 403, "DENIED")
    assert response.json()["errors"][0]["message"] == message


def test_an_immutable_tag_cannot_move_or_go(
    oci: OCIClient, api: httpx.Client, rule: Callable[..., dict[str, object]]
) -> None:
    first = oci.push_image("imm/app", "v1", seed="first")
    oci.push_image("imm/app", "latest", seed="first")
    created = rule(repository_pattern="app", tag_pattern="v*")
    rule_id = created["id"]
    assert created == {
        "id": rule_id,
        "repository_pattern": "app",
        "repository_excluding": False,
        "tag_pattern": "v*",
        "tag_excluding": False,
        "enabled": True,
    }
    message = f"tag v1 in imm/app is immutable (rule {rule_id})"

    # Pushing the same manifest again is idempotent; another digest is refused, on either worker.
    for _ in range(4):
        assert oci.put_manifest("imm/app", "v1", first.body, first.media_type).status_code == 201
    second = oci.push_image("imm/app", None, seed="second")  # by digest: no tag involved
    for _ in range(4):
        _denied(oci.put_manifest("imm/app", "v1", second.body, second.media_type), message)
        _denied(oci.http.delete("/v2/imm/app/manifests/v1"), message)
        _denied(oci.http.delete(f"/v2/imm/app/manifests/{first.digest}"), message)
    assert oci.get_manifest("imm/app", "v1").headers["Docker-Content-Digest"] == first.digest

    # The management API refuses the same deletes (412, as Harbor answers).
    refused = api.delete("/repositories/imm/app/tags/v1")
    assert refused.status_code == 412 and refused.json()["errors"][0]["message"] == message
    assert api.delete(f"/repositories/imm/app/artifacts/{first.digest}").status_code == 412

    # Tags and repositories the rule does not match stay mutable.
    assert oci.put_manifest("imm/app", "latest", second.body, second.media_type).status_code == 201
    assert oci.http.delete("/v2/imm/app/manifests/latest").status_code == 202
    oci.push_image("imm/other", "v1", seed="a")
    oci.push_image("imm/other", "v1", seed="b")
    assert oci.http.delete("/v2/imm/other/manifests/v1").status_code == 202

    # Without the rule (every worker hears of it through the change feed) the tag moves again.
    assert api.delete(f"/projects/imm/immutable-rules/{rule_id}").status_code == 204
    for _ in range(4):
        assert oci.put_manifest("imm/app", "v1", second.body, second.media_type).status_code == 201
    assert oci.http.delete("/v2/imm/app/manifests/v1").status_code == 202


def test_excluding_rules_and_nested_repositories(
    oci: OCIClient, rule: Callable[..., dict[str, object]]
) -> None:
    # Every tag except dev-* of repositories under team/ is immutable.
    created = rule(repository_pattern="team/**", tag_pattern="dev-*", tag_excluding=True)
    oci.push_image("imm/team/app", "1.0", seed="one")
    oci.push_image("imm/team/app", "dev-1", seed="one")
    other = oci.push_image("imm/team/app", None, seed="two")
    _denied(
        oci.put_manifest("imm/team/app", "1.0", other.body, other.media_type),
        f"tag 1.0 in imm/team/app is immutable (rule {created['id']})",
    )
    assert oci.put_manifest("imm/team/app", "dev-1", other.body, other.media_type).status_code == 201
    # A new tag may always be created, immutable from then on.
    assert oci.put_manifest("imm/team/app", "2.0", other.body, other.media_type).status_code == 201
    assert oci.http.delete("/v2/imm/team/app/manifests/2.0").status_code == 403


def test_rule_api_validates_and_is_for_project_admins(server: RunningServer, api: httpx.Client) -> None:
    bad = api.post("/projects/imm/immutable-rules", json={"repository_pattern": "{a,b", "tag_pattern": "*"})
    assert bad.status_code == 400 and "unclosed" in bad.json()["errors"][0]["message"]
    assert api.get("/projects/nope/immutable-rules").status_code == 404
    assert api.delete("/projects/imm/immutable-rules/424242").status_code == 404
    assert (
        httpx.get(f"{server.url}/api/v1/projects/imm/immutable-rules", timeout=HTTP_TIMEOUT).status_code
        == 401
    )
    listed = api.get("/projects/imm/immutable-rules")
    assert listed.status_code == 200 and isinstance(listed.json(), list)


def test_a_pattern_built_to_backtrack_does_not_stall_pushes(
    server: RunningServer, rule: Callable[..., dict[str, object]]
) -> None:
    """A rule made to make a backtracking matcher try every split of a tag of dashes (the issue's
    `*-*-*-*-*-*-*-X` stalled a worker 5 s per push; this one would never finish) costs a push nothing."""
    rule(repository_pattern="**", tag_pattern="*-" * 20 + "X")
    rule(repository_pattern="{a,{a,{a,*}}}*-" * 10 + "X", tag_pattern="**")
    tag = "a" + "-" * 127
    with registry_client(server, REPOS) as http:
        http.timeout = httpx.Timeout(20)  # generous: the push takes milliseconds, a stall is endless
        oci = OCIClient(http)
        for number in range(4):  # both workers, more than once
            oci.push_image("imm/app", f"{tag[: 128 - 1 - number]}{number}", seed=f"dashes-{number}")
            assert oci.http.get("/v2/").status_code == 200


def test_overlong_patterns_are_refused_with_a_reason(api: httpx.Client) -> None:
    too_long = "a" * 256
    for body in ({"repository_pattern": too_long, "tag_pattern": "*"}, {"tag_pattern": too_long}):
        refused = api.post("/projects/imm/immutable-rules", json=body)
        assert refused.status_code == 400, refused.text
        assert "255 characters" in refused.json()["errors"][0]["message"]
    retention = {"rules": [{"action": "always", "tags": {"match": ["v*", too_long]}}]}
    refused = api.put("/projects/imm/retention", json=retention)
    assert refused.status_code == 400, refused.text
    assert "longer than 255 characters" in refused.json()["errors"][0]["message"]
    assert api.get("/projects/imm/retention").status_code == 404  # nothing was stored


def test_the_api_adds_and_moves_tags_and_an_immutable_one_stays(
    oci: OCIClient, api: httpx.Client, rule: Callable[..., dict[str, object]]
) -> None:
    """PUT /repositories/{name}/tags/{tag}: a push of the artifact's manifest under the tag, without
    its bytes; an existing tag moves only when asked; an immutable one never moves; audited."""
    first = oci.push_image("imm/app", "t1", seed="tag-first")
    second = oci.push_image("imm/app", None, seed="tag-second")
    put = lambda tag, digest, **more: api.put(  # noqa: E731
        f"/repositories/imm/app/tags/{tag}", json={"digest": digest, **more}
    )
    added = put("t2", first.digest)
    assert added.status_code == 201, added.text
    assert added.json()["digest"] == first.digest and added.json()["previous"] is None
    assert oci.get_manifest("imm/app", "t2").headers["Docker-Content-Digest"] == first.digest
    assert put("t2", first.digest).status_code == 200  # already there: nothing to do
    conflict = put("t2", second.digest)
    assert conflict.status_code == 409 and "move" in conflict.json()["errors"][0]["message"]
    moved = put("t2", second.digest, move=True)
    assert moved.status_code == 200 and moved.json()["previous"] == first.digest
    assert oci.get_manifest("imm/app", "t2").headers["Docker-Content-Digest"] == second.digest
    # Bad input: a digest for a tag, a tag for a digest, a digest the repository lacks.
    assert put(second.digest, first.digest).status_code == 400
    assert put("t3", "t1").status_code == 400
    assert put("t3", "sha256:" + "0" * 64).status_code == 404
    assert api.put("/repositories/imm/nothing/tags/t1", json={"digest": first.digest}).status_code == 404

    created = rule(repository_pattern="app", tag_pattern="t2")
    refused = put("t2", first.digest, move=True)
    assert refused.status_code == 412, refused.text  # as a delete of it answers (Harbor's status)
    assert refused.json()["errors"][0]["message"] == f"tag t2 in imm/app is immutable (rule {created['id']})"
    assert oci.get_manifest("imm/app", "t2").headers["Docker-Content-Digest"] == second.digest
    assert put("t2", second.digest).status_code == 200  # naming what it names is no move

    deadline = time.monotonic() + 15
    while True:
        events = api.get("/audit", params={"resource": "imm/app:t2", "action": "push"}).json()
        results = [(e["result"], (e["detail"] or {}).get("previous")) for e in events]
        if ("failed", second.digest) in results or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert ("ok", None) in results and ("ok", first.digest) in results, results
    assert ("failed", first.digest) in results  # the 409
    assert ("failed", second.digest) in results, results  # the immutable tag
