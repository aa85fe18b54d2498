"""The management API (/api/v1) through httpx against the ASGI app, over a real SQLite DB and storage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.routing import Mount

from dockyard.accounts.services import (
    GroupService,
    InProcessLoginLimiter,
    PersonalTokenService,
    RobotService,
    UserService,
)
from dockyard.accounts.sessions import LoginSessionService
from dockyard.api.management import MOUNT_PATH, ManagementServices, SystemInfo, create_management_app
from dockyard.api.management.sessions import SessionCodec
from dockyard.audit.interfaces import AuditEvent, AuditFilter
from dockyard.audit.services import AuditLog
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.projects.rbac import Role
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.models import Manifest
from dockyard.registry.queries import RegistryQueries
from dockyard.registry.services import Registry
from dockyard.storage.driver import build_driver
from dockyard.storage.uploads import UploadStore
from tests.support.postgres import migrated_scratch_database
from tests.support.registry import registry_parts
from tests.support.timeouts import HTTP_TIMEOUT

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# --- the stack ---------------------------------------------------------------------------------
class Api:
    """A synchronous face on httpx.AsyncClient + ASGITransport, one event loop for the whole test."""

    def __init__(self, app: Any) -> None:
        self._runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
        self.http = httpx.AsyncClient(
            transport=transport, base_url="http://dockyard.test", timeout=HTTP_TIMEOUT
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self.http.request(method, MOUNT_PATH + path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._runner.run(self.http.aclose())
        self._runner.close()


@dataclass
class Stack:
    api: Api
    registry: Registry
    blob_uploads: BlobUploads
    uploads: UploadStore
    services: ManagementServices

    def audit_events(self, **filters: Any) -> list[AuditEvent]:
        self.services.audit.flush()
        return list(
            self.services.audit.query(AuditFilter(**filters), page_size=100, sort="occurred_at").items
        )

    def push_blob(self, name: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        state = self.blob_uploads.start(name)
        session = self.uploads.begin_append(state)
        session.write(data)
        self.blob_uploads.commit(session.finish(), digest)
        return {"digest": digest, "size": len(data)}

    def push_image(self, name: str, tag: str | None, layer: bytes, arch: str = "amd64") -> dict[str, Any]:
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **self.push_blob(name, config)},
            "layers": [{"mediaType": LAYER, **self.push_blob(name, layer)}],
        }
        return self.push_manifest(name, tag, document, OCI_MANIFEST)

    def push_manifest(
        self, name: str, tag: str | None, document: dict[str, Any], media_type: str
    ) -> dict[str, Any]:
        body = json.dumps(document).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.registry.put_manifest(name, tag or digest, body, media_type)
        return {"mediaType": media_type, "digest": digest, "size": len(body)}


PASSWORDS = {"admin": "admin-password", "alice": "alice-password", "bob": "bobs-own-password"}


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


AS_ADMIN = basic("admin", PASSWORDS["admin"])
AS_ALICE = basic("alice", PASSWORDS["alice"])  # project admin of team
AS_BOB = basic("bob", PASSWORDS["bob"])  # guest in team


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    db = migrated_scratch_database(tmp_path)
    driver = build_driver("filesystem", rootdirectory=tmp_path / "storage")
    parts = registry_parts(db, driver, InProcessChangeFeed())
    registry, uploads = parts.registry, parts.uploads
    users, groups = UserService(db), GroupService(db)
    tokens, robots = PersonalTokenService(db), RobotService(db)
    projects, members = ProjectService(db), MemberService(db)
    audit = AuditLog(db, flush_interval=0.05)
    authenticator = LocalAuthenticator(users, groups, tokens, robots, InProcessLoginLimiter(5, 60))
    users.create("admin", PASSWORDS["admin"], admin=True)
    users.create("alice", PASSWORDS["alice"])
    users.create("bob", PASSWORDS["bob"])
    projects.create("team", owner="alice")
    projects.create("library", public=True)
    projects.create("secret")
    members.add_user("team", "bob", Role.GUEST)
    services = ManagementServices(
        db=db,
        driver=driver,
        registry=registry,
        queries=RegistryQueries(db),
        quotas=parts.quotas,
        immutability=parts.immutability,
        system=SystemInfo("0.1.0", "filesystem", "dockyard", False, False, True),
        authenticator=authenticator,
        sessions=SessionCodec(b"k" * 32),
        login_sessions=LoginSessionService(db),
        policy=AccessPolicy(db),
        users=users,
        personal_tokens=tokens,
        robots=robots,
        robot_access=RobotAccessService(db, robots),
        projects=projects,
        members=members,
        audit=audit,
    )
    # Mounted as the composition root mounts it.
    app = Starlette(routes=[Mount(MOUNT_PATH, app=create_management_app(services))])
    api = Api(app)
    yield Stack(api, registry, parts.blob_uploads, uploads, services)
    api.close()
    audit.close()
    db.dispose()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    (entry,) = body["errors"]
    assert entry["code"] == code, body
    assert isinstance(entry["message"], str) and entry["message"]
    return dict(entry)


# --- the frame: errors, authentication, sessions ------------------------------------------------
def test_openapi_document_is_served_under_the_mount(stack: Stack) -> None:
    response = stack.api.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/repositories/{name}/artifacts/{reference}" in paths
    assert "/systeminfo" in paths and "/health" in paths


def test_unknown_route_and_wrong_method_use_the_error_format(stack: Stack) -> None:
    assert_error(stack.api.get("/no-such-thing"), 404, "NOT_FOUND")
    assert_error(stack.api.request("PUT", "/systeminfo"), 405, "METHOD_NOT_ALLOWED")


def test_validation_errors_are_400_and_do_not_echo_values(stack: Stack) -> None:
    entry = assert_error(stack.api.get("/repositories", params={"page_size": "101"}), 400, "BAD_REQUEST")
    assert "page_size" in entry["message"]
    entry = assert_error(stack.api.post("/login", json={"username": "alice"}), 400, "BAD_REQUEST")
    assert "password" in entry["message"]
    entry = assert_error(stack.api.get("/repositories", params={"sort": "-secret"}), 400, "BAD_REQUEST")
    assert "sort" in entry["message"]


def test_wrong_basic_credentials_are_401_with_a_basic_challenge(stack: Stack) -> None:
    for headers in (basic("alice", "wrong-password"), basic("nobody", "x"), {"Authorization": "Basic !!!"}):
        response = stack.api.get("/repositories", headers=headers)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"] == 'Basic realm="dockyard"'
    response = stack.api.get("/repositories", headers={"Authorization": "Bearer abc"})
    assert_error(response, 401, "UNAUTHORIZED")


def test_login_sets_a_strict_httponly_cookie_and_csrf_guards_unsafe_methods(stack: Stack) -> None:
    stack.push_image("team/app", "v1", b"layer")
    assert_error(stack.api.post("/login", json={"username": "alice", "password": "no"}), 401, "UNAUTHORIZED")
    response = stack.api.post("/login", json={"username": "alice", "password": PASSWORDS["alice"]})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/api/v1" in cookie
    csrf = response.json()["csrf_token"]
    assert response.json()["username"] == "alice"
    # The cookie alone reads...
    assert stack.api.get("/repositories/team/app/tags").status_code == 200
    # ...but changes need the CSRF header too.
    path = "/repositories/team/app/tags/v1"
    assert_error(stack.api.delete(path), 403, "FORBIDDEN")
    assert_error(stack.api.delete(path, headers={"X-CSRF-Token": "guess"}), 403, "FORBIDDEN")
    assert stack.api.delete(path, headers={"X-CSRF-Token": csrf}).status_code == 204
    # A disabled account's session stops working at once.
    stack.services.users.update("alice", disabled=True)
    assert_error(stack.api.get("/repositories"), 401, "UNAUTHORIZED")
    stack.services.users.update("alice", disabled=False)
    assert stack.api.post("/logout").status_code == 204
    logins = [(e.action.value, e.actor, e.result.value) for e in stack.audit_events(resource_type=None)]
    assert ("login_failed", "alice", "failed") in logins and ("login", "alice", "ok") in logins
    assert stack.api.get("/repositories").json() == []  # anonymous now: nothing public yet


def test_a_forged_session_cookie_is_refused(stack: Stack) -> None:
    response = stack.api.post("/login", json={"username": "bob", "password": PASSWORDS["bob"]})
    value = response.cookies["dockyard_session"]
    _, _, signature = value.partition(".")
    forged = (
        base64.urlsafe_b64encode(json.dumps({"k": "user", "n": "admin", "e": 2**40, "c": "x"}).encode())
        .rstrip(b"=")
        .decode()
    )
    stack.api.http.cookies.set("dockyard_session", f"{forged}.{signature}", domain="dockyard.test")
    assert_error(stack.api.get("/systeminfo"), 401, "UNAUTHORIZED")


def test_robots_cannot_open_sessions(stack: Stack) -> None:
    created = stack.services.robot_access.create("ci", project="team", permissions={"team": ["pull"]})
    response = stack.api.post("/login", json={"username": "robot$team+ci", "password": created.secret})
    assert_error(response, 403, "FORBIDDEN")
    assert "dockyard_session" not in response.cookies


# --- system --------------------------------------------------------------------------------------
def test_systeminfo_hides_infrastructure_from_anonymous_callers(stack: Stack) -> None:
    anonymous = stack.api.get("/systeminfo").json()
    assert anonymous["version"] == "0.1.0" and anonymous["auth_mode"] == "dockyard"
    assert anonymous["storage_driver"] is None and anonymous["database"] is None
    signed_in = stack.api.get("/systeminfo", headers=AS_BOB).json()
    assert signed_in["storage_driver"] == "filesystem" and signed_in["database"] == stack.services.db.dialect


def test_health_reports_database_and_storage(stack: Stack) -> None:
    response = stack.api.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "components": [
            {"name": "database", "status": "healthy", "error": None},
            {"name": "storage", "status": "healthy", "error": None},
        ],
    }


# --- repositories, artifacts, tags ----------------------------------------------------------------
def test_repository_listing_shows_only_what_the_caller_may_read(stack: Stack) -> None:
    stack.push_image("team/app", "v1", b"a" * 100)
    stack.push_image("library/nginx", "latest", b"n" * 10)
    stack.push_image("secret/thing", "v1", b"s")

    def names(headers: dict[str, str] | None = None) -> list[str]:
        response = stack.api.get("/repositories", headers=headers or {})
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()]

    assert names() == ["library/nginx"]
    assert names(AS_BOB) == ["library/nginx", "team/app"]
    assert names(AS_ADMIN) == ["library/nginx", "secret/thing", "team/app"]
    team = stack.api.get("/repositories/team/app", headers=AS_BOB).json()
    assert team["project"] == "team" and team["artifact_count"] == 1 and team["tag_count"] == 1
    config_size = len(json.dumps({"architecture": "amd64", "os": "linux"}))
    manifest_size = stack.api.get("/repositories/team/app/artifacts/v1", headers=AS_BOB).json()
    assert team["size"] == 100 + config_size + len(json.dumps(manifest_size["manifest"]))
    # Private repositories: anonymous callers are asked to log in, outsiders see "not found".
    assert_error(stack.api.get("/repositories/secret/thing"), 401, "UNAUTHORIZED")
    assert_error(stack.api.get("/repositories/secret/thing", headers=AS_BOB), 404, "NOT_FOUND")
    assert_error(stack.api.get("/repositories/secret/thing/tags", headers=AS_BOB), 404, "NOT_FOUND")
    assert_error(stack.api.get("/repositories/team/none", headers=AS_BOB), 404, "NOT_FOUND")


def test_paging_sorting_and_filtering_with_total_and_link_headers(stack: Stack) -> None:
    for index in range(5):
        stack.push_image(f"team/app{index}", "v1", f"layer{index}".encode())
    response = stack.api.get("/repositories", headers=AS_ADMIN, params={"page_size": 2, "sort": "-name"})
    assert [item["name"] for item in response.json()] == ["team/app4", "team/app3"]
    assert response.headers["X-Total-Count"] == "5"
    links = response.headers["Link"]
    assert '</api/v1/repositories?page_size=2&sort=-name&page=2>; rel="next"' in links
    assert 'page=3>; rel="last"' in links and 'rel="prev"' not in links
    last = stack.api.get(
        "/repositories", headers=AS_ADMIN, params={"page_size": 2, "sort": "-name", "page": 3}
    )
    assert [item["name"] for item in last.json()] == ["team/app0"]
    assert 'rel="prev"' in last.headers["Link"] and 'rel="next"' not in last.headers["Link"]
    found = stack.api.get("/repositories", headers=AS_ADMIN, params={"q": "APP3"})
    assert [item["name"] for item in found.json()] == ["team/app3"]
    assert found.headers["X-Total-Count"] == "1"
    beyond = stack.api.get("/repositories", headers=AS_ADMIN, params={"page": 9})
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == "5"


def test_artifacts_of_an_index_list_platforms_tags_and_sizes(stack: Stack) -> None:
    amd = stack.push_image("team/multi", None, b"amd-layer", "amd64")
    arm = stack.push_image("team/multi", None, b"arm-layer-bytes", "arm64")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**amd, "platform": {"os": "linux", "architecture": "amd64"}},
            {**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }
    pushed = stack.push_manifest("team/multi", "latest", index, OCI_INDEX)
    stack.registry.put_manifest("team/multi", "stable", json.dumps(index).encode(), OCI_INDEX)

    response = stack.api.get("/repositories/team/multi/artifacts", headers=AS_BOB, params={"tagged": "true"})
    assert response.status_code == 200, response.text
    (artifact,) = response.json()
    assert artifact["digest"] == pushed["digest"]
    assert artifact["tags"] == ["latest", "stable"]
    assert artifact["media_type"] == OCI_INDEX
    assert [(p["architecture"], p["variant"]) for p in artifact["platforms"]] == [
        ("amd64", None),
        ("arm64", "v8"),
    ]
    children = stack.api.get("/repositories/team/multi/artifacts", headers=AS_BOB, params={"tagged": "false"})
    sizes = {a["digest"]: a["size"] for a in children.json()}
    assert set(sizes) == {amd["digest"], arm["digest"]}
    assert artifact["size"] == pushed["size"] + sum(sizes.values())
    # Each child image reports its own platform, read from its config at push.
    expected = {amd["digest"]: "amd64", arm["digest"]: "arm64"}
    assert all(
        a["tags"] == [] and [p["architecture"] for p in a["platforms"]] == [expected[a["digest"]]]
        for a in children.json()
    )
    everything = stack.api.get("/repositories/team/multi/artifacts", headers=AS_BOB, params={"sort": "size"})
    assert [a["digest"] for a in everything.json()][-1] == pushed["digest"]
    assert everything.headers["X-Total-Count"] == "3"

    by_tag = stack.api.get("/repositories/team/multi/artifacts/stable", headers=AS_BOB).json()
    assert by_tag["digest"] == pushed["digest"] and by_tag["manifest"]["mediaType"] == OCI_INDEX
    by_q = stack.api.get("/repositories/team/multi/artifacts", headers=AS_BOB, params={"q": "stab"})
    assert [a["digest"] for a in by_q.json()] == [pushed["digest"]]


def test_tags_list_and_delete_permissions(stack: Stack) -> None:
    image = stack.push_image("team/app", "v1", b"x")
    stack.registry.put_manifest(
        "team/app", "v2", json.dumps(_manifest_of(stack, "team/app", "v1")).encode(), OCI_MANIFEST
    )
    tags = stack.api.get("/repositories/team/app/tags", headers=AS_BOB, params={"sort": "-name"})
    assert [(t["name"], t["digest"]) for t in tags.json()] == [
        ("v2", image["digest"]),
        ("v1", image["digest"]),
    ]
    # bob may read team but not delete: 403; anonymous: 401; alice may.
    assert_error(stack.api.delete("/repositories/team/app/tags/v1", headers=AS_BOB), 403, "FORBIDDEN")
    assert_error(stack.api.delete("/repositories/team/app/tags/v1"), 401, "UNAUTHORIZED")
    assert_error(
        stack.api.delete(f"/repositories/team/app/tags/{image['digest']}", headers=AS_ALICE),
        400,
        "BAD_REQUEST",
    )
    assert stack.api.delete("/repositories/team/app/tags/v1", headers=AS_ALICE).status_code == 204
    assert_error(stack.api.delete("/repositories/team/app/tags/v1", headers=AS_ALICE), 404, "NOT_FOUND")
    assert [t["name"] for t in stack.api.get("/repositories/team/app/tags", headers=AS_BOB).json()] == ["v2"]
    # Deleting the artifact by its tag removes the artifact and every tag.
    assert stack.api.delete("/repositories/team/app/artifacts/v2", headers=AS_ALICE).status_code == 204
    assert stack.api.get("/repositories/team/app/artifacts", headers=AS_BOB).json() == []
    assert_error(
        stack.api.get(f"/repositories/team/app/artifacts/{image['digest']}", headers=AS_BOB), 404, "NOT_FOUND"
    )


def test_slashes_in_names_may_be_percent_encoded_and_may_look_like_routes(stack: Stack) -> None:
    stack.push_image("team/artifacts/x", "v1", b"x")
    encoded = stack.api.get("/repositories/team%2Fartifacts%2Fx/tags", headers=AS_BOB)
    assert [t["name"] for t in encoded.json()] == ["v1"]
    plain = stack.api.get("/repositories/team/artifacts/x/artifacts/v1", headers=AS_BOB)
    assert plain.status_code == 200 and plain.json()["repository"] == "team/artifacts/x"


def test_deletes_disabled_is_a_precondition_error(stack: Stack) -> None:
    stack.push_image("team/app", "v1", b"x")
    stack.registry.delete_enabled = False
    assert_error(stack.api.delete("/repositories/team/app/tags/v1", headers=AS_ALICE), 412, "PRECONDITION")


def test_rows_stored_before_the_push_checks_never_make_a_500(stack: Stack) -> None:
    """An index with a malformed platform used to be accepted, and the artifact listing then answered
    500. Push refuses those now; rows already stored must still list (bad fields read as unknown)."""
    amd = stack.push_image("team/legacy", None, b"amd-layer", "amd64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd]}
    pushed = stack.push_manifest("team/legacy", "v1", index, OCI_INDEX)
    stored = (
        b'{"schemaVersion": 2, "mediaType": "%s", "x": NaN, "note": "\\udc80", "manifests": ['
        b'{"digest": "%s", "platform": {"os": 1, "architecture": ["amd64"], "variant": {"v": 8}}},'
        b'{"digest": 7, "platform": "linux/arm64"}, "not a descriptor", {"platform": null}]}'
        % (OCI_INDEX.encode(), amd["digest"].encode())
    )
    with stack.services.db.write() as connection:
        connection.execute(
            update(Manifest)
            .where(Manifest.digest == pushed["digest"])
            .values(content=stored, annotations={"ok": "yes", "n": 1, "list": ["x"]})
        )
        image = update(Manifest).where(Manifest.digest == amd["digest"])
        connection.execute(image.values(platform=["linux"]))

    listing = stack.api.get("/repositories/team/legacy/artifacts", headers=AS_BOB)
    assert listing.status_code == 200, listing.text
    by_digest = {item["digest"]: item for item in listing.json()}
    legacy = by_digest[pushed["digest"]]
    assert legacy["annotations"] == {"ok": "yes"}
    assert [(p["digest"], p["os"], p["architecture"], p["variant"]) for p in legacy["platforms"]] == [
        (amd["digest"], None, None, None),
        ("", None, None, None),
        ("", None, None, None),
    ]
    assert by_digest[amd["digest"]]["platforms"] == [
        {"digest": amd["digest"], "os": None, "architecture": None, "variant": None}
    ]
    detail = stack.api.get(f"/repositories/team/legacy/artifacts/{pushed['digest']}", headers=AS_BOB)
    assert detail.status_code == 200, detail.text
    assert detail.json()["manifest"]["x"] is None and detail.json()["manifest"]["note"] == "?"
    assert stack.api.get("/repositories", headers=AS_BOB).status_code == 200


def _manifest_of(stack: Stack, name: str, reference: str) -> dict[str, Any]:
    return dict(json.loads(stack.registry.get_manifest(name, reference).content))


# --- users, me, personal tokens ----------------------------------------------------------------
def test_only_admins_manage_users_and_changes_are_audited(stack: Stack) -> None:
    assert_error(stack.api.get("/users"), 401, "UNAUTHORIZED")
    assert_error(stack.api.get("/users", headers=AS_ALICE), 403, "FORBIDDEN")
    denied = stack.api.post("/users", headers=AS_ALICE, json={"username": "eve", "password": "eve-password"})
    assert_error(denied, 403, "FORBIDDEN")

    created = stack.api.post(
        "/users",
        headers=AS_ADMIN,
        json={"username": "carol", "password": "carol-password", "email": "c@x.io"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "carol" and "password" not in created.text
    duplicate = stack.api.post(
        "/users", headers=AS_ADMIN, json={"username": "Carol", "password": "another-carol-pw"}
    )
    assert_error(duplicate, 409, "CONFLICT")  # usernames are unique whatever their case
    weak = stack.api.post("/users", headers=AS_ADMIN, json={"username": "dave", "password": "password"})
    assert_error(weak, 400, "BAD_REQUEST")
    assert "too easy to guess" in weak.json()["errors"][0]["message"]

    listed = stack.api.get("/users", headers=AS_ADMIN, params={"q": "CAR"})
    assert [u["username"] for u in listed.json()] == ["carol"]
    assert stack.api.get("/users", headers=AS_ADMIN).headers["X-Total-Count"] == "4"

    disabled = stack.api.request("PATCH", "/users/carol", headers=AS_ADMIN, json={"disabled": True})
    assert disabled.json()["disabled"] is True
    assert_error(stack.api.get("/me", headers=basic("carol", "carol-password")), 401, "UNAUTHORIZED")
    stack.api.request("PATCH", "/users/carol", headers=AS_ADMIN, json={"disabled": False})
    reset = stack.api.request(
        "PUT", "/users/carol/password", headers=AS_ADMIN, json={"password": "carol-new-password"}
    )
    assert reset.status_code == 204
    assert stack.api.get("/me", headers=basic("carol", "carol-new-password")).json()["name"] == "carol"
    # A login in another case is the same user, named as first written.
    assert stack.api.get("/me", headers=basic("CAROL", "carol-new-password")).json()["name"] == "carol"
    # The last administrator cannot be demoted.
    demote = stack.api.request("PATCH", "/users/admin", headers=AS_ADMIN, json={"admin": False})
    assert_error(demote, 409, "CONFLICT")
    assert stack.api.delete("/users/carol", headers=AS_ADMIN).status_code == 204
    assert_error(stack.api.get("/users/carol", headers=AS_ADMIN), 404, "NOT_FOUND")

    events = [
        (e.action.value, e.resource_name, e.result.value) for e in stack.audit_events(resource_type="user")
    ]
    assert events == [
        ("create", "carol", "ok"),
        ("create", "Carol", "failed"),
        ("create", "dave", "failed"),
        ("update", "carol", "ok"),
        ("update", "carol", "ok"),
        ("update", "carol", "ok"),
        ("update", "admin", "failed"),
        ("delete", "carol", "ok"),
    ]
    assert all(
        e.actor == "admin" and e.client_ip == "192.0.2.7" for e in stack.audit_events(resource_type="user")
    )
    # The refusal came before any handler ran: it is recorded as a denied request.
    (denial,) = stack.audit_events(action="access_denied")
    assert denial.actor == "alice" and denial.detail and denial.detail["path"] == "/api/v1/users"
    recorded = json.dumps([e.detail for e in stack.audit_events()])
    secrets = ("carol-password", "carol-new-password", "eve-password")
    assert not any(secret in recorded for secret in secrets)


def test_personal_tokens_are_shown_once_and_work_instead_of_the_password(stack: Stack) -> None:
    created = stack.api.post("/me/tokens", headers=AS_BOB, json={"name": "laptop"})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    listed = stack.api.get("/me/tokens", headers=AS_BOB).json()
    assert [t["name"] for t in listed] == ["laptop"] and "secret" not in listed[0]
    assert secret not in json.dumps(listed)
    me = stack.api.get("/me", headers=basic("bob", secret)).json()
    assert me["name"] == "bob" and me["kind"] == "user" and me["admin"] is False
    # Another user's token id is not found; revoking one's own stops it working.
    assert_error(stack.api.delete(f"/me/tokens/{listed[0]['id']}", headers=AS_ALICE), 404, "NOT_FOUND")
    assert stack.api.delete(f"/me/tokens/{listed[0]['id']}", headers=AS_BOB).status_code == 204
    assert_error(stack.api.get("/me", headers=basic("bob", secret)), 401, "UNAUTHORIZED")


def test_changing_my_password_needs_the_current_one(stack: Stack) -> None:
    wrong = {"current_password": "not-my-password", "new_password": "bob-new-password"}
    assert_error(stack.api.request("PUT", "/me/password", headers=AS_BOB, json=wrong), 403, "FORBIDDEN")
    right = {"current_password": PASSWORDS["bob"], "new_password": "bob-new-password"}
    assert stack.api.request("PUT", "/me/password", headers=AS_BOB, json=right).status_code == 204
    assert stack.api.get("/me", headers=basic("bob", "bob-new-password")).status_code == 200


# --- projects and members ------------------------------------------------------------------------
def test_projects_listing_creation_and_visibility(stack: Stack) -> None:
    def names(headers: dict[str, str] | None = None) -> list[str]:
        return [p["name"] for p in stack.api.get("/projects", headers=headers or {}).json()]

    assert names() == ["library"]
    assert names(AS_BOB) == ["library", "team"]
    assert names(AS_ADMIN) == ["library", "secret", "team"]
    team = stack.api.get("/projects/team", headers=AS_BOB).json()
    assert "push" not in team["permissions"] and "pull" in team["permissions"]
    assert_error(stack.api.get("/projects/secret", headers=AS_BOB), 404, "NOT_FOUND")
    assert_error(stack.api.get("/projects/secret"), 401, "UNAUTHORIZED")

    assert_error(stack.api.post("/projects", headers=AS_ALICE, json={"name": "mine"}), 403, "FORBIDDEN")
    created = stack.api.post("/projects", headers=AS_ADMIN, json={"name": "newteam", "public": False})
    assert created.status_code == 201 and created.json()["public"] is False
    assert_error(stack.api.post("/projects", headers=AS_ADMIN, json={"name": "newteam"}), 409, "CONFLICT")
    assert_error(stack.api.post("/projects", headers=AS_ADMIN, json={"name": "Bad Name"}), 400, "BAD_REQUEST")

    # Project admins may flip public; guests may not.
    flip = {"public": True}
    assert_error(stack.api.request("PATCH", "/projects/team", headers=AS_BOB, json=flip), 403, "FORBIDDEN")
    assert stack.api.request("PATCH", "/projects/team", headers=AS_ALICE, json=flip).json()["public"] is True
    assert names() == ["library", "team"]
    assert [p["name"] for p in stack.api.get("/projects", params={"public": "false"}).json()] == []

    # A project holding repositories is not deleted.
    stack.push_image("team/app", "v1", b"x")
    assert_error(stack.api.delete("/projects/team", headers=AS_ALICE), 412, "PRECONDITION")
    assert stack.api.delete("/projects/newteam", headers=AS_ADMIN).status_code == 204


def test_members_are_managed_by_project_admins(stack: Stack) -> None:
    stack.services.users.create("carol", "carol-password")
    members = stack.api.get("/projects/team/members", headers=AS_BOB)
    assert [(m["name"], m["role"]) for m in members.json()] == [("alice", "project_admin"), ("bob", "guest")]
    add = {"user": "carol", "role": "developer"}
    assert_error(stack.api.post("/projects/team/members", headers=AS_BOB, json=add), 403, "FORBIDDEN")
    added = stack.api.post("/projects/team/members", headers=AS_ALICE, json=add)
    assert added.status_code == 201, added.text
    assert_error(stack.api.post("/projects/team/members", headers=AS_ALICE, json=add), 409, "CONFLICT")
    both = {"user": "carol", "group": "devs", "role": "guest"}
    assert_error(stack.api.post("/projects/team/members", headers=AS_ALICE, json=both), 400, "BAD_REQUEST")
    bad_role = {"user": "carol", "role": "owner"}
    assert_error(
        stack.api.post("/projects/team/members", headers=AS_ALICE, json=bad_role), 400, "BAD_REQUEST"
    )
    member_id = added.json()["id"]
    as_carol = basic("carol", "carol-password")
    assert "push" in stack.api.get("/projects/team", headers=as_carol).json()["permissions"]
    update = {"role": "limited_guest"}
    changed = stack.api.request("PATCH", f"/projects/team/members/{member_id}", headers=AS_ALICE, json=update)
    assert changed.json()["role"] == "limited_guest"
    # Limited guests may pull but not see the member list.
    assert_error(stack.api.get("/projects/team/members", headers=as_carol), 403, "FORBIDDEN")
    assert stack.api.delete(f"/projects/team/members/{member_id}", headers=AS_ALICE).status_code == 204
    assert_error(stack.api.get("/projects/team", headers=as_carol), 404, "NOT_FOUND")
    events = stack.audit_events(resource_type="member")
    assert [(e.action.value, e.result.value) for e in events] == [
        ("create", "denied"),
        ("create", "ok"),
        ("create", "failed"),
        ("update", "ok"),
        ("delete", "ok"),
    ]


# --- robots ----------------------------------------------------------------------------------------
def test_project_robots_secret_shown_once_refresh_disable_delete(stack: Stack) -> None:
    body = {"name": "ci", "actions": ["pull", "push"]}
    assert_error(stack.api.post("/projects/team/robots", headers=AS_BOB, json=body), 403, "FORBIDDEN")
    created = stack.api.post("/projects/team/robots", headers=AS_ALICE, json=body)
    assert created.status_code == 201, created.text
    robot = created.json()
    assert robot["name"] == "robot$team+ci" and robot["level"] == "project"
    assert robot["permissions"] == [{"project": "team", "actions": ["pull", "push"]}]
    first_secret = robot["secret"]
    as_robot = basic("robot$team+ci", first_secret)
    assert stack.api.get("/me", headers=as_robot).json()["kind"] == "robot"
    listed = stack.api.get("/projects/team/robots", headers=AS_ALICE).json()
    assert [r["name"] for r in listed] == ["robot$team+ci"] and "secret" not in listed[0]
    # A guest sees the project's robots (Harbor's role table) but cannot manage them.
    listed = stack.api.get("/projects/team/robots", headers=AS_BOB)
    assert listed.status_code == 200 and all("secret" not in robot for robot in listed.json())

    refreshed = stack.api.post("/projects/team/robots/ci/secret", headers=AS_ALICE).json()
    assert refreshed["secret"] != first_secret
    assert_error(stack.api.get("/me", headers=as_robot), 401, "UNAUTHORIZED")
    as_robot = basic("robot$team+ci", refreshed["secret"])
    assert stack.api.get("/me", headers=as_robot).status_code == 200
    disable = {"disabled": True, "actions": ["pull"]}
    changed = stack.api.request(
        "PATCH", "/projects/team/robots/robot$team+ci", headers=AS_ALICE, json=disable
    )
    assert changed.json()["disabled"] is True
    assert changed.json()["permissions"] == [{"project": "team", "actions": ["pull"]}]
    assert_error(stack.api.get("/me", headers=as_robot), 401, "UNAUTHORIZED")
    # A project robot of another project is not reachable through this one.
    assert_error(stack.api.get("/projects/team/robots/robot$other+ci", headers=AS_ALICE), 400, "BAD_REQUEST")
    assert stack.api.delete("/projects/team/robots/ci", headers=AS_ALICE).status_code == 204
    assert_error(stack.api.get("/projects/team/robots/ci", headers=AS_ALICE), 404, "NOT_FOUND")


def test_system_robots_are_for_admins_and_expire(stack: Stack) -> None:
    body = {"name": "deployer", "permissions": [{"project": "team", "actions": ["pull"]}]}
    assert_error(stack.api.post("/robots", headers=AS_ALICE, json=body), 403, "FORBIDDEN")
    created = stack.api.post("/robots", headers=AS_ADMIN, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "robot$deployer" and created.json()["level"] == "system"
    as_robot = basic("robot$deployer", created.json()["secret"])
    # It reads team but not secret.
    stack.push_image("team/app", "v1", b"x")
    stack.push_image("secret/app", "v1", b"y")
    assert [r["name"] for r in stack.api.get("/repositories", headers=as_robot).json()] == ["team/app"]
    past = {"expires_at": "2000-01-01T00:00:00Z"}
    assert_error(
        stack.api.request("PATCH", "/robots/deployer", headers=AS_ADMIN, json=past), 400, "BAD_REQUEST"
    )
    unknown = {"name": "x", "permissions": [{"project": "nope", "actions": ["pull"]}]}
    assert_error(stack.api.post("/robots", headers=AS_ADMIN, json=unknown), 404, "NOT_FOUND")
    bad_action = {"name": "x", "permissions": [{"project": "team", "actions": ["own"]}]}
    assert_error(stack.api.post("/robots", headers=AS_ADMIN, json=bad_action), 400, "BAD_REQUEST")
    assert [r["name"] for r in stack.api.get("/robots", headers=AS_ADMIN).json()] == ["robot$deployer"]


# --- search and audit --------------------------------------------------------------------------------
def test_search_finds_only_visible_projects_and_repositories(stack: Stack) -> None:
    stack.push_image("team/webapp", "v1", b"x")
    stack.push_image("secret/webapp", "v1", b"y")
    stack.push_image("library/web", "v1", b"z")
    found = stack.api.get("/search", headers=AS_BOB, params={"q": "web"}).json()
    assert [r["name"] for r in found["repositories"]] == ["library/web", "team/webapp"]
    found = stack.api.get("/search", params={"q": "r"}).json()  # library, secret
    assert [p["name"] for p in found["projects"]] == ["library"]
    assert_error(stack.api.get("/search"), 400, "BAD_REQUEST")


def test_audit_log_for_admins_and_project_readers(stack: Stack) -> None:
    stack.api.post("/projects", headers=AS_ADMIN, json={"name": "newteam"})
    stack.services.users.create("carol", "carol-password")
    stack.api.post("/projects/team/members", headers=AS_ALICE, json={"user": "carol", "role": "guest"})
    stack.services.audit.flush()
    everything = stack.api.get("/audit", headers=AS_ADMIN)
    assert everything.status_code == 200, everything.text
    assert [e["resource_name"] for e in everything.json()] == ["team/carol", "newteam"]  # newest first
    assert_error(stack.api.get("/audit", headers=AS_BOB), 403, "FORBIDDEN")
    mine = stack.api.get("/audit", headers=AS_BOB, params={"project": "team"})
    assert [e["resource_name"] for e in mine.json()] == ["team/carol"]
    assert_error(stack.api.get("/audit", headers=AS_BOB, params={"project": "secret"}), 404, "NOT_FOUND")
    outside = {"project": "team", "resource": "secret/"}
    assert_error(stack.api.get("/audit", headers=AS_BOB, params=outside), 400, "BAD_REQUEST")
    filtered = stack.api.get("/audit", headers=AS_ADMIN, params={"actor": "admin", "action": "create"})
    assert [e["resource_name"] for e in filtered.json()] == ["newteam"]
    assert_error(stack.api.get("/audit", headers=AS_ADMIN, params={"action": "explode"}), 400, "BAD_REQUEST")
