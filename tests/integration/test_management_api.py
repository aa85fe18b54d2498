"""The management API (/api/v1) through httpx against the ASGI app, over a real SQLite DB and storage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from dockyard.api.management import MOUNT_PATH, ManagementServices, SystemInfo, create_management_app
from dockyard.api.management.sessions import SessionCodec
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from dockyard.projects.rbac import ALL_PERMISSIONS, PUBLIC_PERMISSIONS, Permission
from dockyard.registry.cache import InProcessChangeFeed
from dockyard.registry.queries import RegistryQueries
from dockyard.registry.services import Registry
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver import build_driver
from dockyard.storage.uploads import UploadStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# --- stand-ins for the accounts side (the tests of the API frame need only their contract) ---------
@dataclass
class StubAuthenticator:
    accounts: dict[str, tuple[str, Principal]] = field(default_factory=dict)
    calls: int = 0

    def add(self, principal: Principal, secret: str) -> None:
        self.accounts[principal.name] = (secret, principal)

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        self.calls += 1
        known = self.accounts.get(username)
        if known is None or known[0] != secret:
            raise AuthenticationFailed()
        return known[1]


@dataclass
class StubLookup:
    authenticator: StubAuthenticator
    disabled: set[str] = field(default_factory=set)

    def principal(self, kind: str, name: str) -> Principal | None:
        known = self.authenticator.accounts.get(name)
        return None if known is None or name in self.disabled else known[1]


@dataclass
class StubAccess:
    """Admins may do everything; members have the permissions listed; public projects are readable."""

    public: set[str] = field(default_factory=set)
    members: dict[str, dict[str, frozenset[Permission]]] = field(default_factory=dict)

    def can(self, principal: Principal, project: str, permission: str) -> bool:
        if principal.is_admin:
            return True
        granted = set(self.members.get(principal.name, {}).get(project, frozenset()))
        if project in self.public:
            granted |= PUBLIC_PERMISSIONS
        return permission in granted

    def visible_projects(self, principal: Principal) -> Collection[str] | None:
        if principal.is_admin:
            return None
        return self.public | set(self.members.get(principal.name, {}))


# --- the stack ---------------------------------------------------------------------------------
class Api:
    """A synchronous face on httpx.AsyncClient + ASGITransport, one event loop for the whole test."""

    def __init__(self, app: Any) -> None:
        self._runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://dockyard.test")

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
    uploads: UploadStore
    authenticator: StubAuthenticator
    lookup: StubLookup
    access: StubAccess

    def push_blob(self, name: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        state = self.registry.start_upload(name)
        session = self.uploads.begin_append(state)
        session.write(data)
        self.registry.commit_upload(session.finish(), digest)
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


ADMIN = Principal(PrincipalKind.USER, "admin", 1, is_admin=True)
ALICE = Principal(PrincipalKind.USER, "alice", 2)
BOB = Principal(PrincipalKind.USER, "bob", 3)
ROBOT = Principal(PrincipalKind.ROBOT, "robot$team+ci", 4)


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


AS_ADMIN = basic("admin", "admin-pw")
AS_ALICE = basic("alice", "alice-pw")
AS_BOB = basic("bob", "bob-pw")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    upgrade(engine)
    db = Database(engine)
    driver = build_driver("filesystem", rootdirectory=tmp_path / "storage")
    uploads = UploadStore(db, driver)
    registry = Registry(db, BlobStore(db, driver, uploads), uploads, InProcessChangeFeed())
    authenticator = StubAuthenticator()
    for principal, secret in ((ADMIN, "admin-pw"), (ALICE, "alice-pw"), (BOB, "bob-pw"), (ROBOT, "robot-pw")):
        authenticator.add(principal, secret)
    lookup = StubLookup(authenticator)
    access = StubAccess(
        public={"library"},
        members={
            "alice": {"team": ALL_PERMISSIONS},
            "bob": {"team": frozenset({Permission.PROJECT_READ, Permission.PULL})},
        },
    )
    services = ManagementServices(
        db=db,
        driver=driver,
        registry=registry,
        queries=RegistryQueries(db),
        system=SystemInfo("0.1.0", "filesystem", "dockyard", False, False, True),
        authenticator=authenticator,
        principals=lookup,
        sessions=SessionCodec(b"k" * 32),
        access=access,
    )
    # Mounted as the composition root mounts it.
    app = Starlette(routes=[Mount(MOUNT_PATH, app=create_management_app(services))])
    api = Api(app)
    yield Stack(api, registry, uploads, authenticator, lookup, access)
    api.close()
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
    for headers in (basic("alice", "wrong"), basic("nobody", "x"), {"Authorization": "Basic !!!"}):
        response = stack.api.get("/repositories", headers=headers)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"] == 'Basic realm="dockyard"'
    response = stack.api.get("/repositories", headers={"Authorization": "Bearer abc"})
    assert_error(response, 401, "UNAUTHORIZED")


def test_login_sets_a_strict_httponly_cookie_and_csrf_guards_unsafe_methods(stack: Stack) -> None:
    stack.push_image("team/app", "v1", b"layer")
    assert_error(stack.api.post("/login", json={"username": "alice", "password": "no"}), 401, "UNAUTHORIZED")
    response = stack.api.post("/login", json={"username": "alice", "password": "alice-pw"})
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
    stack.lookup.disabled.add("alice")
    assert_error(stack.api.get("/repositories"), 401, "UNAUTHORIZED")
    stack.lookup.disabled.clear()
    assert stack.api.post("/logout").status_code == 204
    assert stack.api.get("/repositories").json() == []  # anonymous now: nothing public yet


def test_a_forged_session_cookie_is_refused(stack: Stack) -> None:
    response = stack.api.post("/login", json={"username": "bob", "password": "bob-pw"})
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
    response = stack.api.post("/login", json={"username": "robot$team+ci", "password": "robot-pw"})
    assert_error(response, 403, "FORBIDDEN")
    assert "dockyard_session" not in response.cookies


# --- system --------------------------------------------------------------------------------------
def test_systeminfo_hides_infrastructure_from_anonymous_callers(stack: Stack) -> None:
    anonymous = stack.api.get("/systeminfo").json()
    assert anonymous["version"] == "0.1.0" and anonymous["auth_mode"] == "dockyard"
    assert anonymous["storage_driver"] is None and anonymous["database"] is None
    signed_in = stack.api.get("/systeminfo", headers=AS_BOB).json()
    assert signed_in["storage_driver"] == "filesystem" and signed_in["database"] == "sqlite"


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
    assert all(a["platforms"] is None and a["tags"] == [] for a in children.json())
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


def _manifest_of(stack: Stack, name: str, reference: str) -> dict[str, Any]:
    return dict(json.loads(stack.registry.get_manifest(name, reference).content))
