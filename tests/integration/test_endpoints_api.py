"""/api/v1/endpoints: registry endpoints managed by system administrators, with write-only secrets sealed
at rest, health checks against a real registry (Debian's docker-registry behind htpasswd, on loopback),
every change audited, and the SSRF defence on create and on test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from dockyard.db.engine import build_engine
from tests.support.inprocess import ADMIN, TestClient, in_process_client, in_process_settings
from tests.support.registry2 import running_registry2

USER = ("puller", "registry2-htpasswd-password")
SECRET = USER[1]
LOOPBACK_ALLOWED = {"upstream": {"allowed_networks": ["127.0.0.0/8"], "total_timeout": "10s"}}
API = "/api/v1"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("endpoint-upstream"), USER) as url:
        yield url


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def api(workdir: Path) -> Iterator[TestClient]:
    with in_process_client(workdir, LOOPBACK_ALLOWED) as http:
        http.auth = ADMIN
        yield http


def assert_error(answer: Any, status: int, code: str) -> None:
    """The management API's own error format: {"errors": [{"code": ..., "message": ...}]}."""
    assert answer.status_code == status, answer.text
    assert answer.json()["errors"][0]["code"] == code, answer.text


def audit_events(api: TestClient, found: Any, **filters: str) -> list[dict[str, Any]]:
    """The audit events matching `filters` once `found(events)` holds (they are written about once a
    second)."""
    deadline = time.monotonic() + 15
    while True:
        events: list[dict[str, Any]] = api.get(f"{API}/audit", params=filters, auth=ADMIN).json()
        if found(events):
            return events
        assert time.monotonic() < deadline, events
        time.sleep(0.3)


def endpoint(url: str, name: str = "upstream", **extra: Any) -> dict[str, Any]:
    credentials = {"kind": "basic", "username": USER[0], "secret": SECRET}
    return {"name": name, "url": url, "kind": "registry", "credentials": credentials, **extra}


def test_an_admin_creates_tests_updates_and_deletes_an_endpoint(api: TestClient, upstream: str) -> None:
    created = api.post(f"{API}/endpoints", json=endpoint(upstream))
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": None, "updated_at": None} == {
        "name": "upstream",
        "url": upstream,
        "kind": "registry",
        "auth": "basic",
        "username": USER[0],
        "has_secret": True,
        "ca_pem": None,
        "verify_tls": True,
        "created_at": None,
        "updated_at": None,
    }
    assert [e["name"] for e in api.get(f"{API}/endpoints").json()] == ["upstream"]
    assert api.get(f"{API}/endpoints/upstream").json() == created.json()

    tested = api.post(f"{API}/endpoints/upstream/test").json()
    assert tested["ok"] is True and tested["auth"] == "basic" and tested["api_version"] == "registry/2.0"

    wrong = {"kind": "basic", "username": USER[0], "secret": "not-the-password"}
    assert api.patch(f"{API}/endpoints/upstream", json={"credentials": wrong}).status_code == 200
    failed = api.post(f"{API}/endpoints/upstream/test").json()
    assert failed["ok"] is False and "refused" in failed["error"]

    removed = api.patch(f"{API}/endpoints/upstream", json={"credentials": None}).json()
    assert (removed["auth"], removed["has_secret"], removed["username"]) == ("none", False, None)

    assert api.delete(f"{API}/endpoints/upstream").status_code == 204
    assert_error(api.get(f"{API}/endpoints/upstream"), 404, "NOT_FOUND")
    assert_error(api.delete(f"{API}/endpoints/upstream"), 404, "NOT_FOUND")


