"""The authorization matrix (issue 3): every /v2 and /api/v1 endpoint, read from the route tables,
against every kind of principal, in a private and in a public project, on one real `dockyard serve`.

The expectations are the two tables below, written by hand from the issue and Harbor's semantics
(the role table is in tests/support/authz.py). An endpoint without an entry fails its test, so a new
route cannot skip the matrix. /v2 is called through the token flow (GET /token with Basic and the
scope, then Bearer) and with Basic directly; /api/v1 with sessions (most users), a personal access
token (the developer), Basic (robots) and a session opened before its user was disabled.

An allowed call must succeed with the endpoint's status; a refused one must be 401/403/404 as the
protocol says, in the protocol's error format, and must not have changed what it aimed at.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from starlette.routing import compile_path

from tests.support.authz import (
    ACCOUNT,
    ANYONE,
    DELETE,
    LOG_READ,
    LOGIN,
    MEMBER_MANAGE,
    MEMBER_READ,
    OIDC_SESSION,
    OPEN,
    PASSWORD_USER,
    PROJECT_DELETE,
    PROJECT_READ,
    PROJECT_UPDATE,
    PULL,
    PUSH,
    QUOTA_SET,
    ROBOT_MANAGE,
    ROBOT_READ,
    SYSTEM_ADMIN,
    USER,
    Actor,
    Admin,
    Call,
    Caller,
    Counter,
    Endpoint,
    Rule,
    Session,
    api_denial,
    api_endpoints,
    api_refusal_problems,
    fill,
    login,
    token_scope,
    v2_denial,
    v2_endpoints,
    v2_refusal_problems,
)
from tests.support.layers import file, layer
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    describe,
    descriptor,
    digest_of,
    image_manifest,
)
from tests.support.server import start_server
from tests.support.timeouts import HTTP_TIMEOUT

PRIV, PUB, ELSE = "mxpriv", "mxpub", "mxelse"  # a private and a public matrix project; another one
PUBLIC = {PRIV: False, PUB: True, ELSE: False}
PASSWORD = "matrix-password-1"
ADMIN_PASSWORD = "matrix-admin-password-1"


def needs(*permissions: str) -> frozenset[str]:
    return frozenset(permissions)


# --- the expectations ----------------------------------------------------------------------------
V2 = "/v2/{name:path}"
V2_RULES: dict[tuple[str, str], Rule] = {
    ("/v2/", "GET"): Rule(LOGIN),
    ("/v2/", "HEAD"): Rule(LOGIN),
    ("/v2/_catalog", "GET"): Rule(ACCOUNT),  # filtered to what the caller may read
    (f"{V2}/blobs/uploads/", "POST"): Rule(needs(PULL, PUSH), 201),
    (f"{V2}/blobs/uploads/{{upload_id}}", "GET"): Rule(needs(PULL, PUSH), 204),
    (f"{V2}/blobs/uploads/{{upload_id}}", "PATCH"): Rule(needs(PULL, PUSH), 202),
    (f"{V2}/blobs/uploads/{{upload_id}}", "PUT"): Rule(needs(PULL, PUSH), 201),
    (f"{V2}/blobs/uploads/{{upload_id}}", "DELETE"): Rule(needs(PULL, PUSH), 204),
    (f"{V2}/blobs/{{digest}}", "GET"): Rule(needs(PULL)),
    (f"{V2}/blobs/{{digest}}", "HEAD"): Rule(needs(PULL)),
    (f"{V2}/blobs/{{digest}}", "DELETE"): Rule(needs(DELETE), 202),
    (f"{V2}/manifests/{{reference}}", "GET"): Rule(needs(PULL)),
    (f"{V2}/manifests/{{reference}}", "HEAD"): Rule(needs(PULL)),
    (f"{V2}/manifests/{{reference}}", "PUT"): Rule(needs(PULL, PUSH), 201),
    (f"{V2}/manifests/{{reference}}", "DELETE"): Rule(needs(DELETE), 202),
    (f"{V2}/tags/list", "GET"): Rule(needs(PULL)),
    (f"{V2}/referrers/{{digest}}", "GET"): Rule(needs(PULL)),
}
P, R, PR = "/projects/{project}", "/repositories/{name:path}", "/projects/{project}/robots"
API_RULES: dict[tuple[str, str], Rule] = {
    ("/openapi.json", "GET"): Rule(OPEN),
    ("/openapi.json", "HEAD"): Rule(OPEN),
    ("/docs", "GET"): Rule(OPEN),
    ("/docs", "HEAD"): Rule(OPEN),
    ("/docs/oauth2-redirect", "GET"): Rule(OPEN),
    ("/docs/oauth2-redirect", "HEAD"): Rule(OPEN),
    ("/health", "GET"): Rule(OPEN),
    ("/systeminfo", "GET"): Rule(ANYONE),
    ("/system/signing-keys", "GET"): Rule(SYSTEM_ADMIN),
    ("/system/signing-keys/rotate", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/system/signing-keys/{kid}/retire", "POST"): Rule(SYSTEM_ADMIN),
    ("/login", "POST"): Rule(USER),  # the credentials are in the body; robots use Basic instead
    ("/logout", "POST"): Rule(OPEN, 204),
    # Single sign-on is not configured on the matrix server: 404 whoever asks (test_oidc.py runs it with a
    # real provider). Both take no credentials: the login is what they make.
    ("/oidc/authorize", "POST"): Rule(OPEN, 404),
    ("/oidc/callback", "POST"): Rule(OPEN, 404),
    ("/me/cli-secret", "POST"): Rule(OIDC_SESSION),  # only in a session opened with single sign-on
    ("/system/oidc/test", "POST"): Rule(SYSTEM_ADMIN, 404),  # 404: not configured on the matrix server
    ("/system/ldap/test", "POST"): Rule(SYSTEM_ADMIN, 404),  # the same (test_ldap.py tests it)
    ("/system/sign-in", "GET"): Rule(SYSTEM_ADMIN),
    ("/users", "GET"): Rule(SYSTEM_ADMIN),
    ("/users", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/users/{username}", "GET"): Rule(SYSTEM_ADMIN),
    ("/users/{username}", "PATCH"): Rule(SYSTEM_ADMIN),
    ("/users/{username}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/users/{username}/password", "PUT"): Rule(SYSTEM_ADMIN, 204),
    ("/groups", "GET"): Rule(SYSTEM_ADMIN),
    ("/groups", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/groups/{group_id}", "GET"): Rule(SYSTEM_ADMIN),
    ("/groups/{group_id}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/groups/{group_id}/members/{username}", "PUT"): Rule(SYSTEM_ADMIN),
    ("/groups/{group_id}/members/{username}", "DELETE"): Rule(SYSTEM_ADMIN),
    ("/me", "GET"): Rule(ACCOUNT),
    ("/me/password", "PUT"): Rule(USER, 204),
    ("/me/tokens", "GET"): Rule(USER),
    ("/me/tokens", "POST"): Rule(PASSWORD_USER, 201),  # never with a personal token (the developer's)
    ("/me/tokens/{token_id}", "DELETE"): Rule(USER, 204),
    ("/projects", "GET"): Rule(ANYONE),  # filtered
    ("/projects", "POST"): Rule(SYSTEM_ADMIN, 201),
    (P, "GET"): Rule(needs(PROJECT_READ)),
    (P, "PATCH"): Rule(needs(PROJECT_UPDATE)),
    (P, "DELETE"): Rule(needs(PROJECT_DELETE), 204),
    (f"{P}/members", "GET"): Rule(needs(MEMBER_READ)),
    (f"{P}/members", "POST"): Rule(needs(MEMBER_MANAGE), 201),
    (f"{P}/members/{{member_id}}", "GET"): Rule(needs(MEMBER_READ)),
    (f"{P}/members/{{member_id}}", "PATCH"): Rule(needs(MEMBER_MANAGE)),
    (f"{P}/members/{{member_id}}", "DELETE"): Rule(needs(MEMBER_MANAGE), 204),
    ("/robots", "GET"): Rule(SYSTEM_ADMIN),
    ("/robots", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/robots/{name}", "GET"): Rule(SYSTEM_ADMIN),
    ("/robots/{name}", "PATCH"): Rule(SYSTEM_ADMIN),
    ("/robots/{name}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/robots/{name}/secret", "POST"): Rule(SYSTEM_ADMIN),
    (PR, "GET"): Rule(needs(ROBOT_READ)),
    (PR, "POST"): Rule(needs(ROBOT_MANAGE), 201),
    (f"{PR}/{{name}}", "GET"): Rule(needs(ROBOT_READ)),
    (f"{PR}/{{name}}", "PATCH"): Rule(needs(ROBOT_MANAGE)),
    (f"{PR}/{{name}}", "DELETE"): Rule(needs(ROBOT_MANAGE), 204),
    (f"{PR}/{{name}}/secret", "POST"): Rule(needs(ROBOT_MANAGE)),
    ("/repositories", "GET"): Rule(ANYONE),  # filtered
    (R, "GET"): Rule(needs(PROJECT_READ)),
    (f"{R}/artifacts", "GET"): Rule(needs(PROJECT_READ)),
    (f"{R}/artifacts/{{reference}}", "GET"): Rule(needs(PROJECT_READ)),
    (f"{R}/artifacts/{{reference}}", "DELETE"): Rule(needs(DELETE), 204),
    (f"{R}/tags", "GET"): Rule(needs(PROJECT_READ)),
    (f"{R}/tags/{{tag}}", "DELETE"): Rule(needs(DELETE), 204),
    (f"{R}/tags/{{tag}}", "PUT"): Rule(needs(PULL, PUSH), 201),  # as a manifest PUT over /v2
    ("/search", "GET"): Rule(ANYONE),  # filtered
    ("/audit", "GET"): Rule(SYSTEM_ADMIN),  # the whole log
    # Tag retention: whoever sees the project reads its policy and runs; project admins change and run it.
    (f"{P}/retention", "GET"): Rule(needs(PROJECT_READ)),
    (f"{P}/retention", "PUT"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/retention", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    (f"{P}/retention/run", "POST"): Rule(needs(PROJECT_UPDATE), 202),
    (f"{P}/retention/runs", "GET"): Rule(needs(PROJECT_READ)),
    (f"{P}/retention/runs/{{run_id}}", "GET"): Rule(needs(PROJECT_READ)),
    # The vulnerability allowlist: whoever sees the project reads it; project admins change it.
    (f"{P}/vulndb/allowlist", "GET"): Rule(needs(PROJECT_READ)),
    (f"{P}/vulndb/allowlist/{{vuln_id}}", "PUT"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/vulndb/allowlist/{{vuln_id}}", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    # Quotas: project admins read theirs, only system administrators change it (as Harbor).
    (f"{P}/quota", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/quota", "PUT"): Rule(needs(PROJECT_READ, QUOTA_SET)),
    # Immutable tag rules: project admins.
    (f"{P}/immutable-rules", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/immutable-rules", "POST"): Rule(needs(PROJECT_UPDATE), 201),
    (f"{P}/immutable-rules/{{rule_id}}", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/immutable-rules/{{rule_id}}", "PUT"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/immutable-rules/{{rule_id}}", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    # Webhook policies (their targets, the delivery log, test deliveries): project admins.
    (f"{P}/webhooks", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/webhooks", "POST"): Rule(needs(PROJECT_UPDATE), 201),
    (f"{P}/webhooks/{{name}}", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/webhooks/{{name}}", "PUT"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/webhooks/{{name}}", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    (f"{P}/webhooks/{{name}}/deliveries", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/webhooks/{{name}}/test", "POST"): Rule(needs(PROJECT_UPDATE)),
    # Trusted signing keys: project admins; an artifact's signature verdict: whoever reads it.
    (f"{P}/signing-keys", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/signing-keys", "POST"): Rule(needs(PROJECT_UPDATE), 201),
    (f"{P}/signing-keys/{{key_name}}", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/signing-keys/{{key_name}}", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    (f"{P}/trust-policy", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/trust-policy", "PUT"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/trust-policy", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    (f"{P}/sigstore/trust-roots", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/sigstore/trust-roots/{{root_name}}", "PUT"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/sigstore/trust-roots/{{root_name}}", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    (f"{P}/sigstore/identities", "GET"): Rule(needs(PROJECT_UPDATE)),
    (f"{P}/sigstore/identities", "POST"): Rule(needs(PROJECT_UPDATE), 201),
    (f"{P}/sigstore/identities/{{identity_name}}", "DELETE"): Rule(needs(PROJECT_UPDATE), 204),
    (f"{R}/artifacts/{{reference}}/signature", "GET"): Rule(needs(PROJECT_READ)),
    # An artifact's config (its history) and referrers: whoever reads the artifact.
    (f"{R}/artifacts/{{reference}}/config", "GET"): Rule(needs(PROJECT_READ)),
    (f"{R}/artifacts/{{reference}}/referrers", "GET"): Rule(needs(PROJECT_READ)),
    # Scans: developers request one (it costs a job), whoever reads the artifact reads its report;
    # project admins set scan_on_push.
    (f"{R}/artifacts/{{reference}}/scan", "POST"): Rule(needs(PUSH), 202),
    (f"{R}/artifacts/{{reference}}/scan", "GET"): Rule(needs(PROJECT_READ)),
    # The layer browser reads layers' bytes: whoever may pull them over /v2 (docs/layer-files.md).
    (f"{R}/artifacts/{{reference}}/files", "GET"): Rule(needs(PULL)),
    (f"{R}/artifacts/{{reference}}/layers/{{layer}}/files", "GET"): Rule(needs(PULL)),
    (f"{R}/artifacts/{{reference}}/layers/{{layer}}/download", "GET"): Rule(needs(PULL)),
    (f"{R}/artifacts/{{reference}}/diff", "GET"): Rule(needs(PULL)),
    (f"{P}/scan-settings", "GET"): Rule(needs(PROJECT_READ)),
    (f"{P}/scan-settings", "PUT"): Rule(needs(PROJECT_UPDATE)),
    # Background jobs: system administrators only.
    # Registry endpoints (remote registries, their sealed credentials): system administrators only.
    ("/endpoints", "GET"): Rule(SYSTEM_ADMIN),
    ("/endpoints", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/endpoints/{name}", "GET"): Rule(SYSTEM_ADMIN),
    ("/endpoints/{name}", "PATCH"): Rule(SYSTEM_ADMIN),
    ("/endpoints/{name}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/endpoints/{name}/test", "POST"): Rule(SYSTEM_ADMIN),
    # External scanners (their sealed secrets) and the default scanner: system administrators only.
    ("/scanners", "GET"): Rule(SYSTEM_ADMIN),
    ("/scanners", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/scanners/default", "GET"): Rule(SYSTEM_ADMIN),
    ("/scanners/default", "PUT"): Rule(SYSTEM_ADMIN),
    ("/scanners/{name}", "GET"): Rule(SYSTEM_ADMIN),
    ("/scanners/{name}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/scanners/{name}/test", "POST"): Rule(SYSTEM_ADMIN),
    ("/jobs", "GET"): Rule(SYSTEM_ADMIN),
    # Replication (policies use endpoints, runs copy any project's images): system administrators only.
    ("/replication/policies", "GET"): Rule(SYSTEM_ADMIN),
    ("/replication/policies", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/replication/policies/{name}", "GET"): Rule(SYSTEM_ADMIN),
    ("/replication/policies/{name}", "PATCH"): Rule(SYSTEM_ADMIN),
    ("/replication/policies/{name}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/replication/policies/{name}/run", "POST"): Rule(SYSTEM_ADMIN, 202),
    ("/replication/runs", "GET"): Rule(SYSTEM_ADMIN),
    ("/replication/runs/{run_id}", "GET"): Rule(SYSTEM_ADMIN),
    ("/replication/runs/{run_id}/cancel", "POST"): Rule(SYSTEM_ADMIN, 202),
    ("/notifications", "GET"): Rule(SYSTEM_ADMIN),
    ("/notifications/{name}/deliveries", "GET"): Rule(SYSTEM_ADMIN),
    ("/jobs", "POST"): Rule(SYSTEM_ADMIN, 201),
    ("/jobs/kinds", "GET"): Rule(SYSTEM_ADMIN),
    ("/vulndb", "GET"): Rule(SYSTEM_ADMIN),
    ("/vulndb/allowlist", "GET"): Rule(SYSTEM_ADMIN),
    ("/vulndb/allowlist/{vuln_id}", "PUT"): Rule(SYSTEM_ADMIN),
    ("/vulndb/allowlist/{vuln_id}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/sigstore/trust-roots", "GET"): Rule(SYSTEM_ADMIN),
    ("/sigstore/trust-roots/{root_name}", "PUT"): Rule(SYSTEM_ADMIN),
    ("/sigstore/trust-roots/{root_name}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/jobs/schedules", "GET"): Rule(SYSTEM_ADMIN),
    ("/jobs/schedules/{kind}", "GET"): Rule(SYSTEM_ADMIN),
    ("/jobs/schedules/{kind}", "PUT"): Rule(SYSTEM_ADMIN),
    ("/jobs/schedules/{kind}", "DELETE"): Rule(SYSTEM_ADMIN, 204),
    ("/jobs/{job_id}", "GET"): Rule(SYSTEM_ADMIN),
    ("/jobs/{job_id}/cancel", "POST"): Rule(SYSTEM_ADMIN),
    ("/jobs/{job_id}/retry", "POST"): Rule(SYSTEM_ADMIN, 201),
}
# Endpoints whose answer depends on a query parameter: each variant is a case of its own.
API_VARIANTS: dict[tuple[str, str], dict[str, Rule]] = {
    ("/audit", "GET"): {"project": Rule(needs(LOG_READ))},  # ?project=: that project's events
}


# --- the world -----------------------------------------------------------------------------------
@dataclass
class World:
    admin: Admin
    oci: OCIClient  # the admin's /v2 client
    caller: Caller
    actors: list[Actor]
    unique: Counter
    image: dict[str, tuple[bytes, str, str]]  # project -> (manifest body, its digest, config digest)
    developer_member: dict[str, int]  # project -> the developer's member id
    robot_permissions: dict[str, dict[str, list[str]]]  # system robot (short) -> project -> actions
    victim_token: tuple[int, str] = (0, "")
    else_member: int = 0  # a member id in the other project
    uploads: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # project -> a session
    # Things made for a case that a refused call left as they were made (kept_if_untouched).
    spare_users: list[str] = field(default_factory=list)
    spare_clones: dict[str, list[str]] = field(default_factory=lambda: {PRIV: [], PUB: []})

    def repo(self, project: str) -> str:
        return f"{project}/app"

    def v2_status(self, method: str, path: str) -> int:
        return self.admin.status(method, path, headers={"Accept": OCI_MANIFEST})

    def new_upload(self, project: str, actor: Actor | None = None) -> tuple[str, dict[str, str]]:
        """A new session, the admin's or (with Basic credentials) the actor's."""
        if actor is None:
            answer = self.oci.start_upload(self.repo(project))
        else:
            start = Call("POST", f"/v2/{self.repo(project)}/blobs/uploads/", headers={"Content-Length": "0"})
            answer = self.caller.v2_basic(actor, start)
        assert answer.status_code == 202, describe(answer)
        location = urlsplit(answer.headers["Location"])
        return location.path.rsplit("/", 1)[1], dict(parse_qsl(location.query))

    def new_manifest(self, project: str) -> str:
        """A manifest of its own in the project's repository; its digest."""
        _, _, config = self.image[project]
        layer = self.unique("layer ").encode()
        self.oci.push_blob(self.repo(project), layer)
        body = image_manifest(
            {"mediaType": OCI_CONFIG, "digest": config, "size": len(CONFIG)}, [descriptor(OCI_LAYER, layer)]
        )
        answer = self.oci.put_manifest(self.repo(project), digest_of(body), body, OCI_MANIFEST)
        assert answer.status_code == 201, describe(answer)
        return digest_of(body)

    def new_user(self) -> str:
        name = self.unique("mx-user")
        self.admin.api("POST", "/users", json={"username": name, "password": PASSWORD})
        return name

    def new_robot(self, project: str | None) -> tuple[str, str, str]:
        """(path to it, full name, secret) of a new system or project robot."""
        name = self.unique("made")
        if project is None:
            body: dict[str, Any] = {"name": name, "permissions": [{"project": ELSE, "actions": [PULL]}]}
            made = self.admin.api("POST", "/robots", json=body)
            return f"/robots/{name}", made["name"], made["secret"]
        made = self.admin.api("POST", f"/projects/{project}/robots", json={"name": name, "actions": [PULL]})
        return f"/projects/{project}/robots/{name}", made["name"], made["secret"]

    def add_joiner(self, project: str) -> int:
        body = {"user": JOINER, "role": "guest"}
        return int(self.admin.api("POST", f"/projects/{project}/members", json=body)["id"])

    def drop_joiner(self, project: str) -> None:
        for member in self.admin.api("GET", f"/projects/{project}/members", params={"q": JOINER}):
            self.admin.api("DELETE", f"/projects/{project}/members/{member['id']}")

    def set_robot_permissions(self) -> None:
        for robot, grants in self.robot_permissions.items():
            body = [{"project": project, "actions": actions} for project, actions in grants.items()]
            self.admin.api("PATCH", f"/robots/{robot}", json={"permissions": body})

    def clone_project(self, project: str) -> str:
        """A new project with the same visibility, members and robot permissions as `project`."""
        name = self.unique(f"{project}-c")
        self.admin.api("POST", "/projects", json={"name": name, "public": PUBLIC[project]})
        for actor in self.actors:
            if actor.role:
                body = {"user": actor.username, "role": actor.role}
                self.admin.api("POST", f"/projects/{name}/members", json=body)
        for grants in self.robot_permissions.values():
            if project in grants:
                grants[name] = grants[project]
        self.set_robot_permissions()
        PUBLIC[name] = PUBLIC[project]
        return name

    def drop_clone(self, name: str) -> None:
        self.admin.api("DELETE", f"/projects/{name}", expect=(204, 404))
        for grants in self.robot_permissions.values():
            grants.pop(name, None)


CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
JOINER, VICTIM = "mx-joiner", "mx-victim"
ROLES = ("limited_guest", "guest", "developer", "maintainer", "project_admin")
# The PostgreSQL pass (tests/conftest.py) asks each route as these: no credentials, a member through a
# personal token, a member's session, the system administrator, a robot's permissions and a disabled
# user's session are each a different query there, and between them each route is asked for both its
# answers, where it has both. The other actors differ from one of these only in what the role table
# (Python, not SQL) or the account's state read by the same query gives, which the SQLite pass checks
# for every actor.
POSTGRESQL_ACTORS = frozenset(
    {"anonymous", "developer", "project_admin", "system_admin", "robot_pull", "disabled_user"}
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = {
        "auth": {"enabled": True, "login_limit": {"max_failures": 1_000_000}},
        # The retention and replication recipes wait for their job to start: claimed within 0.2 s.
        "jobs": {"run_in_serve": True, "poll_interval": "200ms"},
        # Registry endpoints on loopback: the health check's connection is refused at once (port 9).
        "upstream": {"allowed_networks": ["127.0.0.0/8"]},
        # An endpoint for the delivery log's routes; it never resolves, and backs off for an hour.
        "notifications": {
            "endpoints": [
                {"name": "mx-hook", "url": "https://hook.invalid/", "threshold": 1, "backoff": "1h"}
            ]
        },
    }
    # The refused credentials (disabled user, expired robot) would otherwise lock out 127.0.0.1.
    server = start_server(
        tmp_path_factory.mktemp("authz"), config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    admin = Admin(server.url, ADMIN_PASSWORD, tuple(f"{p}/app" for p in (PRIV, PUB, ELSE)))
    http = httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT)
    try:
        yield build_world(admin, http)
    finally:
        http.close()
        admin.close()
        server.stop()


def build_world(admin: Admin, http: httpx.Client) -> World:
    challenge = http.get("/v2/")
    assert challenge.status_code == 401, describe(challenge)
    service = challenge.headers["www-authenticate"].split('service="', 1)[1].split('"', 1)[0]
    for project in (PRIV, PUB, ELSE):
        admin.api("POST", "/projects", json={"name": project, "public": PUBLIC[project]})
    everything = [PULL, PUSH, DELETE]
    robot_permissions = {
        "mx-all": {PRIV: everything, PUB: everything},
        "mx-pull": {PRIV: [PULL], PUB: [PULL]},
        "mx-other": {ELSE: everything},
    }
    # First: the rest of the set-up (seconds) runs while its 3 s go by, not a sleep at the end. Counted
    # from here, not from the start: the set-up above takes seconds on a loaded machine.
    expires = datetime.now(UTC) + timedelta(seconds=3)
    grants = [{"project": p, "actions": a} for p, a in robot_permissions["mx-all"].items()]
    expiring = {"name": "mx-expired", "permissions": grants, "expires_at": expires.isoformat()}
    secrets = {"mx-expired": admin.api("POST", "/robots", json=expiring)["secret"]}
    users = {role: f"mx-{role.replace('_', '-')}" for role in ROLES}
    # Keyed as the actors are: the sessions opened below are looked up by actor key.
    extra = {"system_admin": "mx-sysadmin", "outsider": "mx-outsider", "disabled_user": "mx-disabled"}
    for name in [*users.values(), *extra.values(), JOINER, VICTIM]:
        is_admin = name == extra["system_admin"]
        admin.api("POST", "/users", json={"username": name, "password": PASSWORD, "admin": is_admin})
    for project in (PRIV, PUB):
        for role, name in [*users.items(), ("project_admin", extra["disabled_user"])]:
            admin.api("POST", f"/projects/{project}/members", json={"user": name, "role": role})
        admin.api("POST", f"/projects/{project}/robots", json={"name": "reader", "actions": [PULL]})
    for short, granted in robot_permissions.items():
        made = {"name": short, "permissions": [{"project": p, "actions": a} for p, a in granted.items()]}
        secrets[short] = admin.api("POST", "/robots", json=made)["secret"]

    oci = OCIClient(admin.registry)
    image = {}
    for project in (PRIV, PUB, ELSE):
        repo = f"{project}/app"
        config = oci.push_blob(repo, CONFIG)
        layer = layer_tar(project)  # a real layer: the layer browser reads it
        oci.push_blob(repo, layer)
        body = image_manifest(descriptor(OCI_CONFIG, CONFIG), [descriptor(OCI_LAYER, layer)])
        oci.push_manifest(repo, "v1", body, OCI_MANIFEST)
        image[project] = (body, digest_of(body), config)

    caller = Caller(http, service)
    for key, name in [*users.items(), *extra.items()]:
        if key != "developer":  # the developer uses a personal access token instead
            caller.sessions[key] = login(http, name, PASSWORD)
    admin.api("PATCH", f"/users/{extra['disabled_user']}", json={"disabled": True})  # its session stays
    pat = http.post("/api/v1/me/tokens", json={"name": "matrix"}, auth=(users["developer"], PASSWORD))
    victim = http.post("/api/v1/me/tokens", json={"name": "victim"}, auth=(VICTIM, PASSWORD))
    assert pat.status_code == victim.status_code == 201, describe(victim)

    def user(key: str, name: str, **kwargs: Any) -> Actor:
        return Actor(key, "user", name, PASSWORD, PASSWORD, **kwargs)

    def robot(key: str, short: str, **kwargs: Any) -> Actor:
        return Actor(key, "robot", f"robot${short}", secrets[short], **kwargs)

    actors = [
        Actor("anonymous", "anonymous"),
        *(user(role, name, role=role) for role, name in users.items()),
        user("system_admin", extra["system_admin"], admin=True, elsewhere=frozenset({ELSE})),
        user("outsider", extra["outsider"]),
        robot("robot_all", "mx-all", robot_actions=frozenset(everything)),  # has the permission
        robot("robot_pull", "mx-pull", robot_actions=frozenset({PULL})),  # pulls, nothing more
        robot("robot_other", "mx-other", elsewhere=frozenset({ELSE})),  # its rights are elsewhere
        robot("robot_expired", "mx-expired", usable=False, robot_actions=frozenset(everything)),
        user("disabled_user", extra["disabled_user"], usable=False, role="project_admin"),
    ]
    secret = pat.json()["secret"]
    actors = [
        dataclasses.replace(a, secret=secret, personal_token=True) if a.key == "developer" else a
        for a in actors
        if os.environ.get("DOCKYARD_TEST_DB") != "postgresql" or a.key in POSTGRESQL_ACTORS
    ]
    world = World(admin, oci, caller, actors, Counter(), image, {}, robot_permissions)
    world.victim_token = (victim.json()["id"], victim.json()["secret"])
    for project in (PRIV, PUB):
        members = admin.api("GET", f"/projects/{project}/members", params={"q": users["developer"]})
        world.developer_member[project] = members[0]["id"]
        world.uploads[project] = world.new_upload(project)
    admin.api("POST", f"/projects/{ELSE}/robots", json={"name": "reader", "actions": [PULL]})
    world.else_member = world.add_joiner(ELSE)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 0.5))  # let mx-expired expire
    return world