def test_the_secret_is_never_returned_logged_in_the_audit_or_stored_in_the_clear(
    api: TestClient, upstream: str, workdir: Path
) -> None:
    answers = [
        api.post(f"{API}/endpoints", json=endpoint(upstream)),
        api.get(f"{API}/endpoints"),
        api.get(f"{API}/endpoints/upstream"),
        api.post(f"{API}/endpoints/upstream/test"),
        api.patch(f"{API}/endpoints/upstream", json={"credentials": endpoint(upstream)["credentials"]}),
    ]
    for answer in answers:
        assert answer.status_code < 300, answer.text
        assert SECRET not in answer.text
    wanted = {("create", "ok"), ("check", "ok"), ("update", "ok")}
    events = audit_events(api, lambda found: {(e["action"], e["result"]) for e in found} >= wanted,
                          resource_type="endpoint")  # fmt: skip
    assert SECRET not in json.dumps(events)
    engine = build_engine(in_process_settings(workdir, LOOPBACK_ALLOWED).database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM registry_endpoints")).all()
    engine.dispose()
    assert len(rows) == 1 and SECRET not in json.dumps([list(map(str, row)) for row in rows])


def test_only_system_administrators_manage_endpoints(api: TestClient, upstream: str) -> None:
    api.post(f"{API}/endpoints", json=endpoint(upstream)).raise_for_status()
    assert (
        api.post(f"{API}/users", json={"username": "dev", "password": "a-developer-password-9x"}).status_code
        == 201
    )
    developer = ("dev", "a-developer-password-9x")
    for method, path, body in [
        ("GET", "/endpoints", None),
        ("POST", "/endpoints", endpoint(upstream, "mine")),
        ("GET", "/endpoints/upstream", None),
        ("PATCH", "/endpoints/upstream", {"url": "https://example.com"}),
        ("POST", "/endpoints/upstream/test", None),
        ("DELETE", "/endpoints/upstream", None),
    ]:
        assert_error(api.request(method, f"{API}{path}", json=body, auth=developer), 403, "FORBIDDEN")
        answer = api.request(method, f"{API}{path}", json=body, auth=None)
        assert answer.status_code == 401
    assert [e["name"] for e in api.get(f"{API}/endpoints").json()] == ["upstream"]
    assert api.get(f"{API}/endpoints/upstream").json()["url"] == upstream


def test_a_revoked_token_of_an_admin_no_longer_manages_endpoints(api: TestClient) -> None:
    made = api.post(f"{API}/me/tokens", json={"name": "automation"}).json()
    token = (ADMIN[0], made["secret"])
    assert api.get(f"{API}/endpoints", auth=token).status_code == 200
    assert api.delete(f"{API}/me/tokens/{made['id']}").status_code == 204
    assert api.get(f"{API}/endpoints", auth=token).status_code == 401
    refused = api.post(f"{API}/endpoints", json=endpoint("https://example.com", "late"), auth=token)
    assert refused.status_code == 401
    assert api.get(f"{API}/endpoints").json() == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "x", "url": "ftp://registry.example.com"}, 400),
        ({"name": "x", "url": "https://user:pw@registry.example.com"}, 400),
        ({"name": "x", "url": "https://registry.example.com?x=1"}, 400),
        ({"name": "x", "url": "file:///etc/passwd"}, 400),
        ({"name": "Bad Name", "url": "https://registry.example.com"}, 400),
        ({"name": "../x", "url": "https://registry.example.com"}, 400),
        ({"name": "x", "url": "https://registry.example.com", "kind": "gitlab"}, 400),
        (
            {
                "name": "x",
                "url": "https://registry.example.com",
                "credentials": {"kind": "basic", "secret": "s"},
            },
            400,
        ),
        ({"name": "x", "url": "https://registry.example.com", "ca_pem": "not a certificate"}, 400),
        ({"name": "x", "url": "https://registry.example.com", "secret": "stray"}, 400),
    ],
)
def test_invalid_endpoints_are_refused_in_the_apis_format(
    api: TestClient, body: dict[str, Any], status: int
) -> None:
    answer = api.post(f"{API}/endpoints", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["errors"][0]["code"]
    assert api.get(f"{API}/endpoints").json() == []


def test_a_duplicate_name_is_a_conflict(api: TestClient, upstream: str) -> None:
    api.post(f"{API}/endpoints", json=endpoint(upstream)).raise_for_status()
    assert_error(api.post(f"{API}/endpoints", json=endpoint(upstream)), 409, "CONFLICT")


def test_docker_hub_needs_no_url(api: TestClient) -> None:
    hub = api.post(f"{API}/endpoints", json={"name": "hub", "kind": "docker-hub"}).json()
    assert hub["url"] == "https://registry-1.docker.io"
    also = api.post(
        f"{API}/endpoints", json={"name": "hub2", "kind": "docker-hub", "url": "https://docker.io"}
    )
    assert also.json()["url"] == "https://registry-1.docker.io"


# --- SSRF ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5000", "http://169.254.169.254", "http://[::1]:5000", "http://localhost:5000",
     "http://10.0.0.1", "http://[::ffff:127.0.0.1]", "http://0.0.0.0:80"],
)  # fmt: skip
def test_by_default_internal_addresses_are_refused_on_create(workdir: Path, url: str) -> None:
    with in_process_client(workdir) as http:
        answer = http.post(f"{API}/endpoints", json=endpoint(url), auth=ADMIN)
        assert_error(answer, 400, "BAD_REQUEST")
        assert "allowed_networks" in answer.json()["errors"][0]["message"]
        assert http.get(f"{API}/endpoints", auth=ADMIN).json() == []


def test_by_default_the_test_of_an_internal_endpoint_connects_nowhere(workdir: Path, upstream: str) -> None:
    """An endpoint saved while its network was allowed (or whose name now resolves elsewhere) is still
    refused at connect time once it is not."""
    with in_process_client(workdir, LOOPBACK_ALLOWED) as allowing:
        allowing.post(f"{API}/endpoints", json=endpoint(upstream), auth=ADMIN).raise_for_status()
    with in_process_client(workdir) as default:
        result = default.post(f"{API}/endpoints/upstream/test", auth=ADMIN).json()
        assert result["ok"] is False and "may not fetch from" in result["error"]
        assert "127.0.0.1" in result["error"]
        events = audit_events(default, bool, action="check")
        assert events[0]["detail"]["ok"] is False


def test_credentials_sealed_under_another_secret_are_reported_not_sent(workdir: Path, upstream: str) -> None:
    """A node with another http.secret (a misconfigured HA node, a restore without the secret) cannot
    open the credentials: the test says so, and sends nothing."""
    first = {**LOOPBACK_ALLOWED, "http": {"secret": "the-first-http-secret-of-32-bytes-or-more"}}
    other = {**LOOPBACK_ALLOWED, "http": {"secret": "another-http-secret-of-32-bytes-or-more!"}}
    with in_process_client(workdir, first) as node:
        node.post(f"{API}/endpoints", json=endpoint(upstream), auth=ADMIN).raise_for_status()
        assert node.post(f"{API}/endpoints/upstream/test", auth=ADMIN).json()["ok"] is True
    with in_process_client(workdir, other) as node:
        result = node.post(f"{API}/endpoints/upstream/test", auth=ADMIN).json()
        assert result["ok"] is False and "cannot be opened" in result["error"]
        # Setting them again on this node seals them under its secret.
        node.patch(f"{API}/endpoints/upstream", json={"credentials": endpoint(upstream)["credentials"]},
                   auth=ADMIN).raise_for_status()  # fmt: skip
        assert node.post(f"{API}/endpoints/upstream/test", auth=ADMIN).json()["ok"] is True


def test_by_default_an_update_to_an_internal_address_is_refused(workdir: Path) -> None:
    with in_process_client(workdir) as http:
        http.post(
            f"{API}/endpoints", json={"name": "hub", "kind": "docker-hub"}, auth=ADMIN
        ).raise_for_status()
        for url in ("http://169.254.169.254/latest", "http://127.0.0.1:2375", "http://[fe80::1]"):
            assert_error(
                http.patch(f"{API}/endpoints/hub", json={"url": url}, auth=ADMIN), 400, "BAD_REQUEST"
            )
        assert http.get(f"{API}/endpoints/hub", auth=ADMIN).json()["url"] == "https://registry-1.docker.io"