# --- how to call each endpoint ---------------------------------------------------------------------
Recipe = Callable[[World, Actor, str | None, Endpoint], Call]
OCTETS = {"Content-Type": "application/octet-stream"}


def v2_call(w: World, project: str | None, ep: Endpoint, **values: str) -> dict[str, Any]:
    """The method, path and scope's repository of a /v2 call in `project`'s repository."""
    if project is None:
        return {"method": ep.method, "path": fill(ep.path)}
    repo = w.repo(project)
    return {"method": ep.method, "path": fill(ep.path, name=repo, **values), "repository": repo}


def plain(**values: str) -> Recipe:
    def recipe(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
        if ep.path.startswith("/v2"):
            return Call(**v2_call(w, project, ep, **values), headers={"Accept": OCI_MANIFEST})
        names = {"project": project} if project and "project" in ep.params else {}
        if project and ep.path.startswith("/repositories/"):
            names["name"] = w.repo(project)
        return Call(ep.method, api(fill(ep.path, **{**names, **values})))

    return recipe


def v2_blob(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    return Call(**v2_call(w, project, ep, digest=w.image[project][2]))


def v2_referrers(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    return Call(**v2_call(w, project, ep, digest=w.image[project][1]))


def v2_monolithic_upload(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    data = w.unique("monolithic ").encode()
    blob = f"/v2/{w.repo(project)}/blobs/{digest_of(data)}"
    return Call(
        **v2_call(w, project, ep), params={"digest": digest_of(data)}, content=data, headers=OCTETS,
        observe=lambda: w.v2_status("HEAD", blob),
    )


def v2_upload(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A session belongs to whoever started it: an actor who may push works on one it started; for any
    other the call aims at the admin's (status on a shared one, the changing methods each on a session of
    their own), which the refusal must leave as it was."""
    assert project is not None
    if {PULL, PUSH} <= actor.permissions(PUBLIC[project]):
        upload, params = w.new_upload(project, actor)
    else:
        upload, params = w.uploads[project] if ep.method == "GET" else w.new_upload(project)
    call = Call(**v2_call(w, project, ep, upload_id=upload), params=dict(params))
    status_url = httpx.URL(call.path, params=params)

    def upload_state() -> tuple[int, str | None]:
        answer = w.admin.registry.get(status_url)
        return answer.status_code, answer.headers.get("range")

    call.observe = upload_state
    if ep.method == "PATCH":
        call.content, call.headers = b"a chunk", OCTETS
    elif ep.method == "PUT":
        data = w.unique("finished ").encode()
        call.content, call.headers = data, OCTETS
        call.params["digest"] = digest_of(data)
    return call


def v2_delete_blob(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    digest = w.oci.push_blob(w.repo(project), w.unique("doomed blob ").encode())
    call = Call(**v2_call(w, project, ep, digest=digest))
    call.observe = lambda: w.v2_status("HEAD", call.path)
    return call


def v2_put_manifest(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    call = Call(**v2_call(w, project, ep, reference=w.unique("t")))
    call.content, call.headers = w.image[project][0], {"Content-Type": OCI_MANIFEST}
    call.observe = lambda: w.v2_status("HEAD", call.path)
    return call


def v2_delete_manifest(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    call = Call(**v2_call(w, project, ep, reference=w.new_manifest(project)))
    call.observe = lambda: w.v2_status("HEAD", call.path)
    return call


def v2_catalog(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    def check(answer: httpx.Response) -> list[str]:
        return compare_listing("catalog", actor, {r.split("/")[0] for r in answer.json()["repositories"]})

    return Call(ep.method, ep.path, params={"n": "1000"}, check=check)


V2_RECIPES: dict[tuple[str, str], Recipe] = {
    ("/v2/", "GET"): plain(),
    ("/v2/", "HEAD"): plain(),
    ("/v2/_catalog", "GET"): v2_catalog,
    (f"{V2}/blobs/uploads/", "POST"): v2_monolithic_upload,
    **{(f"{V2}/blobs/uploads/{{upload_id}}", m): v2_upload for m in ("GET", "PATCH", "PUT", "DELETE")},
    (f"{V2}/blobs/{{digest}}", "GET"): v2_blob,
    (f"{V2}/blobs/{{digest}}", "HEAD"): v2_blob,
    (f"{V2}/blobs/{{digest}}", "DELETE"): v2_delete_blob,
    (f"{V2}/manifests/{{reference}}", "GET"): plain(reference="v1"),
    (f"{V2}/manifests/{{reference}}", "HEAD"): plain(reference="v1"),
    (f"{V2}/manifests/{{reference}}", "PUT"): v2_put_manifest,
    (f"{V2}/manifests/{{reference}}", "DELETE"): v2_delete_manifest,
    (f"{V2}/tags/list", "GET"): plain(),
    (f"{V2}/referrers/{{digest}}", "GET"): v2_referrers,
}


# --- listings show only what the caller may read ---------------------------------------------------
def compare_listing(label: str, actor: Actor, seen: set[str]) -> list[str]:
    expected = {p for p in (PRIV, PUB) if PROJECT_READ in actor.permissions(PUBLIC[p])}
    if actor.usable:
        expected |= actor.elsewhere
    seen &= {PRIV, PUB, ELSE}
    return [] if seen == expected else [f"{label} lists projects {sorted(seen)}, expected {sorted(expected)}"]


def api(path: str) -> str:
    return "/api/v1" + path


def listing(field_name: str, params: dict[str, str]) -> Recipe:
    """A filtered list: the projects behind its items must be exactly those the actor may read."""

    def recipe(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
        def check(answer: httpx.Response) -> list[str]:
            body = answer.json()
            if field_name == "search":
                names = {p["name"] for p in body["projects"]}
                return compare_listing("search (projects)", actor, names) + compare_listing(
                    "search (repositories)", actor, {r["project"] for r in body["repositories"]}
                )
            return compare_listing(ep.path, actor, {item[field_name] for item in body})

        return Call(ep.method, api(ep.path), params=dict(params), check=check)

    return recipe


# --- /api/v1 recipes -------------------------------------------------------------------------------
def gone_or_there(w: World, path: str) -> Callable[[], int]:
    return lambda: w.admin.status("GET", path)


def login_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    secret = actor.password or actor.secret or "wrong-password-1"
    body = {"username": actor.username or "mx-nobody", "password": secret}
    return Call(ep.method, api(ep.path), json=body)


def oidc_authorize(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    return Call(ep.method, api(ep.path), json={"next": "/ui/projects"})


def oidc_callback(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    return Call(ep.method, api(ep.path), json={"code": "mx-code", "state": "mx-state", "binding": "mx"})


def create_user(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    name = w.unique("mx-new")
    path = f"/users/{name}"
    return Call(
        ep.method, api(ep.path), json={"username": name, "password": PASSWORD},
        observe=gone_or_there(w, path), cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
    )


def group_state(w: World, group_id: int) -> Any:
    """The group's members as the admin sees them; None once it is gone."""
    path = f"/groups/{group_id}"
    return w.admin.api("GET", path)["members"] if w.admin.status("GET", path) == 200 else None


def create_group(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    name = w.unique("mx-group")

    def made() -> list[int]:
        return [g["id"] for g in w.admin.api("GET", "/groups", params={"q": name})]

    def cleanup() -> None:
        for group_id in made():
            w.admin.api("DELETE", f"/groups/{group_id}", expect=(204, 404))

    return Call(ep.method, api(ep.path), json={"name": name}, observe=made, cleanup=cleanup)


def group_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A local group the admin makes first (with the victim in it, for a removal); deleted after."""
    group_id = w.admin.api("POST", "/groups", json={"name": w.unique("mx-group")})["id"]
    values = {"group_id": str(group_id)}
    if "username" in ep.params:
        values["username"] = VICTIM
        if ep.method == "DELETE":
            w.admin.api("PUT", f"/groups/{group_id}/members/{VICTIM}")
    return Call(
        ep.method, api(fill(ep.path, **values)), observe=lambda: group_state(w, group_id),
        cleanup=lambda: w.admin.api("DELETE", f"/groups/{group_id}", expect=(204, 404)) and None,
    )


UNREACHABLE = "http://127.0.0.1:9"  # loopback is allowed on the matrix server; nothing listens there


def new_endpoint(w: World) -> str:
    name = w.unique("mx-endpoint")
    w.admin.api("POST", "/endpoints", json={"name": name, "url": UNREACHABLE})
    return name


def create_endpoint(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    name = w.unique("mx-endpoint")
    path = f"/endpoints/{name}"
    credentials = {"kind": "basic", "username": "u", "secret": "s"}
    body = {"name": name, "url": UNREACHABLE, "credentials": credentials}
    return Call(
        ep.method, api(ep.path), json=body,
        observe=gone_or_there(w, path), cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
    )


def endpoint_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """An endpoint of the call's own: read, changed, removed or checked."""
    name = new_endpoint(w)
    path = f"/endpoints/{name}"
    call = Call(ep.method, api(fill(ep.path, name=name)))
    call.cleanup = lambda: w.admin.api("DELETE", path, expect=(204, 404))
    if ep.method == "PATCH":
        call.json = {"url": "http://127.0.0.2:9"}
        call.observe = lambda: w.admin.api("GET", path)["url"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, path)
    return call


def new_replication_policy(w: World, direction: str = "push") -> str:
    """A policy of an endpoint of its own; a push policy selects nothing (its runs succeed at once), a
    pull policy's runs fail on the unreachable endpoint (and wait for their retry)."""
    name = w.unique("mx-replication")
    body = {"name": name, "direction": direction, "endpoint": new_endpoint(w), "repositories": "mx-none/**"}
    w.admin.api("POST", "/replication/policies", json=body)
    return name


def create_replication_policy(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    name = w.unique("mx-replication")
    path = f"/replication/policies/{name}"
    body = {"name": name, "direction": "push", "endpoint": new_endpoint(w)}
    return Call(
        ep.method, api(ep.path), json=body,
        observe=gone_or_there(w, path), cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
    )


def newest_replicate_job(w: World) -> int:
    jobs = w.admin.api("GET", "/jobs", params={"kind": "replicate", "page_size": "1"})
    return jobs[0]["id"] if jobs else 0


def replication_policy_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A policy of the call's own: read, changed, removed or run."""
    name = new_replication_policy(w)
    path = f"/replication/policies/{name}"
    call = Call(ep.method, api(fill(ep.path, name=name)))
    call.cleanup = lambda: w.admin.api("DELETE", path, expect=(204, 404)) and None
    if ep.method == "PATCH":
        call.json = {"tags": "v*"}
        call.observe = lambda: w.admin.api("GET", path)["tags"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, path)
    elif ep.path.endswith("/run"):
        call.observe = lambda: newest_replicate_job(w)
    return call


def replication_run_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A run of a policy of the call's own: read, or cancelled (a pull from the unreachable endpoint,
    failed and waiting for its retry: its job has not finished)."""
    name = new_replication_policy(w, "pull" if ep.path.endswith("/cancel") else "push")
    job_id = w.admin.api("POST", f"/replication/policies/{name}/run", expect=(202,))["job_id"]
    deadline = time.monotonic() + 60
    while not (runs := w.admin.api("GET", "/replication/runs", params={"job_id": str(job_id)})):
        assert time.monotonic() < deadline, f"replication job {job_id} did not start"
        time.sleep(0.05)  # the worker polls every 0.2 s (the world's jobs.poll_interval)
    call = Call(ep.method, api(fill(ep.path, run_id=str(runs[0]["id"]))))
    call.cleanup = lambda: w.admin.status("POST", f"/jobs/{job_id}/cancel") and None
    if ep.path.endswith("/cancel"):
        call.observe = lambda: cancelled(w, job_id)
    return call


def new_scanner(w: World) -> str:
    name = w.unique("mx-scanner")
    w.admin.api("POST", "/scanners", json={"name": name, "url": UNREACHABLE})
    return name


def create_scanner(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    name = w.unique("mx-scanner")
    path = f"/scanners/{name}"
    body = {"name": name, "url": UNREACHABLE, "auth": "token", "secret": "s"}
    return Call(
        ep.method, api(ep.path), json=body,
        observe=gone_or_there(w, path), cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
    )


def scanner_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A scanner of the call's own: read, removed, checked, or made the default."""
    name = new_scanner(w)
    path = f"/scanners/{name}"

    def cleanup() -> None:
        w.admin.api("PUT", "/scanners/default", json={"scanner": "built-in"})
        w.admin.api("DELETE", path, expect=(204, 404))

    target = fill(ep.path, name=name) if "{name}" in ep.path else fill(ep.path)
    call = Call(ep.method, api(target), cleanup=cleanup)
    if ep.path == "/scanners/default" and ep.method == "PUT":
        call.json = {"scanner": name}
        call.observe = lambda: w.admin.api("GET", "/scanners/default")["scanner"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, path)
    return call


def kept_if_untouched(
    look: Callable[[], Any], keep: Callable[[], None], drop: Callable[[], None]
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """A case's observe and cleanup for a thing made for it: run_case looks before and after the call
    when it must be refused. A thing a refused call left as it was is kept for the next case (as good
    as new: making one costs a password hash, a project's members...); any other is dropped."""
    seen: list[Any] = []

    def observe() -> Any:
        seen.append(look())
        return seen[-1]

    def cleanup() -> None:
        keep() if len(seen) == 2 and seen[0] == seen[1] else drop()

    return observe, cleanup


def change_user(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A user of the call's own, as new: made for it, or one a refused call left as it was (a new
    user costs a password hash, and its creation and deletion each make every remembered login be
    checked again)."""
    name = w.spare_users.pop() if w.spare_users else w.new_user()
    path = fill(ep.path, username=name)
    call = Call(ep.method, api(path))
    if ep.method == "PATCH":
        call.json = {"display_name": "changed by the matrix"}
        look = lambda: w.admin.api("GET", path)["display_name"]  # noqa: E731
    elif ep.method == "PUT":  # the password: the old one must still work after a refusal
        call.json = {"password": "another-password-2"}
        look = lambda: w.caller.http.get(api("/me"), auth=(name, PASSWORD)).status_code  # noqa: E731
    else:
        look = gone_or_there(w, f"/users/{name}")
    call.observe, call.cleanup = kept_if_untouched(
        look,
        keep=lambda: w.spare_users.append(name),
        drop=lambda: w.admin.api("DELETE", f"/users/{name}", expect=(204, 404)) and None,
    )
    return call


def my_password(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    same = actor.password or "not-a-password-1"  # unchanged, so the actor can still log in after
    return Call(ep.method, api(ep.path), json={"current_password": same, "new_password": same})


def logout_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """Logging out ends the session it is sent with: the actor logs out a session opened for this call
    (a disabled one, which cannot open one, sends none), and its own goes on serving its other calls."""
    call = Call(ep.method, api(ep.path))
    own = w.caller.sessions.pop(actor.key, None)
    if own is None:
        return call
    if actor.usable and actor.username and actor.password:
        w.caller.sessions[actor.key] = login(w.caller.http, actor.username, actor.password)
    call.cleanup = lambda: w.caller.sessions.__setitem__(actor.key, own)
    return call


def create_my_token(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    return Call(ep.method, api(ep.path), json={"name": w.unique("token")})


def revoke_my_token(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A user revokes a token of their own; anyone else aims at the victim's token, which must survive."""
    if actor.kind == "user" and actor.usable:
        assert actor.username and actor.password  # tokens are made with the password
        w.caller.http.cookies.clear()
        made = w.caller.http.post(
            api("/me/tokens"), json={"name": w.unique("own")}, auth=(actor.username, actor.password)
        )
        assert made.status_code == 201, describe(made)
        return Call(ep.method, api(fill(ep.path, token_id=str(made.json()["id"]))))
    token_id, secret = w.victim_token
    call = Call(ep.method, api(fill(ep.path, token_id=str(token_id))))
    call.observe = lambda: w.caller.http.get(api("/me"), auth=(VICTIM, secret)).status_code
    return call


def create_project(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    name = w.unique("mxmade")
    path = f"/projects/{name}"
    return Call(
        ep.method, api(ep.path), json={"name": name}, observe=gone_or_there(w, path),
        cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
    )


def update_project(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    path = f"/projects/{project}"
    return Call(
        ep.method, api(path), json={"public": not PUBLIC[project]},
        observe=lambda: w.admin.api("GET", path)["public"],
        cleanup=lambda: w.admin.api("PATCH", path, json={"public": PUBLIC[project]}),
    )


def delete_project(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    spare = w.spare_clones[project]
    clone = spare.pop() if spare else w.clone_project(project)
    path = f"/projects/{clone}"
    observe, cleanup = kept_if_untouched(
        gone_or_there(w, path), keep=lambda: spare.append(clone), drop=lambda: w.drop_clone(clone)
    )
    return Call(ep.method, api(path), observe=observe, cleanup=cleanup)


def member(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    if ep.method == "GET":
        member_id = str(w.developer_member[project])
        return Call(ep.method, api(fill(ep.path, project=project, member_id=member_id)))
    listed = f"/projects/{project}/members"
    joined = lambda: [m["role"] for m in w.admin.api("GET", listed, params={"q": JOINER})]  # noqa: E731
    call = Call(ep.method, api(listed), observe=joined, cleanup=lambda: w.drop_joiner(project))
    if ep.method == "POST":
        call.json = {"user": JOINER, "role": "guest"}
    else:
        call.path = api(fill(ep.path, project=project, member_id=str(w.add_joiner(project))))
        call.json = {"role": "developer"} if ep.method == "PATCH" else None
    return call


def robot(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """Create, change, refresh or delete a system robot (project None) or a project robot."""
    collection = f"/projects/{project}/robots" if project else "/robots"
    if ep.method == "POST" and not ep.path.endswith("/secret"):
        name = w.unique("made")
        body: dict[str, Any] = {"name": name, "actions": [PULL]} if project else {
            "name": name, "permissions": [{"project": ELSE, "actions": [PULL]}]
        }
        path = f"{collection}/{name}"
        return Call(
            ep.method, api(collection), json=body, observe=gone_or_there(w, path),
            cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
        )
    path, full, secret = w.new_robot(project)
    call = Call(ep.method, api(path), cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)))
    if ep.method == "PATCH":
        call.json = {"description": "changed by the matrix"}
        call.observe = lambda: w.admin.api("GET", path)["description"]
    elif ep.path.endswith("/secret"):  # the old secret must still work after a refusal
        call.path = api(f"{path}/secret")
        call.observe = lambda: w.caller.http.get(api("/me"), auth=(full, secret)).status_code
    else:
        call.observe = gone_or_there(w, path)
    return call


def delete_artifact(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    digest = w.new_manifest(project)
    manifest = f"/v2/{w.repo(project)}/manifests/{digest}"
    path = api(fill(ep.path, name=w.repo(project), reference=digest))
    return Call(ep.method, path, observe=lambda: w.v2_status("HEAD", manifest))


def delete_tag(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    tag = w.unique("doomed")
    w.oci.push_manifest(w.repo(project), tag, w.image[project][0], OCI_MANIFEST)
    manifest = f"/v2/{w.repo(project)}/manifests/{tag}"
    path = api(fill(ep.path, name=w.repo(project), tag=tag))
    return Call(ep.method, path, observe=lambda: w.v2_status("HEAD", manifest))


def set_tag(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A new tag on the project's image: a refused request leaves it missing."""
    assert project is not None
    tag = w.unique("added")
    manifest = f"/v2/{w.repo(project)}/manifests/{tag}"
    call = Call(ep.method, api(fill(ep.path, name=w.repo(project), tag=tag)))
    call.json = {"digest": w.image[project][1]}
    call.observe = lambda: w.v2_status("HEAD", manifest)
    return call


def signing_keys(w: World) -> dict[str, str]:
    return {key["kid"]: key["status"] for key in w.admin.api("GET", "/system/signing-keys")}


def rotate_signing_key(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    return Call(ep.method, api(ep.path), observe=lambda: sorted(signing_keys(w)))


def retire_signing_key(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    # Two rotations: the first new key signs nothing before the second replaces it, so retiring it
    # revokes no token the matrix holds.
    spare = w.admin.api("POST", "/system/signing-keys/rotate")["kid"]
    w.admin.api("POST", "/system/signing-keys/rotate")
    return Call(ep.method, api(fill(ep.path, kid=spare)), observe=lambda: signing_keys(w)[spare])


def audit(variant: str) -> Recipe:
    def recipe(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
        return Call(ep.method, api(ep.path), params={"project": project} if variant and project else {})

    return recipe


RETAIN_ALL = {"rules": [{"action": "always"}]}  # a policy that deletes nothing, whoever runs it
RETENTION_RUNS: dict[str, int] = {}  # project -> a finished run's id


def retention(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """The project's retention policy (set by the admin first): read, replaced or removed."""
    assert project is not None
    path = f"/projects/{project}/retention"
    w.admin.api("PUT", path, json=RETAIN_ALL)
    call = Call(ep.method, api(fill(ep.path, project=project)))
    if ep.method == "PUT":
        call.json = {"rules": [{"action": "latestPushedK", "count": 5}]}
        call.observe = lambda: w.admin.api("GET", path)["rules"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, path)
    elif ep.method == "POST":
        call.json = {"dry_run": True}
    return call


def allowlist_entry(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A vulnerability allowlist entry (made by the admin first): replaced or removed."""
    base = f"/projects/{project}/vulndb/allowlist" if project else "/vulndb/allowlist"
    w.admin.api("PUT", f"{base}/CVE-2099-0001", json={"reason": "matrix"})
    names = {"project": project} if project else {}
    call = Call(ep.method, api(fill(ep.path, vuln_id="CVE-2099-0001", **names)))
    if ep.method == "PUT":
        call.json = {"reason": "changed", "expires_at": "2999-01-01T00:00:00Z"}
    call.observe = lambda: w.admin.api("GET", base)
    return call


def layer_tar(project: str) -> bytes:
    """A layer of one file, `etc/project`, naming the project (so each project's layer differs)."""
    return layer([file("etc/project", project.encode())])


def layer_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A layer of the project's `v1` (its files, one file) or its diff with itself."""
    assert project is not None
    layer_digest = json.loads(w.image[project][0])["layers"][0]["digest"]
    names = {"name": w.repo(project), "reference": "v1"}
    if "{layer}" in ep.path:
        names["layer"] = layer_digest
    call = Call(ep.method, api(fill(ep.path, **names)))
    if ep.path.endswith("/download"):
        call.params = {"path": "/etc/project"}
    elif ep.path.endswith("/diff"):
        call.params = {"to": "v1", "packages": "false"}
    return call


def scan_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """An artifact's scan: requested, or its report read (of a scan the admin requested first)."""
    assert project is not None
    path = f"/repositories/{w.repo(project)}/artifacts/v1/scan"
    call = Call(ep.method, api(path))
    if ep.method == "POST":
        # The newest scan job: a refused request queues none. (Not the report's job_id: an earlier
        # case's job starting meanwhile moves it.)
        call.observe = lambda: [job["id"] for job in w.admin.api("GET", "/jobs", params={"kind": "scan"})[:1]]
    else:
        w.admin.api("POST", path, expect=(202,))
    return call


def scan_settings(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """The project's scan settings (scan_on_push off, set by the admin first): read or switched on."""
    assert project is not None
    path = f"/projects/{project}/scan-settings"
    w.admin.api("PUT", path, json={"scan_on_push": False})
    call = Call(ep.method, api(path))
    if ep.method == "PUT":
        call.json = {"scan_on_push": True}
        call.observe = lambda: w.admin.api("GET", path)["scan_on_push"]
        call.cleanup = lambda: w.admin.api("PUT", path, json={"scan_on_push": False}) and None
    return call


def retention_report(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A run's report: one dry run per project, run by the server's job worker."""
    assert project is not None
    path = f"/projects/{project}/retention"
    if project not in RETENTION_RUNS:
        w.admin.api("PUT", path, json=RETAIN_ALL)
        job_id = w.admin.api("POST", f"{path}/run", expect=(202,), json={"dry_run": True})["job_id"]
        deadline = time.monotonic() + 60
        while not (runs := [r for r in w.admin.api("GET", f"{path}/runs") if r["job_id"] == job_id]):
            assert time.monotonic() < deadline, f"retention job {job_id} did not start"
            time.sleep(0.2)
        RETENTION_RUNS[project] = runs[0]["id"]
    return Call(ep.method, api(fill(ep.path, project=project, run_id=str(RETENTION_RUNS[project]))))


def quota(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    assert project is not None
    path = f"/projects/{project}/quota"
    call = Call(ep.method, api(fill(ep.path, project=project)))
    if ep.method == "PUT":
        w.admin.api("PUT", path, json={"limit_bytes": None, "warn_percent": 80})
        call.json = {"limit_bytes": 1 << 40, "warn_percent": 90}
        call.observe = lambda: w.admin.api("GET", path)["limit_bytes"]
        call.cleanup = lambda: w.admin.api("PUT", path, json={"limit_bytes": None, "warn_percent": 80})
    return call


def drop_rules(w: World, rules: str) -> None:
    for rule in w.admin.api("GET", rules):
        w.admin.api("DELETE", f"{rules}/{rule['id']}")


def immutable_rule(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A rule the admin adds first (on tags no test pushes), read, changed or removed by the actor."""
    assert project is not None
    rules = f"/projects/{project}/immutable-rules"
    body = {"repository_pattern": "mx-never/**", "tag_pattern": "frozen-*"}
    rule_id = str(w.admin.api("POST", rules, json=body)["id"])
    values = {"rule_id": rule_id} if "{rule_id}" in ep.path else {}
    call = Call(ep.method, api(fill(ep.path, project=project, **values)))
    call.cleanup = lambda: w.admin.status("DELETE", f"{rules}/{rule_id}") and None
    if ep.method == "POST":
        call.json = {**body, "tag_pattern": "also-frozen-*"}
        call.observe = lambda: len(w.admin.api("GET", rules))
        call.cleanup = lambda: drop_rules(w, rules)
    elif ep.method == "PUT":
        call.json = {"enabled": False}
        call.observe = lambda: w.admin.api("GET", f"{rules}/{rule_id}")["enabled"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, f"{rules}/{rule_id}")
    return call


def drop_webhooks(w: World, hooks: str, *names: str) -> None:
    for name in names:
        w.admin.status("DELETE", f"{hooks}/{name}")


def webhook_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A webhook the admin adds first (to a loopback port that refuses at once), then read, changed,
    tested or removed by the actor; or another one the actor adds. Both are removed after the case."""
    assert project is not None
    hooks = f"/projects/{project}/webhooks"
    body = {"name": "mx-hook", "url": "http://127.0.0.1:9/hook", "events": ["push"], "secret": "mx-secret-1"}
    w.admin.api("POST", hooks, json=body)
    values = {"name": "mx-hook"} if "{name}" in ep.path else {}
    call = Call(ep.method, api(fill(ep.path, project=project, **values)))
    call.cleanup = lambda: drop_webhooks(w, hooks, "mx-hook")
    if ep.method == "POST" and ep.path.endswith("/webhooks"):
        call.json = {**body, "name": "mx-other"}
        call.observe = lambda: len(w.admin.api("GET", hooks))
        call.cleanup = lambda: drop_webhooks(w, hooks, "mx-hook", "mx-other")
    elif ep.method == "PUT":
        call.json = {"enabled": False}
        call.observe = lambda: w.admin.api("GET", f"{hooks}/mx-hook")["enabled"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, f"{hooks}/mx-hook")
    elif ep.path.endswith("/test"):
        call.observe = lambda: len(w.admin.api("GET", f"{hooks}/mx-hook/deliveries"))
    return call


def public_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def signing_key(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A trusted key the admin adds first, read or removed by the actor; or one the actor adds."""
    assert project is not None
    keys = f"/projects/{project}/signing-keys"
    name = w.unique("mx-key")
    w.admin.api("POST", keys, json={"name": name, "public_key": public_pem()})
    values = {"key_name": name} if "{key_name}" in ep.path else {}
    call = Call(ep.method, api(fill(ep.path, project=project, **values)))
    call.cleanup = lambda: w.admin.status("DELETE", f"{keys}/{name}") and None
    if ep.method == "POST":
        added = w.unique("mx-key")
        call.json = {"name": added, "public_key": public_pem()}
        call.observe = lambda: w.admin.api("GET", keys)["version"]
        call.cleanup = lambda: [w.admin.status("DELETE", f"{keys}/{n}") for n in (name, added)] and None
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, f"{keys}/{name}")
    return call


TRUST_POLICY: dict[str, Any] = {
    "version": "1.0",
    "trustPolicies": [
        {
            "name": "all",
            "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:release"],
            "trustedIdentities": ["*"],
        }
    ],
}


def trust_policy_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """The project's notation trust policy: one the admin set first is read or removed by the actor;
    or the actor sets one (with another name)."""
    assert project is not None
    path = f"/projects/{project}/trust-policy"
    w.admin.api("PUT", path, json=TRUST_POLICY)
    call = Call(ep.method, api(path))
    call.cleanup = lambda: w.admin.status("DELETE", path) and None
    if ep.method == "PUT":
        renamed = {**TRUST_POLICY["trustPolicies"][0], "name": "changed"}
        call.json = {**TRUST_POLICY, "trustPolicies": [renamed]}
        call.observe = lambda: w.admin.api("GET", path)["trustPolicies"][0]["name"]
    elif ep.method == "DELETE":
        call.observe = gone_or_there(w, path)
    return call


def sigstore_root_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A Sigstore trusted root the admin imports first (into the project, or system-wide): replaced
    or removed by the actor."""
    from tests.support.sigstore import PrivateSigstore

    base = f"/projects/{project}/sigstore/trust-roots" if project else "/sigstore/trust-roots"
    name = w.unique("mx-root")
    document = json.loads(PrivateSigstore().trusted_root())
    w.admin.api("PUT", f"{base}/{name}", json=document)
    names = {"project": project} if project else {}
    call = Call(ep.method, api(fill(ep.path, root_name=name, **names)))
    call.cleanup = lambda: w.admin.status("DELETE", f"{base}/{name}") and None
    if ep.method == "PUT":
        call.json = json.loads(PrivateSigstore().trusted_root())
        call.observe = lambda: [r["tlogs"] for r in w.admin.api("GET", base)]
    else:
        call.observe = lambda: [r["name"] for r in w.admin.api("GET", base)]
    return call


def sigstore_identity_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A keyless identity the admin adds first, removed by the actor; or one the actor adds."""
    assert project is not None
    base = f"/projects/{project}/sigstore/identities"
    name = w.unique("mx-id")
    issuer = "https://token.actions.githubusercontent.com"
    w.admin.api("POST", base, json={"name": name, "issuer": issuer, "san": "ci@example.com"})
    values = {"identity_name": name} if "{identity_name}" in ep.path else {}
    call = Call(ep.method, api(fill(ep.path, project=project, **values)))
    call.observe = lambda: [i["name"] for i in w.admin.api("GET", base)]
    call.cleanup = lambda: w.admin.status("DELETE", f"{base}/{name}") and None
    if ep.method == "POST":
        added = w.unique("mx-id")
        call.json = {"name": added, "issuer": issuer, "san_regex": ".*@example\\.com"}
        call.cleanup = lambda: [w.admin.status("DELETE", f"{base}/{n}") for n in (name, added)] and None
    return call


SELFTEST = {"kind": "selftest", "params": {"seconds": 0}}
LONG_SELFTEST = {"kind": "selftest", "params": {"seconds": 600}}


def newest_selftest(w: World) -> int:
    jobs = w.admin.api("GET", "/jobs", params={"kind": "selftest", "page_size": "1"})
    return jobs[0]["id"] if jobs else 0


def job_state(w: World, job_id: int) -> str:
    job = w.admin.api("GET", f"/jobs/{job_id}")
    return job["status"]


def cancelled(w: World, job_id: int) -> bool:
    """Whether anyone asked the job to stop. Not the status alone: a worker may start the job
    between two looks, which changes it without any request."""
    job = w.admin.api("GET", f"/jobs/{job_id}")
    return bool(job["status"] == "cancelled" or job["cancel_requested"])


def jobs_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> Call:
    """A job (and a schedule) the admin makes first where the call needs one; cancelled after."""
    if ep.path == "/jobs" and ep.method == "POST":
        return Call(ep.method, api(ep.path), json=SELFTEST, observe=lambda: newest_selftest(w))
    if ep.path == "/jobs/schedules/{kind}":
        path = "/jobs/schedules/selftest"
        w.admin.api("PUT", path, json={"cron": "0 0 1 1 *", "params": {"seconds": 0}})
        call = Call(ep.method, api(path), cleanup=lambda: w.admin.status("DELETE", path) and None)
        if ep.method == "PUT":
            call.json = {"cron": "0 0 2 1 *", "params": {"seconds": 0}}
            call.observe = lambda: w.admin.api("GET", path)["cron"]
        elif ep.method == "DELETE":
            call.observe = gone_or_there(w, path)
        return call
    job_id = w.admin.api("POST", "/jobs", json=LONG_SELFTEST)["id"]
    cancel = f"/jobs/{job_id}/cancel"
    call = Call(ep.method, api(fill(ep.path, job_id=str(job_id))))
    call.cleanup = lambda: w.admin.status("POST", cancel) and None
    if ep.path.endswith("/cancel"):
        call.observe = lambda: cancelled(w, job_id)
    elif ep.path.endswith("/retry"):
        w.admin.api("POST", cancel)
        deadline = time.monotonic() + 30
        while job_state(w, job_id) != "cancelled":
            assert time.monotonic() < deadline, f"job {job_id} was not cancelled"
            time.sleep(0.1)
        call.observe = lambda: newest_selftest(w)
        call.cleanup = lambda: w.admin.status("POST", f"/jobs/{newest_selftest(w)}/cancel") and None
    return call


DOCS = ("/openapi.json", "/docs", "/docs/oauth2-redirect")
API_RECIPES: dict[tuple[str, str, str], Recipe] = {
    **{(path, m, ""): plain() for path in DOCS for m in ("GET", "HEAD")},
    ("/health", "GET", ""): plain(),
    ("/systeminfo", "GET", ""): plain(),
    ("/system/signing-keys", "GET", ""): plain(),
    ("/system/signing-keys/rotate", "POST", ""): rotate_signing_key,
    ("/system/signing-keys/{kid}/retire", "POST", ""): retire_signing_key,
    ("/login", "POST", ""): login_call,
    ("/logout", "POST", ""): logout_call,
    ("/oidc/authorize", "POST", ""): oidc_authorize,
    ("/oidc/callback", "POST", ""): oidc_callback,
    ("/me/cli-secret", "POST", ""): plain(),
    ("/system/oidc/test", "POST", ""): plain(),
    ("/system/ldap/test", "POST", ""): plain(),
    ("/system/sign-in", "GET", ""): plain(),
    ("/users", "GET", ""): plain(),
    ("/endpoints", "GET", ""): plain(),
    ("/endpoints", "POST", ""): create_endpoint,
    **{(path, m, ""): endpoint_call for path, m in [
        ("/endpoints/{name}", "GET"), ("/endpoints/{name}", "PATCH"), ("/endpoints/{name}", "DELETE"),
        ("/endpoints/{name}/test", "POST"),
    ]},
    ("/replication/policies", "GET", ""): plain(),
    ("/replication/policies", "POST", ""): create_replication_policy,
    **{(path, m, ""): replication_policy_call for path, m in [
        ("/replication/policies/{name}", "GET"), ("/replication/policies/{name}", "PATCH"),
        ("/replication/policies/{name}", "DELETE"), ("/replication/policies/{name}/run", "POST"),
    ]},
    ("/replication/runs", "GET", ""): plain(),
    **{(path, m, ""): replication_run_call for path, m in [
        ("/replication/runs/{run_id}", "GET"), ("/replication/runs/{run_id}/cancel", "POST"),
    ]},
    ("/scanners", "GET", ""): plain(),
    ("/scanners", "POST", ""): create_scanner,
    ("/scanners/default", "GET", ""): plain(),
    **{(path, m, ""): scanner_call for path, m in [
        ("/scanners/default", "PUT"), ("/scanners/{name}", "GET"), ("/scanners/{name}", "DELETE"),
        ("/scanners/{name}/test", "POST"),
    ]},
    ("/notifications", "GET", ""): plain(),
    ("/vulndb", "GET", ""): plain(),
    ("/vulndb/allowlist", "GET", ""): plain(),
    **{("/vulndb/allowlist/{vuln_id}", m, ""): allowlist_entry for m in ("PUT", "DELETE")},
    (f"{P}/vulndb/allowlist", "GET", ""): plain(),
    **{(f"{P}/vulndb/allowlist/{{vuln_id}}", m, ""): allowlist_entry for m in ("PUT", "DELETE")},
    ("/notifications/{name}/deliveries", "GET", ""): plain(name="mx-hook"),
    ("/users", "POST", ""): create_user,
    ("/users/{username}", "GET", ""): plain(username=VICTIM),
    ("/users/{username}", "PATCH", ""): change_user,
    ("/users/{username}", "DELETE", ""): change_user,
    ("/users/{username}/password", "PUT", ""): change_user,
    ("/groups", "GET", ""): plain(),
    ("/groups", "POST", ""): create_group,
    **{(path, m, ""): group_call for path, m in [
        ("/groups/{group_id}", "GET"), ("/groups/{group_id}", "DELETE"),
        ("/groups/{group_id}/members/{username}", "PUT"), ("/groups/{group_id}/members/{username}", "DELETE"),
    ]},
    ("/me", "GET", ""): plain(),
    ("/me/password", "PUT", ""): my_password,
    ("/me/tokens", "GET", ""): plain(),
    ("/me/tokens", "POST", ""): create_my_token,
    ("/me/tokens/{token_id}", "DELETE", ""): revoke_my_token,
    ("/projects", "GET", ""): listing("name", {"page_size": "100"}),
    ("/projects", "POST", ""): create_project,
    (P, "GET", ""): plain(),
    (P, "PATCH", ""): update_project,
    (P, "DELETE", ""): delete_project,
    (f"{P}/members", "GET", ""): plain(),
    **{(path, m, ""): member for path, m in [
        (f"{P}/members", "POST"), *((f"{P}/members/{{member_id}}", m) for m in ("GET", "PATCH", "DELETE"))
    ]},
    ("/robots", "GET", ""): plain(),
    ("/robots/{name}", "GET", ""): plain(name="mx-other"),
    (PR, "GET", ""): plain(),
    (f"{PR}/{{name}}", "GET", ""): plain(name="reader"),
    **{(path, m, ""): robot for path, m in [
        ("/robots", "POST"), ("/robots/{name}", "PATCH"), ("/robots/{name}", "DELETE"),
        ("/robots/{name}/secret", "POST"), (PR, "POST"), (f"{PR}/{{name}}", "PATCH"),
        (f"{PR}/{{name}}", "DELETE"), (f"{PR}/{{name}}/secret", "POST"),
    ]},
    ("/repositories", "GET", ""): listing("project", {"page_size": "100"}),
    (R, "GET", ""): plain(),
    (f"{R}/artifacts", "GET", ""): plain(),
    (f"{R}/artifacts/{{reference}}", "GET", ""): plain(reference="v1"),
    (f"{R}/artifacts/{{reference}}", "DELETE", ""): delete_artifact,
    (f"{R}/tags", "GET", ""): plain(),
    (f"{R}/tags/{{tag}}", "DELETE", ""): delete_tag,
    (f"{R}/tags/{{tag}}", "PUT", ""): set_tag,
    ("/search", "GET", ""): listing("search", {"q": "mx", "limit": "100"}),
    ("/audit", "GET", ""): audit(""),
    ("/audit", "GET", "project"): audit("project"),
    **{(f"{P}/retention", m, ""): retention for m in ("GET", "PUT", "DELETE")},
    (f"{P}/retention/run", "POST", ""): retention,
    (f"{P}/retention/runs", "GET", ""): plain(),
    (f"{P}/retention/runs/{{run_id}}", "GET", ""): retention_report,
    **{(f"{P}/quota", m, ""): quota for m in ("GET", "PUT")},
    (f"{P}/immutable-rules", "GET", ""): plain(),
    **{(path, m, ""): immutable_rule for path, m in [
        (f"{P}/immutable-rules", "POST"),
        *((f"{P}/immutable-rules/{{rule_id}}", m) for m in ("GET", "PUT", "DELETE")),
    ]},
    (f"{P}/webhooks", "GET", ""): plain(),
    **{(path, m, ""): webhook_call for path, m in [
        (f"{P}/webhooks", "POST"), *((f"{P}/webhooks/{{name}}", m) for m in ("GET", "PUT", "DELETE")),
        (f"{P}/webhooks/{{name}}/deliveries", "GET"), (f"{P}/webhooks/{{name}}/test", "POST"),
    ]},
    (f"{P}/signing-keys", "GET", ""): plain(),
    **{(path, m, ""): signing_key for path, m in [
        (f"{P}/signing-keys", "POST"),
        *((f"{P}/signing-keys/{{key_name}}", m) for m in ("GET", "DELETE")),
    ]},
    **{(f"{P}/trust-policy", m, ""): trust_policy_call for m in ("GET", "PUT", "DELETE")},
    (f"{P}/sigstore/trust-roots", "GET", ""): plain(),
    **{(f"{P}/sigstore/trust-roots/{{root_name}}", m, ""): sigstore_root_call for m in ("PUT", "DELETE")},
    (f"{P}/sigstore/identities", "GET", ""): plain(),
    **{(path, m, ""): sigstore_identity_call for path, m in [
        (f"{P}/sigstore/identities", "POST"), (f"{P}/sigstore/identities/{{identity_name}}", "DELETE"),
    ]},
    ("/sigstore/trust-roots", "GET", ""): plain(),
    **{("/sigstore/trust-roots/{root_name}", m, ""): sigstore_root_call for m in ("PUT", "DELETE")},
    (f"{R}/artifacts/{{reference}}/signature", "GET", ""): plain(reference="v1"),
    (f"{R}/artifacts/{{reference}}/config", "GET", ""): plain(reference="v1"),
    (f"{R}/artifacts/{{reference}}/referrers", "GET", ""): plain(reference="v1"),
    **{(f"{R}/artifacts/{{reference}}/scan", m, ""): scan_call for m in ("POST", "GET")},
    **{(f"{R}/artifacts/{{reference}}{tail}", "GET", ""): layer_call for tail in (
        "/files", "/layers/{layer}/files", "/layers/{layer}/download", "/diff",
    )},
    **{(f"{P}/scan-settings", m, ""): scan_settings for m in ("GET", "PUT")},
    **{(path, "GET", ""): plain() for path in ("/jobs", "/jobs/kinds", "/jobs/schedules")},
    **{(path, m, ""): jobs_call for path, m in [
        ("/jobs", "POST"), *(("/jobs/schedules/{kind}", m) for m in ("GET", "PUT", "DELETE")),
        ("/jobs/{job_id}", "GET"), ("/jobs/{job_id}/cancel", "POST"), ("/jobs/{job_id}/retry", "POST"),
    ]},
}


# --- running the cases -----------------------------------------------------------------------------
def expected_denial(rule: Rule, actor: Actor, project: str | None, mode: str) -> int | None:
    """None if the call must be allowed, else the status it must be refused with."""
    public = PUBLIC[project] if project else None
    if mode == "api":
        return api_denial(rule, actor, public)
    return v2_denial(rule, actor, public, mode == "token")


def send(w: World, rule: Rule, call: Call, actor: Actor, mode: str) -> httpx.Response:
    if mode == "api":
        return w.caller.api(actor, call)
    if mode == "token":
        return w.caller.v2_token(actor, call, token_scope(rule.need, call.repository))
    return w.caller.v2_basic(actor, call)


def refusal_problems(answer: httpx.Response, denial: int, mode: str) -> list[str]:
    refusal = api_refusal_problems if mode == "api" else v2_refusal_problems
    return [f"must be refused: {p}" for p in refusal(answer, denial)]


# DOCKYARD_MATRIX_CELLS=FILE: each checked cell as a line of FILE (test, actor, project, mode, answer), to
# show that a change to the matrix's set-up checks the same cells with the same answers (sort and diff).
CELL_LOG = os.environ.get("DOCKYARD_MATRIX_CELLS")


def log_cell(actor: Actor, project: str | None, mode: str, answer: int | str) -> None:
    if CELL_LOG:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        with open(CELL_LOG, "a") as cells:
            cells.write(f"{test}\t{actor.key}\t{project}\t{mode}\t{answer}\n")


def answer_problems(
    rule: Rule, call: Call, answer: httpx.Response, denial: int | None, mode: str
) -> list[str]:
    """What is wrong with the answer: an allowed call must succeed (and pass its check), a refused one
    must be refused as the protocol says."""
    if denial is not None:
        return refusal_problems(answer, denial, mode)
    if answer.status_code != rule.ok:
        return [f"allowed, so expected {rule.ok}, got {answer.status_code}"]
    return call.check(answer) if call.check else []


def labelled(
    actor: Actor, project: str | None, mode: str, problems: list[str], answer: httpx.Response
) -> list[str]:
    log_cell(actor, project, mode, answer.status_code)
    where = f" in {project}" if project else ""
    return [f"{actor.key}{where} ({mode}): {problem}{describe(answer)}" for problem in problems]


def run_case(w: World, rule: Rule, call: Call, actor: Actor, project: str | None, mode: str) -> list[str]:
    """Make the call as the actor; what is wrong with the answer (and, for a refusal, with the state
    after it: an allowed call changes things, so only a refused one is looked at before and after)."""
    denial = expected_denial(rule, actor, project, mode)
    before = call.observe() if call.observe and denial is not None else None
    answer = send(w, rule, call, actor, mode)
    problems = answer_problems(rule, call, answer, denial, mode)
    if denial is not None and call.observe and call.observe() != before:
        problems.append("a refused request changed state")
    if call.cleanup:
        call.cleanup()
    return labelled(actor, project, mode, problems, answer)


def run_on_one_call(
    w: World, rule: Rule, recipe: Recipe, actors: list[Actor], project: str | None, mode: str, ep: Endpoint
) -> list[str]:
    """The actors' cases on one call, made for the first of them: a refusal must leave what the call aims
    at as it was, so the next actor finds it as new (one set-up, look and cleanup for all the refusals
    instead of one each); so does a read (SAME_CALL_FOR_READERS), allowed or not. What it aims at is
    looked at before the first and after the last: a change there runs every case again on a call of
    its own (run_case), which names who made it."""
    if not actors:
        return []
    call = recipe(w, actors[0], project, ep)
    before = call.observe() if call.observe else None
    problems: list[str] = []
    for actor in actors:
        denial = expected_denial(rule, actor, project, mode)
        answer = send(w, rule, call, actor, mode)
        problems += labelled(actor, project, mode, answer_problems(rule, call, answer, denial, mode), answer)
    changed = call.observe is not None and call.observe() != before
    if call.cleanup:
        call.cleanup()
    if changed:
        return [
            problem
            for actor in actors
            for problem in run_case(w, rule, recipe(w, actor, project, ep), actor, project, mode)
        ]
    return problems


# Recipes whose refused call differs with the actor (its own credentials in the body, its own session, a
# thing kept_if_untouched already hands from case to case): a call of their own for every actor. Every
# other recipe's call for a refused actor is the same whoever makes it, so run_on_one_call shares it.
PER_ACTOR: set[Recipe] = {login_call, logout_call, my_password, change_user, delete_project}
# Recipes that make a thing for their call (a webhook, a rule, a job...) whose reads (GET, HEAD) are the
# same call whoever makes them, allowed or not, and change nothing: one thing for every actor. (Not
# v2_upload: an actor who may push reads an upload session it started itself.)
SAME_CALL_FOR_READERS: set[Recipe] = {
    endpoint_call, group_call, immutable_rule, jobs_call, replication_policy_call, replication_run_call,
    retention, scan_call, scan_settings, scanner_call, signing_key, trust_policy_call, webhook_call,
}  # fmt: skip


def run_endpoint(
    w: World, ep: Endpoint, rules: dict[str, Rule], recipes: dict[str, Recipe], modes: tuple[str, ...]
) -> list[str]:
    problems = []
    for variant, rule in rules.items():
        recipe = recipes[variant]
        for project in (PRIV, PUB) if rule.per_project else (None,):
            for mode in modes:
                actors = w.actors
                if ep.method in ("GET", "HEAD") and recipe in SAME_CALL_FOR_READERS:
                    problems += run_on_one_call(w, rule, recipe, actors, project, mode, ep)
                    continue
                if recipe not in PER_ACTOR:
                    # The refusals first, on one shared call, then each allowed actor on a call of its own
                    # (an allowed call changes things: it must not meet the shared one).
                    refused = [a for a in actors if expected_denial(rule, a, project, mode) is not None]
                    problems += run_on_one_call(w, rule, recipe, refused, project, mode, ep)
                    actors = [a for a in actors if a not in refused]
                for actor in actors:
                    call = recipe(w, actor, project, ep)
                    problems += run_case(w, rule, call, actor, project, mode)
    return problems


V2_ENDPOINTS = v2_endpoints()
API_ENDPOINTS = api_endpoints()


@pytest.mark.parametrize("endpoint", V2_ENDPOINTS, ids=str)
def test_v2_endpoint_allows_exactly_the_role_table(
    endpoint: Endpoint, request: pytest.FixtureRequest
) -> None:
    key = (endpoint.path, endpoint.method)
    assert key in V2_RULES, f"endpoint {endpoint} has no authorization expectation: add it to V2_RULES"
    assert key in V2_RECIPES, f"endpoint {endpoint} has no request recipe: add it to V2_RECIPES"
    w: World = request.getfixturevalue("world")
    problems = run_endpoint(w, endpoint, {"": V2_RULES[key]}, {"": V2_RECIPES[key]}, ("token", "basic"))
    assert not problems, f"{len(problems)} wrong answers:\n" + "\n\n".join(problems)


@pytest.mark.parametrize("endpoint", API_ENDPOINTS, ids=str)
def test_api_endpoint_allows_exactly_the_role_table(
    endpoint: Endpoint, request: pytest.FixtureRequest
) -> None:
    key = (endpoint.path, endpoint.method)
    assert key in API_RULES, f"endpoint {endpoint} has no authorization expectation: add it to API_RULES"
    rules = {"": API_RULES[key], **API_VARIANTS.get(key, {})}
    missing = [v for v in rules if (*key, v) not in API_RECIPES]
    assert not missing, f"endpoint {endpoint} has no request recipe for {missing}: add it to API_RECIPES"
    recipes = {variant: API_RECIPES[(*key, variant)] for variant in rules}
    w: World = request.getfixturevalue("world")
    problems = run_endpoint(w, endpoint, rules, recipes, ("api",))
    assert not problems, f"{len(problems)} wrong answers:\n" + "\n\n".join(problems)


def test_the_expectation_tables_name_only_existing_endpoints() -> None:
    """A stale entry (a route renamed or removed) would leave its replacement's row unchecked."""
    v2 = {(e.path, e.method) for e in V2_ENDPOINTS}
    routes = {(e.path, e.method) for e in API_ENDPOINTS}
    assert set(V2_RULES) - v2 == set(), "V2_RULES names endpoints the router does not have"
    assert set(API_RULES) - routes == set(), "API_RULES names endpoints the management API does not have"
    assert set(API_VARIANTS) <= routes
    assert len(V2_ENDPOINTS) >= 15 and len(API_ENDPOINTS) >= 45  # the route tables were really read


def test_ids_of_other_projects_and_users_are_not_reachable_through_ones_own(world: World) -> None:
    """A project admin of mxpriv names mxelse's member and robot under mxpriv, and another user's token
    under /me: each is refused as unknown (the robot's full name, as no short name can be, as invalid),
    and each survives."""
    actor = next(a for a in world.actors if a.key == "project_admin")
    token_id, secret = world.victim_token
    attempts = [
        ("DELETE", f"/me/tokens/{token_id}", None, 404),
        *((m, f"/projects/{PRIV}/members/{world.else_member}", {"role": "developer"}, 404) for m in METHODS),
        *((m, f"/projects/{PRIV}/robots/robot${ELSE}+reader", {"description": "x"}, 400) for m in METHODS),
    ]
    problems = []
    for method, path, body, status in attempts:
        answer = world.caller.api(actor, Call(method, api(path), json=body if method == "PATCH" else None))
        if answer.status_code != status:
            problems.append(f"expected {status}{describe(answer)}")
    assert not problems, "\n".join(problems)
    assert world.caller.http.get(api("/me"), auth=(VICTIM, secret)).status_code == 200
    assert world.admin.api("GET", f"/projects/{ELSE}/members/{world.else_member}")["role"] == "guest"
    assert world.admin.api("GET", f"/projects/{ELSE}/robots/reader")["description"] is None


METHODS = ("GET", "PATCH", "DELETE")


# --- the portal (/ui) ------------------------------------------------------------------------------
# Each portal page or action makes the /api/v1 call named on the right with the user's own session
# (dockyard.ui), so it must allow exactly what that call allows: the API's row decides. A refusal the API
# answers 401 sends the browser to the login page; 403 and 404 are pages of that status. Robots and
# anonymous callers have no portal session: every page sends them to log in. None: no API call (a form,
# a redirect).
UI_RULES: dict[tuple[str, str], tuple[str, str] | None] = {
    ("/", "GET"): None,
    ("/login", "GET"): None,
    ("/login", "POST"): ("/login", "POST"),
    ("/logout", "POST"): ("/logout", "POST"),
    ("/oidc/login", "GET"): ("/oidc/authorize", "POST"),
    ("/oidc/callback", "GET"): ("/oidc/callback", "POST"),
    ("/account", "GET"): ("/me", "GET"),
    ("/account/cli-secret", "POST"): ("/me/cli-secret", "POST"),
    ("/projects", "GET"): ("/projects", "GET"),
    ("/projects", "POST"): ("/projects", "POST"),
    ("/projects/{project}", "GET"): (P, "GET"),
    ("/repositories/{name:path}", "GET"): (R, "GET"),
    ("/repositories/{name:path}/-/artifacts/{reference}", "GET"): (f"{R}/artifacts/{{reference}}", "GET"),
    ("/repositories/{name:path}/-/tags/{tag}/delete", "POST"): (f"{R}/tags/{{tag}}", "DELETE"),
    **{(f"/repositories/{{name:path}}/-/artifacts/{{reference}}{tail}", "GET"): (
        f"{R}/artifacts/{{reference}}{tail}", "GET"
    ) for tail in ("/files", "/layers/{layer}/files", "/layers/{layer}/download")},
    ("/repositories/{name:path}/-/diff", "GET"): (f"{R}/artifacts/{{reference}}/diff", "GET"),
    ("/repositories/{name:path}/-/artifacts/{reference}/tags", "POST"): (f"{R}/tags/{{tag}}", "PUT"),
    ("/repositories/{name:path}/-/delete", "POST"): (f"{R}/artifacts/{{reference}}", "DELETE"),
    ("/account/tokens", "GET"): ("/me/tokens", "GET"),
    ("/account/tokens", "POST"): ("/me/tokens", "POST"),
    ("/account/tokens/{token_id}/revoke", "POST"): ("/me/tokens/{token_id}", "DELETE"),
    ("/admin/users", "GET"): ("/users", "GET"),
    ("/admin/users", "POST"): ("/users", "POST"),
    ("/admin/users/{username}/change", "POST"): ("/users/{username}", "PATCH"),
    ("/admin/audit", "GET"): ("/audit", "GET"),
    ("/admin/system", "GET"): ("/systeminfo", "GET"),
    ("/admin/jobs", "GET"): ("/jobs", "GET"),
    ("/admin/jobs/{job_id}", "GET"): ("/jobs/{job_id}", "GET"),
    ("/admin/jobs/{job_id}/cancel", "POST"): ("/jobs/{job_id}/cancel", "POST"),
    ("/admin/jobs/{job_id}/retry", "POST"): ("/jobs/{job_id}/retry", "POST"),
    ("/admin/signing-keys", "GET"): ("/system/signing-keys", "GET"),
    ("/admin/signing-keys/rotate", "POST"): ("/system/signing-keys/rotate", "POST"),
    ("/admin/signing-keys/{kid}/retire", "POST"): ("/system/signing-keys/{kid}/retire", "POST"),
    ("/admin/gc", "GET"): ("/jobs", "GET"),
    ("/admin/gc/schedule", "POST"): ("/jobs/schedules/{kind}", "PUT"),
    ("/admin/gc/schedule/delete", "POST"): ("/jobs/schedules/{kind}", "DELETE"),
    ("/admin/sign-in", "GET"): ("/system/sign-in", "GET"),
    ("/admin/replication", "GET"): ("/replication/policies", "GET"),
    ("/admin/replication", "POST"): ("/replication/policies", "POST"),
    ("/admin/replication/policies/{name}", "GET"): ("/replication/policies/{name}", "GET"),
    ("/admin/replication/policies/{name}/edit", "POST"): ("/replication/policies/{name}", "PATCH"),
    ("/admin/replication/policies/{name}/enabled", "POST"): ("/replication/policies/{name}", "PATCH"),
    ("/admin/replication/policies/{name}/run", "POST"): ("/replication/policies/{name}/run", "POST"),
    ("/admin/replication/policies/{name}/delete", "POST"): ("/replication/policies/{name}", "DELETE"),
    ("/admin/replication/runs/{run_id}", "GET"): ("/replication/runs/{run_id}", "GET"),
    ("/admin/sign-in/ldap-test", "POST"): ("/system/ldap/test", "POST"),
    ("/admin/sign-in/oidc-test", "POST"): ("/system/oidc/test", "POST"),
    ("/admin/gc", "POST"): ("/jobs", "POST"),
    ("/admin/groups", "GET"): ("/groups", "GET"),
    ("/admin/groups", "POST"): ("/groups", "POST"),
    ("/admin/groups/{group_id}", "GET"): ("/groups/{group_id}", "GET"),
    ("/admin/groups/{group_id}/delete", "POST"): ("/groups/{group_id}", "DELETE"),
    ("/admin/groups/{group_id}/members", "POST"): ("/groups/{group_id}/members/{username}", "PUT"),
    ("/admin/groups/{group_id}/members/{username}/remove", "POST"): (
        "/groups/{group_id}/members/{username}", "DELETE"
    ),
    (f"{P}/policies", "GET"): (f"{P}/retention", "GET"),
    (f"{P}/webhooks", "GET"): (f"{P}/webhooks", "GET"),
    (f"{P}/webhooks", "POST"): (f"{P}/webhooks", "POST"),
    (f"{P}/webhooks/{{name}}", "GET"): (f"{P}/webhooks/{{name}}", "GET"),
    (f"{P}/webhooks/{{name}}/enabled", "POST"): (f"{P}/webhooks/{{name}}", "PUT"),
    (f"{P}/webhooks/{{name}}/edit", "POST"): (f"{P}/webhooks/{{name}}", "PUT"),
    (f"{P}/webhooks/{{name}}/test", "POST"): (f"{P}/webhooks/{{name}}/test", "POST"),
    (f"{P}/webhooks/{{name}}/delete", "POST"): (f"{P}/webhooks/{{name}}", "DELETE"),
    (f"{P}/immutable-rules", "POST"): (f"{P}/immutable-rules", "POST"),
    (f"{P}/immutable-rules/{{rule_id}}/delete", "POST"): (f"{P}/immutable-rules/{{rule_id}}", "DELETE"),
    (f"{P}/retention", "POST"): (f"{P}/retention", "PUT"),
    (f"{P}/retention/dry-run", "POST"): (f"{P}/retention/run", "POST"),
    (f"{P}/retention/runs/{{run_id}}", "GET"): (f"{P}/retention/runs/{{run_id}}", "GET"),
    (f"{P}/quota", "POST"): (f"{P}/quota", "PUT"),
    (f"{P}/proxy", "POST"): (P, "PATCH"),
    (f"{P}/members", "GET"): (f"{P}/members", "GET"),
    (f"{P}/members", "POST"): (f"{P}/members", "POST"),
    (f"{P}/members/{{member_id}}/role", "POST"): (f"{P}/members/{{member_id}}", "PATCH"),
    (f"{P}/members/{{member_id}}/delete", "POST"): (f"{P}/members/{{member_id}}", "DELETE"),
    (PR, "GET"): (PR, "GET"),
    (PR, "POST"): (PR, "POST"),
    (f"{PR}/{{robot}}", "GET"): (f"{PR}/{{name}}", "GET"),
    (f"{PR}/{{robot}}/disabled", "POST"): (f"{PR}/{{name}}", "PATCH"),
    (f"{PR}/{{robot}}/secret", "POST"): (f"{PR}/{{name}}/secret", "POST"),
    (f"{PR}/{{robot}}/delete", "POST"): (f"{PR}/{{name}}", "DELETE"),
}
# Portal routes whose case is the API recipe's (its state to observe, its cleanup), with the form that
# asks for the same change; a path parameter beyond the project is the API call's last segment.
UI_LIKE_API: dict[tuple[str, str], dict[str, str]] = {
    (f"{P}/immutable-rules", "POST"): {"repository_pattern": "mx-never/**", "tag_pattern": "also-frozen-*"},
    (f"{P}/immutable-rules/{{rule_id}}/delete", "POST"): {},
    (f"{P}/retention", "POST"): {"policy": json.dumps({"rules": [{"action": "latestPushedK", "count": 5}]})},
    (f"{P}/retention/dry-run", "POST"): {},
    (f"{P}/retention/runs/{{run_id}}", "GET"): {},
    ("/admin/jobs/{job_id}", "GET"): {},
    (f"{P}/quota", "POST"): {"limit_gib": "1024", "warn_percent": "90"},
    ("/admin/signing-keys/rotate", "POST"): {},
    ("/admin/groups/{group_id}", "GET"): {},
    ("/admin/groups/{group_id}/delete", "POST"): {},
    (f"{P}/webhooks/{{name}}", "GET"): {},
    (f"{P}/webhooks/{{name}}/enabled", "POST"): {"enabled": "false"},
    (f"{P}/webhooks/{{name}}/delete", "POST"): {},
    ("/admin/replication/policies/{name}/delete", "POST"): {},
    ("/admin/replication/policies/{name}", "GET"): {},
    ("/admin/replication/runs/{run_id}", "GET"): {},
}
# Portal routes whose case is the API recipe's, whose path parameter is the API path's second last
# segment (`/jobs/{job_id}/cancel`), with the form that asks for the same change.
UI_LIKE_API_ACTION: dict[tuple[str, str], dict[str, str]] = {
    ("/admin/jobs/{job_id}/cancel", "POST"): {},
    ("/admin/jobs/{job_id}/retry", "POST"): {},
    ("/admin/signing-keys/{kid}/retire", "POST"): {},
    (f"{P}/webhooks/{{name}}/test", "POST"): {},
    ("/admin/replication/policies/{name}/run", "POST"): {},
}
# Portal forms whose answer is a page, not a redirect: it shows a secret made just now, once, or what a
# test delivery got.
UI_SHOWS_ONCE = {
    (PR, "POST"), (f"{PR}/{{robot}}/secret", "POST"), ("/account/tokens", "POST"),
    (f"{P}/webhooks/{{name}}/test", "POST"),
}
# Portal routes whose API call allows less than its row says: PATCH /projects/{project} with `proxy`
# is for system administrators only (a 403 for the project's own admins, a 404 for who cannot see it).
UI_RULE_OVERRIDES: dict[tuple[str, str], Rule] = {
    (f"{P}/proxy", "POST"): Rule(needs(PROJECT_READ, QUOTA_SET)),
}
UI_SESSIONS: dict[str, Session] = {}  # sessions the matrix opened for the portal alone
# Single sign-on's pages, for anyone, answer as it is not configured on the matrix server: the login page
# with the API's 404, and (no login under way in this browser) 400.
SSO_PAGES = {("/oidc/login", "GET"): 404, ("/oidc/callback", "GET"): 400}
# Tests of LDAP and single sign-on, neither configured on the matrix server: the API's 404 to whoever may ask.
UI_UNCONFIGURED = {("/admin/sign-in/ldap-test", "POST"), ("/admin/sign-in/oidc-test", "POST")}


def ui_endpoints() -> list[Endpoint]:
    """Every (route, method) of the portal, static files aside, relative to /ui."""
    from starlette.routing import Route

    from dockyard.ui.pages import Portal

    portal = Portal(cast(Any, None), cast(Any, None), 0)  # only its route table is read
    found = []
    for route in portal.routes():
        if isinstance(route, Route):
            params = frozenset(compile_path(route.path)[2])
            found += [Endpoint(route.path, m, params) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def ui_session(w: World, actor: Actor) -> Session | None:
    """The session the actor's browser holds: the API's own (the portal's cookie carries the same value),
    one opened with its password for the developer (whose API calls show a personal token); none for
    robots and anonymous callers."""
    if actor.kind != "user" or not actor.usable:  # test_portal.py: a disabled user's session ends
        return None
    if actor.key in w.caller.sessions:
        return w.caller.sessions[actor.key]
    if actor.key not in UI_SESSIONS:
        assert actor.username and actor.password
        UI_SESSIONS[actor.key] = login(w.caller.http, actor.username, actor.password)
    return UI_SESSIONS[actor.key]


@dataclass
class UiCall:
    method: str
    path: str
    form: dict[str, str] = field(default_factory=dict)
    session: Session | None = None
    observe: Callable[[], Any] | None = None
    cleanup: Callable[[], None] | None = None


def ui_call(w: World, actor: Actor, project: str | None, ep: Endpoint) -> UiCall:
    session = ui_session(w, actor)
    names: dict[str, str] = {}
    if "project" in ep.params:
        names["project"] = str(project)
    if "name" in ep.params:
        names["name"] = w.repo(str(project))
    if "reference" in ep.params:
        names["reference"] = "v1"
    if "layer" in ep.params:
        names["layer"] = json.loads(w.image[str(project)][0])["layers"][0]["digest"]
    key = (ep.path, ep.method)
    if key == ("/login", "POST"):
        secret = actor.password or actor.secret or "wrong-password-1"
        return UiCall("POST", "/ui/login", {"username": actor.username or "mx-nobody", "password": secret})
    if key == ("/logout", "POST"):  # a session of its own: the actor's goes on serving the other cases
        fresh = session
        if session and actor.usable:
            fresh = login(w.caller.http, str(actor.username), str(actor.password))
        return UiCall("POST", "/ui/logout", session=fresh)
    if key == ("/projects", "POST"):
        name = w.unique("mxui")
        path = f"/projects/{name}"
        return UiCall(
            "POST", "/ui/projects", {"name": name}, session, observe=gone_or_there(w, path),
            cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)),
        )
    if key == ("/repositories/{name:path}/-/tags/{tag}/delete", "POST"):
        tag = w.unique("uidoomed")
        w.oci.push_manifest(w.repo(str(project)), tag, w.image[str(project)][0], OCI_MANIFEST)
        manifest = f"/v2/{w.repo(str(project))}/manifests/{tag}"
        names["tag"] = tag
        return UiCall("POST", "/ui" + fill(ep.path, **names), session=session,
                      observe=lambda: w.v2_status("HEAD", manifest))
    if key == ("/repositories/{name:path}/-/artifacts/{reference}/tags", "POST"):
        tag = w.unique("uiadded")
        manifest = f"/v2/{w.repo(str(project))}/manifests/{tag}"
        return UiCall("POST", "/ui" + fill(ep.path, **names), {"tag": tag}, session,
                      observe=lambda: w.v2_status("HEAD", manifest))
    if key == ("/repositories/{name:path}/-/delete", "POST"):
        doomed = w.oci.push_image(w.repo(str(project)), None, seed=w.unique("uibulk")).digest
        manifest = f"/v2/{w.repo(str(project))}/manifests/{doomed}"
        return UiCall("POST", "/ui" + fill(ep.path, **names), {"digest": doomed}, session,
                      observe=lambda: w.v2_status("HEAD", manifest))
    if key in UI_LIKE_API:
        api_path, api_method = UI_RULES[key] or ("", "")
        recipe = API_RECIPES[(api_path, api_method, "")]
        made = recipe(w, actor, project, Endpoint(api_path, api_method, frozenset(compile_path(api_path)[2])))
        values = {name: made.path.rsplit("/", 1)[1] for name in ep.params if name != "project"}
        if "project" in ep.params:
            values["project"] = str(project)
        ui_path = "/ui" + fill(ep.path, **values)
        return UiCall(ep.method, ui_path, UI_LIKE_API[key], session, made.observe, made.cleanup)
    if key in UI_LIKE_API_ACTION:
        api_path, api_method = UI_RULES[key] or ("", "")
        recipe = API_RECIPES[(api_path, api_method, "")]
        made = recipe(w, actor, project, Endpoint(api_path, api_method, frozenset(compile_path(api_path)[2])))
        (name,) = ep.params - {"project"}
        values = {name: quote(made.path.rsplit("/", 2)[1], safe="")}
        if "project" in ep.params:
            values["project"] = str(project)
        ui_path = "/ui" + fill(ep.path, **values)
        return UiCall(ep.method, ui_path, UI_LIKE_API_ACTION[key], session, made.observe, made.cleanup)
    if key == ("/admin/groups", "POST"):
        made = create_group(w, actor, project, Endpoint("/groups", "POST", frozenset()))
        return UiCall("POST", "/ui/admin/groups", dict(made.json), session, made.observe, made.cleanup)
    if ep.path.startswith("/admin/groups/{group_id}/members"):
        api_path = "/groups/{group_id}/members/{username}"
        method = "PUT" if ep.path.endswith("/members") else "DELETE"
        made = group_call(w, actor, project, Endpoint(api_path, method, frozenset({"group_id", "username"})))
        group_id = made.path.rsplit("/", 3)[1]
        if method == "PUT":
            ui_path, form = f"/ui/admin/groups/{group_id}/members", {"username": VICTIM}
        else:
            ui_path, form = f"/ui/admin/groups/{group_id}/members/{VICTIM}/remove", {}
        return UiCall("POST", ui_path, form, session, made.observe, made.cleanup)
    if key == (f"{P}/webhooks/{{name}}/edit", "POST"):  # the URL changes: watch it, not `enabled`
        api_path = f"{P}/webhooks/{{name}}"
        made = webhook_call(w, actor, project, Endpoint(api_path, "PUT", frozenset({"project", "name"})))
        hook = f"/projects/{project}/webhooks/mx-hook"
        form = {"url": "http://127.0.0.1:9/other", "events": "push"}
        return UiCall("POST", f"/ui{hook}/edit", form, session,
                      observe=lambda: w.admin.api("GET", hook)["url"], cleanup=made.cleanup)
    if key == (f"{P}/webhooks", "POST"):
        made = webhook_call(w, actor, project, Endpoint(f"{P}/webhooks", "POST", frozenset({"project"})))
        form = {**made.json, "events": "push"}
        return UiCall("POST", "/ui" + fill(ep.path, **names), form, session, made.observe, made.cleanup)
    if key == (f"{P}/proxy", "POST"):
        endpoint, path = new_endpoint(w), f"/projects/{project}"

        def cleanup() -> None:
            w.admin.api("PATCH", path, json={"proxy": None})
            w.admin.api("DELETE", f"/endpoints/{endpoint}", expect=(204, 404))

        form = {"endpoint": endpoint, "tag_ttl_seconds": "60"}
        return UiCall("POST", f"/ui/projects/{project}/proxy", form, session,
                      observe=lambda: w.admin.api("GET", path).get("proxy"), cleanup=cleanup)
    if key == ("/admin/replication", "POST"):
        create = Endpoint("/replication/policies", "POST", frozenset())
        made = create_replication_policy(w, actor, project, create)
        return UiCall("POST", "/ui/admin/replication", dict(made.json), session, made.observe, made.cleanup)
    if key == ("/admin/replication/policies/{name}/edit", "POST"):  # the whole form, one field changed
        api_path = "/replication/policies/{name}"
        made = replication_policy_call(w, actor, project, Endpoint(api_path, "PATCH", frozenset({"name"})))
        name = made.path.rsplit("/", 1)[1]
        policy = w.admin.api("GET", f"/replication/policies/{name}")
        form = {key: policy[key] for key in ("direction", "endpoint", "repositories", "tags")}
        path = f"/replication/policies/{name}"
        return UiCall("POST", f"/ui/admin{path}/edit", {**form, "description": "edited"}, session,
                      observe=lambda: w.admin.api("GET", path)["description"], cleanup=made.cleanup)
    if key == ("/admin/replication/policies/{name}/enabled", "POST"):
        api_path = "/replication/policies/{name}"
        made = replication_policy_call(w, actor, project, Endpoint(api_path, "PATCH", frozenset({"name"})))
        name = made.path.rsplit("/", 1)[1]
        return UiCall("POST", f"/ui/admin/replication/policies/{name}/enabled", {"enabled": "false"}, session,
                      observe=lambda: w.admin.api("GET", f"/replication/policies/{name}")["enabled"],
                      cleanup=made.cleanup)
    if key == ("/admin/gc", "POST"):  # a dry run: it deletes nothing of the matrix's
        def newest_gc() -> list[int]:  # its id only: an earlier run's state moves on by itself
            return [j["id"] for j in w.admin.api("GET", "/jobs", params={"kind": "gc", "page_size": "1"})]

        return UiCall("POST", "/ui/admin/gc", {"mode": "dry-run"}, session, observe=newest_gc)
    if key[0].startswith("/admin/gc/schedule"):  # a yearly schedule: no run starts in the matrix's time
        path = "/jobs/schedules/gc"
        previous = w.admin.status("GET", path) == 200 and w.admin.api("GET", path)

        def restore() -> None:
            if previous:
                w.admin.api("PUT", path, json={k: previous[k] for k in ("cron", "params", "enabled")})
            else:
                w.admin.status("DELETE", path)

        if key[0].endswith("/delete"):
            w.admin.api("PUT", path, json={"cron": "0 0 1 1 *", "params": {"dry_run": True}})
            return UiCall("POST", "/ui/admin/gc/schedule/delete", {}, session,
                          observe=gone_or_there(w, path), cleanup=restore)
        return UiCall("POST", "/ui/admin/gc/schedule", {"cron": "0 0 1 1 *", "mode": "dry-run"}, session,
                      observe=lambda: w.admin.status("GET", path) == 200 and w.admin.api("GET", path)["cron"],
                      cleanup=restore)
    if key == ("/admin/users", "POST"):
        made = create_user(w, actor, project, Endpoint("/users", "POST", frozenset()))
        return UiCall("POST", "/ui/admin/users", dict(made.json or {}), session, made.observe, made.cleanup)
    if key == ("/admin/users/{username}/change", "POST"):
        name = w.new_user()
        return UiCall("POST", f"/ui/admin/users/{name}/change", {"disabled": "true"}, session,
                      observe=lambda: w.admin.api("GET", f"/users/{name}")["disabled"],
                      cleanup=lambda: w.admin.api("DELETE", f"/users/{name}", expect=(204, 404)))
    if key == ("/account/tokens", "POST"):
        return UiCall("POST", "/ui/account/tokens", {"name": w.unique("uitoken")}, session)
    if key == ("/account/tokens/{token_id}/revoke", "POST"):
        revoke = Endpoint("/me/tokens/{token_id}", "DELETE", frozenset({"token_id"}))
        api_call = revoke_my_token(w, actor, project, revoke)
        token_id = api_call.path.rsplit("/", 1)[1]
        path = f"/ui/account/tokens/{token_id}/revoke"
        return UiCall("POST", path, session=session, observe=api_call.observe)
    if ep.path.startswith(f"{P}/members/"):
        assert project is not None
        member_id = str(w.add_joiner(project))
        listed = f"/projects/{project}/members"
        joined = lambda: [m["role"] for m in w.admin.api("GET", listed, params={"q": JOINER})]  # noqa: E731
        return UiCall("POST", "/ui" + fill(ep.path, project=str(project), member_id=member_id),
                      {"role": "developer"}, session, observe=joined,
                      cleanup=lambda: w.drop_joiner(str(project)))
    if key == (f"{P}/members", "POST"):
        listed = f"/projects/{project}/members"
        joined = lambda: [m["role"] for m in w.admin.api("GET", listed, params={"q": JOINER})]  # noqa: E731
        form = {"kind": "user", "name": JOINER, "role": "guest"}
        return UiCall("POST", "/ui" + fill(ep.path, **names), form, session, observe=joined,
                      cleanup=lambda: w.drop_joiner(str(project)))
    if key == (PR, "POST"):
        made = w.unique("uimade")
        path = f"/projects/{project}/robots/{made}"
        return UiCall("POST", "/ui" + fill(ep.path, **names), {"name": made, "actions": "pull"}, session,
                      observe=gone_or_there(w, path),
                      cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)))
    if ep.path.startswith(f"{PR}/"):
        path, full, secret = w.new_robot(str(project))
        call = UiCall(ep.method, "/ui" + fill(ep.path, project=str(project), robot=path.rsplit("/", 1)[1]),
                      session=session, cleanup=lambda: w.admin.api("DELETE", path, expect=(204, 404)))
        if ep.path.endswith("/disabled"):
            call.form = {"disabled": "true"}
            call.observe = lambda: w.admin.api("GET", path)["disabled"]
        elif ep.path.endswith("/secret"):  # the old secret must still work after a refusal
            call.observe = lambda: w.caller.http.get(api("/me"), auth=(full, secret)).status_code
        elif ep.path.endswith("/delete"):
            call.observe = gone_or_there(w, path)
        return call
    query = ""
    if ep.path.endswith("/download"):
        query = "?path=/etc/project"
    elif ep.path.endswith("/diff"):
        query = "?from=v1&to=v1"
    return UiCall(ep.method, "/ui" + fill(ep.path, **names) + query, session=session)


def ui_expectation(
    key: tuple[str, str], rule: Rule | None, actor: Actor, public: bool | None, has_session: bool
) -> int | None:
    """None if the page must be served, else the API's refusal it must turn into (401: to log in)."""
    if rule is None:
        return None
    if key == ("/login", "POST") or key in SSO_PAGES:
        return api_denial(rule, actor, public)  # logging in needs credentials, not a session
    if not has_session:
        return 401
    # The portal's session is always one opened with the password (ui_session), even for the developer
    # whose API calls here carry a personal token: what needs the password is allowed in the portal.
    return api_denial(rule, dataclasses.replace(actor, personal_token=False), public)


def ui_rule(ep: Endpoint) -> Rule | None:
    key = (ep.path, ep.method)
    api_route = UI_RULES[key]
    rule = API_RULES[api_route] if api_route else None
    if key == ("/logout", "POST"):
        return None  # always answered by the login page; test_portal.py checks that it ends the session
    return UI_RULE_OVERRIDES.get(key, rule)


def ui_denial(w: World, ep: Endpoint, actor: Actor, project: str | None) -> int | None:
    """None if the page must be served, else the API's refusal it must turn into (401: to log in)."""
    public = PUBLIC[project] if project else None
    has_session = ui_session(w, actor) is not None
    return ui_expectation((ep.path, ep.method), ui_rule(ep), actor, public, has_session)


def ui_send(w: World, call: UiCall) -> httpx.Response:
    headers = {"Origin": str(w.caller.http.base_url).rstrip("/")}
    if call.session:  # the portal's cookie carries the API session's value
        headers["Cookie"] = "dockyard_ui=" + call.session.cookie.split("=", 1)[1]
    form = {**call.form, **({"csrf_token": call.session.csrf} if call.session else {})}
    w.caller.http.cookies.clear()
    answer = w.caller.http.request(
        call.method, call.path, data=form if call.method == "POST" else None, headers=headers,
        follow_redirects=False,
    )
    w.caller.http.cookies.clear()
    return answer


def ui_answer_problems(ep: Endpoint, call: UiCall, expected: int | None, answer: httpx.Response) -> list[str]:
    key = (ep.path, ep.method)
    location = answer.headers.get("location", "")
    to_login = answer.status_code == 303 and location.startswith("/ui/login")
    problems = []
    if expected is None:
        ok = answer.status_code == 200 if call.method == "GET" else answer.status_code in (302, 303)
        if key == ("/", "GET"):
            ok = answer.status_code == 303
        elif key in UI_SHOWS_ONCE:
            ok = answer.status_code == 200
        elif key in SSO_PAGES:
            ok = answer.status_code == SSO_PAGES[key]
        elif key in UI_UNCONFIGURED:
            ok = answer.status_code == 404
        elif call.method == "GET" and ep.path != "/login":
            ok = ok and not to_login
        if not ok:
            problems.append(f"allowed, so expected the page, got {answer.status_code} {location}")
    elif expected == 401:
        if not (to_login or (key == ("/login", "POST") and answer.status_code == 401)):
            problems.append(f"expected the login page, got {answer.status_code} {location}")
    elif answer.status_code != expected:
        problems.append(f"expected {expected}, got {answer.status_code} {location}")
    return problems


def ui_labelled(ep: Endpoint, actor: Actor, project: str | None, problems: list[str]) -> list[str]:
    log_cell(actor, project, f"portal {ep}", "")
    where = f" in {project}" if project else ""
    return [f"{actor.key}{where} (portal {ep}): {problem}" for problem in problems]


def run_ui_case(w: World, ep: Endpoint, actor: Actor, project: str | None) -> list[str]:
    call = ui_call(w, actor, project, ep)
    expected = ui_denial(w, ep, actor, project)
    before = call.observe() if call.observe and expected is not None else None  # as run_case
    answer = ui_send(w, call)
    problems = ui_answer_problems(ep, call, expected, answer)
    if expected is not None and call.observe and call.observe() != before:
        problems.append("a refused request changed state")
    if call.cleanup:
        call.cleanup()
    return ui_labelled(ep, actor, project, problems)


def run_ui_refusals(w: World, ep: Endpoint, actors: list[Actor], project: str | None) -> list[str]:
    """As run_on_one_call: the refused actors' cases on one call (each with its own session, if any), what
    it aims at looked at before the first and after the last; a change runs each again on its own."""
    if not actors:
        return []
    made = ui_call(w, actors[0], project, ep)
    before = made.observe() if made.observe else None
    problems: list[str] = []
    for actor in actors:
        expected = ui_denial(w, ep, actor, project)
        assert expected is not None
        call = dataclasses.replace(made, session=ui_session(w, actor))
        problems += ui_labelled(ep, actor, project, ui_answer_problems(ep, call, expected, ui_send(w, call)))
    changed = made.observe is not None and made.observe() != before
    if made.cleanup:
        made.cleanup()
    if changed:
        return [problem for actor in actors for problem in run_ui_case(w, ep, actor, project)]
    return problems


# Portal routes whose refused call differs with the actor beyond its session (see PER_ACTOR).
UI_PER_ACTOR = {("/login", "POST"), ("/logout", "POST"), ("/account/tokens/{token_id}/revoke", "POST")}


UI_ENDPOINTS = ui_endpoints()


# Only the SQLite pass (tests/conftest.py): each page's answer is its in-process /api/v1 call's, made with
# the user's API session, whose database work the API cells above run on PostgreSQL; the portal adds no
# query of its own (as for tests/integration/test_portal.py).
@pytest.mark.db_independent
@pytest.mark.parametrize("endpoint", UI_ENDPOINTS, ids=str)
def test_portal_route_allows_exactly_what_its_api_call_allows(
    endpoint: Endpoint, request: pytest.FixtureRequest
) -> None:
    key = (endpoint.path, endpoint.method)
    assert key in UI_RULES, f"portal route {endpoint} names no API call: add it to UI_RULES"
    api_route = UI_RULES[key]
    assert api_route is None or api_route in API_RULES, f"{endpoint}: {api_route} is not an API route"
    w: World = request.getfixturevalue("world")
    per_project = api_route is not None and API_RULES[api_route].per_project
    problems = []
    for project in (PRIV, PUB) if per_project else (None,):
        actors = w.actors
        if key not in UI_PER_ACTOR:  # the refusals first, on one shared call (run_endpoint)
            refused = [a for a in actors if ui_denial(w, endpoint, a, project) is not None]
            problems += run_ui_refusals(w, endpoint, refused, project)
            actors = [a for a in actors if a not in refused]
        for actor in actors:
            problems += run_ui_case(w, endpoint, actor, project)
    assert not problems, f"{len(problems)} wrong answers:\n" + "\n".join(problems)


def test_the_portal_table_names_only_existing_routes() -> None:
    routes = {(e.path, e.method) for e in UI_ENDPOINTS}
    assert set(UI_RULES) == routes, "UI_RULES and the portal's routes differ"
