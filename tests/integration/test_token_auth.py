"""Docker token auth end to end: the /v2 gate, the token endpoint, and real clients through both.

The server here is composed in the test the way the app wires it (the gate called by the router
after a route matched, the token endpoint beside /v2), over real accounts, projects and the access
policy, served by uvicorn on a loopback port so skopeo and podman can talk to it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette

from dockyard.accounts.groups import GroupService
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.users import UserService
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.gate import BasicGate, Challenge, Gate, TokenGate
from dockyard.api.oci.routes import OCIRouter
from dockyard.api.oci.streaming import BlobIO
from dockyard.api.token import TokenEndpoint
from dockyard.app import Services, build_services
from dockyard.auth.htpasswd import HtpasswdAuthenticator
from dockyard.auth.interfaces import Principal, PrincipalKind
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.remembered import DEFAULT_TTL, RememberedLogins
from dockyard.auth.scopes import repository_scope
from dockyard.auth.standing import PrincipalStanding
from dockyard.auth.tokens import KeyRing, TokenIssuer, TokenService, libtrust_key_id
from dockyard.config.settings import Settings
from dockyard.observability.metrics import Metrics
from dockyard.projects.interfaces import Role
from dockyard.projects.services import MemberService, ProjectService
from tests.support.oci import write_oci_layout
from tests.support.ociclient import OCIClient, error_codes
from tests.support.server import free_port
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import CommandFailed, ContainerTools

SERVICE = "dockyard-test"
PASSWORDS = {"alice": "alice-developer-pw", "gina": "gina-guest-pw", "root": "root-admin-password"}


@dataclass
class Registry:
    url: str
    host: str
    services: Services
    tokens: TokenService | None = None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT, **kwargs)

    def token(self, *scopes: str, user: str | None = None, **params: str) -> dict[str, Any]:
        auth = (user, PASSWORDS[user]) if user else None
        response = httpx.get(
            f"{self.url}/token",
            params={"service": SERVICE, "scope": list(scopes), **params},
            auth=auth,
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return f"127.0.0.1:{port}", server, thread


def compose(services: Services, gate: Gate, extra_routes: list[Any]) -> Any:
    ctx = OCIContext(services.registry, services.blob_uploads, services.blobs, BlobIO(), Metrics())
    return OCIRouter(ctx, Starlette(routes=extra_routes), gate)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    settings = Settings(datadir=tmp_path_factory.mktemp("token-auth"))
    services = build_services(settings)
    db = services.db
    users, groups, robots = UserService(db), GroupService(db), RobotService(db)
    for name, password in PASSWORDS.items():
        users.create(name, password, admin=name == "root")
    projects, members = ProjectService(db), MemberService(db)
    projects.create("team", public=False)
    projects.create("public", public=True)
    projects.create("vault", public=False)  # nobody but the administrator reads it
    members.add_user("team", "alice", Role.DEVELOPER)
    members.add_user("team", "gina", Role.GUEST)

    authenticator = LocalAuthenticator(
        users, groups, PersonalTokenService(db), robots, InProcessLoginLimiter(50, 60.0)
    )
    policy = AccessPolicy(db)
    tokens = TokenService(KeyRing(db), issuer="dockyard", service=SERVICE, lifetime=300)
    issuer = TokenIssuer(tokens, authenticator, policy, lookup=authenticator)
    standing = PrincipalStanding(policy, authenticator)
    logins = RememberedLogins(authenticator, DEFAULT_TTL, 10_000, time.time)
    gate = TokenGate(tokens, Challenge(SERVICE), logins=logins, policy=policy, standing=standing)
    app = compose(services, gate, TokenEndpoint(issuer, SERVICE).routes())
    host, server, thread = serve(app)
    yield Registry(f"http://{host}", host, services, tokens)
    server.should_exit = True
    thread.join(timeout=10)
    services.close()


def challenge_of(response: httpx.Response) -> dict[str, str]:
    scheme, _, params = response.headers["www-authenticate"].partition(" ")
    assert scheme == "Bearer"
    parsed: dict[str, str] = {}
    for part in params.split('",'):
        key, _, value = part.partition("=")
        parsed[key] = value.strip('"')
    return parsed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the challenge ---------------------------------------------------------------------------
def test_base_without_credentials_is_challenged_to_the_token_endpoint(registry: Registry) -> None:
    response = httpx.get(f"{registry.url}/v2/", timeout=HTTP_TIMEOUT)
    assert response.status_code == 401
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert response.headers["www-authenticate"] == f'Bearer realm="{registry.url}/token",service="{SERVICE}"'
    assert error_codes(response) == ["UNAUTHORIZED"]


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v2/team/app/manifests/latest", "repository:team/app:pull"),
        ("HEAD", "/v2/team/app/blobs/sha256:" + "0" * 64, "repository:team/app:pull"),
        ("GET", "/v2/team/app/tags/list", "repository:team/app:pull"),
        ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
        ("PUT", "/v2/team/app/manifests/v1", "repository:team/app:pull,push"),
        ("DELETE", "/v2/team/app/manifests/sha256:" + "0" * 64, "repository:team/app:delete"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
        (
            "POST",
            "/v2/team/b/blobs/uploads/?mount=sha256:" + "0" * 64 + "&from=public/a",
            "repository:team/b:pull,push repository:public/a:pull",
        ),
    ],
)
def test_each_route_challenges_for_the_scope_it_needs(
    registry: Registry, method: str, path: str, scope: str
) -> None:
    response = httpx.request(method, f"{registry.url}{path}", timeout=HTTP_TIMEOUT)
    assert response.status_code == 401
    assert challenge_of(response) == {"realm": f"{registry.url}/token", "service": SERVICE, "scope": scope}


def test_an_invalid_repository_name_is_a_name_error_not_a_challenge(registry: Registry) -> None:
    response = httpx.get(f"{registry.url}/v2/Team/App/tags/list", timeout=HTTP_TIMEOUT)
    assert response.status_code == 400 and error_codes(response) == ["NAME_INVALID"]


# --- the token endpoint ----------------------------------------------------------------------
def test_developer_gets_pull_and_push_and_pushes_and_pulls(registry: Registry) -> None:
    answer = registry.token("repository:team/app:pull,push", user="alice")
    assert set(answer) >= {"token", "access_token", "expires_in", "issued_at"}
    assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300
    with registry.client(headers=bearer(answer["token"])) as http:
        oci = OCIClient(http)
        pushed = oci.push_image("team/app", "v1")
        got = oci.get_manifest("team/app", "v1")
        assert got.status_code == 200 and got.content == pushed.body
        assert http.get("/v2/").status_code == 200


def test_guest_gets_only_pull_and_a_push_is_denied_with_a_challenge(registry: Registry) -> None:
    with registry.client(
        headers=bearer(registry.token("repository:team/app:pull,push", user="alice")["token"])
    ) as h:
        OCIClient(h).push_image("team/app", "for-guest")
    token = registry.token("repository:team/app:pull,push", user="gina")["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    with registry.client(headers=bearer(token)) as http:
        assert http.get("/v2/team/app/manifests/for-guest").status_code == 200
        denied = http.post("/v2/team/app/blobs/uploads/")
    assert denied.status_code == 401
    assert error_codes(denied) == ["DENIED"]
    assert challenge_of(denied)["error"] == "insufficient_scope"
    assert challenge_of(denied)["scope"] == "repository:team/app:pull,push"


def test_anonymous_token_pulls_public_but_not_private(registry: Registry) -> None:
    with registry.client(
        headers=bearer(registry.token("repository:public/app:pull,push", user="root")["token"])
    ) as h:
        OCIClient(h).push_image("public/app", "v1")
    answer = registry.token("repository:public/app:pull", "repository:team/app:pull")
    claims = jwt.decode(answer["token"], options={"verify_signature": False})
    assert claims["sub"] == "" and claims["access"] == [
        {"type": "repository", "name": "public/app", "actions": ["pull"]}
    ]
    with registry.client(headers=bearer(answer["token"])) as http:
        assert http.get("/v2/public/app/manifests/v1").status_code == 200
        refused = http.get("/v2/team/app/manifests/v1")
    assert refused.status_code == 401 and error_codes(refused) == ["UNAUTHORIZED"]


def test_a_mount_from_a_repository_the_caller_cannot_read_starts_a_plain_upload(registry: Registry) -> None:
    """What containerd sends when it pushes an image it pulled from elsewhere: it must not be refused
    (containerd before 2.1 aborts the push on that 401), nor mount a blob the caller may not read."""
    with registry.client(
        headers=bearer(registry.token("repository:vault/base:pull,push", user="root")["token"])
    ) as h:
        digest = OCIClient(h).push_blob("vault/base", b"a layer only the administrator may read")
    mount = f"/v2/team/mounted/blobs/uploads/?mount={digest}&from=vault/base"
    # One token for both scopes, as containerd asks; alice gets push on the target only.
    token = registry.token("repository:team/mounted:pull,push", "repository:vault/base:pull", user="alice")
    claims = jwt.decode(token["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/mounted", "actions": ["pull", "push"]}]
    with registry.client(headers=bearer(token["token"])) as http:
        started = http.post(mount)
        assert started.status_code == 202 and "Location" in started.headers
        assert http.head(f"/v2/team/mounted/blobs/{digest}").status_code == 404
    with registry.client(auth=("alice", PASSWORDS["alice"])) as http:
        assert http.post(mount).status_code == 202
        assert http.head(f"/v2/team/mounted/blobs/{digest}").status_code == 404
    # Who may read the source gets the mount.
    token = registry.token("repository:team/mounted:pull,push", "repository:vault/base:pull", user="root")
    with registry.client(headers=bearer(token["token"])) as http:
        assert http.post(mount).status_code == 201
        assert http.head(f"/v2/team/mounted/blobs/{digest}").status_code == 200


def test_an_automatic_mount_never_reads_a_project_the_caller_cannot(registry: Registry) -> None:
    with registry.client(
        headers=bearer(registry.token("repository:vault/secret:pull,push", user="root")["token"])
    ) as h:
        digest = OCIClient(h).push_blob("vault/secret", b"bytes only the administrator may read")
    with registry.client(auth=("alice", PASSWORDS["alice"])) as http:
        started = http.post(f"/v2/team/automount/blobs/uploads/?mount={digest}")
        assert started.status_code == 202
        assert http.get(f"/v2/team/automount/blobs/{digest}").status_code == 404
    token = registry.token("repository:team/automount:pull,push", user="alice")["token"]
    with registry.client(headers=bearer(token)) as http:
        assert http.post(f"/v2/team/automount/blobs/uploads/?mount={digest}").status_code == 202
        assert http.get(f"/v2/team/automount/blobs/{digest}").status_code == 404


def test_an_automatic_mount_takes_the_blob_from_a_project_the_caller_may_pull_from(
    registry: Registry,
) -> None:
    """What the spec's automatic mount is for, kept safe: the caller's own rights decide where from
    (a public project, a project it is a member of), not the token, which names only the target."""
    with registry.client(
        headers=bearer(registry.token("repository:public/base:pull,push", user="root")["token"])
    ) as h:
        public = OCIClient(h).push_blob("public/base", b"a layer anyone may pull")
    token = registry.token("repository:team/source:pull,push", user="alice")["token"]
    with registry.client(headers=bearer(token)) as h:
        own = OCIClient(h).push_blob("team/source", b"a layer of alice's own project")
    for digest, target in ((public, "team/from-public"), (own, "team/from-team")):
        token = registry.token(f"repository:{target}:pull,push", user="alice")["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert [entry["name"] for entry in claims["access"]] == [target]  # nothing about the source
        with registry.client(headers=bearer(token)) as http:
            mounted = http.post(f"/v2/{target}/blobs/uploads/?mount={digest}")
            assert mounted.status_code == 201, mounted.text
            assert mounted.headers["Location"] == f"/v2/{target}/blobs/{digest}"
            assert http.get(f"/v2/{target}/blobs/{digest}").status_code == 200
    with registry.client(auth=("alice", PASSWORDS["alice"])) as http:  # Basic credentials alike
        assert http.post(f"/v2/team/basic-mount/blobs/uploads/?mount={public}").status_code == 201
        assert http.head(f"/v2/team/basic-mount/blobs/{public}").status_code == 200


def test_an_automatic_mount_follows_membership_as_it_is_now(registry: Registry) -> None:
    """Not a member of a private project: no mount from it. Made a guest (who may pull): the same
    token, issued before, now mounts from it."""
    ProjectService(registry.services.db).create("guestbook", public=False)
    with registry.client(
        headers=bearer(registry.token("repository:guestbook/base:pull,push", user="root")["token"])
    ) as h:
        digest = OCIClient(h).push_blob("guestbook/base", b"a layer in a project alice is a guest of")
    token = registry.token("repository:team/guest-mount:pull,push", user="alice")["token"]
    mount = f"/v2/team/guest-mount/blobs/uploads/?mount={digest}"
    with registry.client(headers=bearer(token)) as http:
        started = http.post(mount)
        assert started.status_code == 202 and "Location" in started.headers
        assert http.head(f"/v2/team/guest-mount/blobs/{digest}").status_code == 404
        MemberService(registry.services.db).add_user("guestbook", "alice", Role.GUEST)
        assert http.post(mount).status_code == 201
        assert http.head(f"/v2/team/guest-mount/blobs/{digest}").status_code == 200


def test_catalog_scope(registry: Registry) -> None:
    token = registry.token("registry:catalog:*", user="alice")["token"]
    assert (
        httpx.get(f"{registry.url}/v2/_catalog", headers=bearer(token), timeout=HTTP_TIMEOUT).status_code
        == 200
    )
    pull_only = registry.token("repository:team/app:pull", user="alice")["token"]
    assert (
        httpx.get(f"{registry.url}/v2/_catalog", headers=bearer(pull_only), timeout=HTTP_TIMEOUT).status_code
        == 401
    )


def test_wrong_password_and_unknown_user_get_the_same_401(registry: Registry) -> None:
    answers = [
        httpx.get(
            f"{registry.url}/token", params={"service": SERVICE}, auth=(user, password), timeout=HTTP_TIMEOUT
        )
        for user, password in (("alice", "not-her-password"), ("nobody-at-all", "alice-developer-pw"))
    ]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == answers[1].json()
    assert "password" not in answers[0].text.lower() and "user" not in answers[0].text.lower()


@pytest.mark.parametrize(
    "scope",
    [
        "repository:team/app",
        "repository:team/../x:push",
        "repository:*:push",
        "repository:Team/app:pull",
        "junk",
    ],
)
def test_malformed_scopes_are_refused_with_400(registry: Registry, scope: str) -> None:
    response = httpx.get(
        f"{registry.url}/token",
        params={"service": SERVICE, "scope": scope},
        auth=("alice", PASSWORDS["alice"]),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 400
    assert "token" not in response.json()


def test_a_scope_for_another_service_is_refused(registry: Registry) -> None:
    response = httpx.get(f"{registry.url}/token", params={"service": "elsewhere"}, timeout=HTTP_TIMEOUT)
    assert response.status_code == 400


def test_oauth_password_grant_with_offline_access_then_refresh(registry: Registry) -> None:
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORDS["alice"],
        "service": SERVICE,
        "client_id": "containerd-client",
        "access_type": "offline",
        "scope": "",
    }
    first = httpx.post(f"{registry.url}/token", data=form, timeout=HTTP_TIMEOUT)
    assert first.status_code == 200, first.text
    refresh = first.json()["refresh_token"]
    assert first.json()["scope"] == ""
    again = httpx.post(
        f"{registry.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": SERVICE,
            "client_id": "docker",
            "scope": "repository:team/app:pull,push repository:team/other:pull",
        },
        timeout=HTTP_TIMEOUT,
    )
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["scope"] == "repository:team/app:pull,push repository:team/other:pull"
    assert body["refresh_token"] == refresh
    with registry.client(headers=bearer(body["access_token"])) as http:
        assert http.post("/v2/team/app/blobs/uploads/").status_code == 202
    # A refresh token is no access token, and an access token no refresh token.
    assert httpx.get(f"{registry.url}/v2/", headers=bearer(refresh), timeout=HTTP_TIMEOUT).status_code == 401
    bad = httpx.post(
        f"{registry.url}/token",
        data={
            "grant_type": "refresh_token",
            "service": SERVICE,
            "refresh_token": body["access_token"],
            "client_id": "x",
        },
        timeout=HTTP_TIMEOUT,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


def test_get_with_offline_token_returns_a_refresh_token(registry: Registry) -> None:
    answer = registry.token(
        "repository:team/app:pull", user="alice", offline_token="true", client_id="docker"
    )
    assert answer["refresh_token"]
    assert "refresh_token" not in registry.token("repository:team/app:pull", user="alice")


def test_oauth_unsupported_grant_and_wrong_content_type(registry: Registry) -> None:
    assert httpx.post(
        f"{registry.url}/token", data={"grant_type": "client_credentials"}, timeout=HTTP_TIMEOUT
    ).json()["error"] == ("unsupported_grant_type")
    assert (
        httpx.post(
            f"{registry.url}/token",
            content=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=HTTP_TIMEOUT,
        ).status_code
        == 400
    )


# --- tokens that must not work ---------------------------------------------------------------
def forged(registry: Registry, key: Any, kid: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "dockyard",
        "sub": "root",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "kind": "user",
        "access": [{"type": "repository", "name": "team/app", "actions": ["*"]}],
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def test_bad_tokens_get_invalid_token_and_say_nothing_more(registry: Registry) -> None:
    assert registry.tokens is not None
    signing = registry.tokens.keys.signing_key()
    stranger = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    bad = {
        "forged with another key": forged(registry, stranger, signing.kid),
        "unknown kid": forged(registry, stranger, libtrust_key_id(stranger.public_key())),
        "expired": forged(
            registry, signing.private_key, signing.kid, exp=now - 600, nbf=now - 900, iat=now - 900
        ),
        "not yet valid": forged(registry, signing.private_key, signing.kid, nbf=now + 600),
        "wrong audience": forged(registry, signing.private_key, signing.kid, aud="another-registry"),
        "wrong issuer": forged(registry, signing.private_key, signing.kid, iss="someone"),
        "alg none": jwt.encode(
            {"iss": "dockyard", "sub": "root", "aud": SERVICE, "exp": now + 60},
            None,  # type: ignore[arg-type]
            algorithm="none",
            headers={"kid": signing.kid},
        ),
        "garbage": "not.a.token",
    }
    for label, token in bad.items():
        response = httpx.get(
            f"{registry.url}/v2/team/app/tags/list", headers=bearer(token), timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 401, label
        assert challenge_of(response)["error"] == "invalid_token", label
        assert error_codes(response) == ["UNAUTHORIZED"], label
        for word in ("expired", "audience", "issuer", "signature", "kid"):
            assert word not in response.text.lower(), (label, response.text)


def test_oversized_authorization_header_is_refused(registry: Registry) -> None:
    """One limit (api/authorization.py) for every endpoint that takes credentials, each answering in its
    own way (/api/v1: tests/integration/test_api_bad_input.py)."""
    oversized = {"Authorization": "Basic " + "a" * 20000}
    response = httpx.get(
        f"{registry.url}/v2/", headers={"Authorization": "Bearer " + "a" * 20000}, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 431
    assert httpx.get(f"{registry.url}/v2/", headers=oversized, timeout=HTTP_TIMEOUT).status_code == 431
    assert httpx.get(f"{registry.url}/token", headers=oversized, timeout=HTTP_TIMEOUT).status_code == 401


# --- Basic credentials on /v2 ----------------------------------------------------------------
def test_basic_credentials_work_directly_on_v2(registry: Registry) -> None:
    with registry.client(auth=("alice", PASSWORDS["alice"])) as http:
        OCIClient(http).push_image("team/basic", "v1")
        assert http.get("/v2/team/basic/manifests/v1").status_code == 200
    with registry.client(auth=("gina", PASSWORDS["gina"])) as http:
        assert http.get("/v2/team/basic/manifests/v1").status_code == 200
        denied = http.post("/v2/team/basic/blobs/uploads/")
        assert denied.status_code == 403 and error_codes(denied) == ["DENIED"]
    wrong = httpx.get(
        f"{registry.url}/v2/team/basic/tags/list", auth=("alice", "wrong-password!"), timeout=HTTP_TIMEOUT
    )
    assert wrong.status_code == 401 and "Bearer realm=" in wrong.headers["www-authenticate"]
    garbled = httpx.get(
        f"{registry.url}/v2/", headers={"Authorization": "Basic !!!not-base64"}, timeout=HTTP_TIMEOUT
    )
    assert garbled.status_code == 401


# --- real clients ----------------------------------------------------------------------------
@pytest.fixture
def tools(tmp_path: Path) -> Iterator[ContainerTools]:
    sandbox = ContainerTools(tmp_path / "containers")
    yield sandbox
    sandbox.cleanup()


def test_skopeo_pushes_with_credentials_and_a_guest_is_denied(
    registry: Registry, tools: ContainerTools, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=32 * 1024, seed=3)
    remote = f"docker://{registry.host}/team/skopeo:1"
    tools.skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"alice:{PASSWORDS['alice']}",
        layout.transport_ref,
        remote,
    )
    inspected = tools.skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", f"gina:{PASSWORDS['gina']}", remote
    )
    assert inspected.stdout.encode() == layout.blobs[layout.top.digest]
    with pytest.raises(CommandFailed) as denied:
        tools.skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"gina:{PASSWORDS['gina']}",
            layout.transport_ref,
            f"docker://{registry.host}/team/skopeo:guest",
        )
    assert "denied" in denied.value.result.stderr.lower()
    with pytest.raises(CommandFailed) as anonymous:
        tools.skopeo("inspect", "--raw", "--tls-verify=false", "--no-creds", remote)
    assert "401" in anonymous.value.result.stderr or "unauthorized" in anonymous.value.result.stderr.lower()


def test_podman_login_and_push_pull(registry: Registry, tools: ContainerTools, tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=1, layer_size=16 * 1024, seed=4)
    tools.podman("login", "--tls-verify=false", "-u", "alice", "-p", PASSWORDS["alice"], registry.host)
    with pytest.raises(CommandFailed):
        tools.podman("login", "--tls-verify=false", "-u", "alice", "-p", "wrong-password", registry.host)
    image = f"{registry.host}/team/podman:1"
    tools.podman("pull", layout.transport_ref)
    tools.podman("tag", _loaded_image(tools), image)
    tools.podman("push", "--tls-verify=false", image)
    tools.podman("rmi", image)
    tools.podman("pull", "--tls-verify=false", image)


def _loaded_image(tools: ContainerTools) -> str:
    images = json.loads(tools.podman("images", "--format", "json").stdout)
    return str(images[0]["Id"])


# --- htpasswd mode ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    import bcrypt

    workdir = tmp_path_factory.mktemp("htpasswd")
    hashed = bcrypt.hashpw(b"hunter2-but-longer", bcrypt.gensalt(rounds=5)).decode()
    (workdir / "htpasswd").write_text(f"ci:{hashed}\n")
    services = build_services(Settings(datadir=workdir / "data"))
    logins = RememberedLogins(HtpasswdAuthenticator(workdir / "htpasswd"), DEFAULT_TTL, 10_000, time.time)
    gate = BasicGate(logins, "basic-realm")
    host, server, thread = serve(compose(services, gate, []))
    yield Registry(f"http://{host}", host, services)
    server.should_exit = True
    thread.join(timeout=10)
    services.close()


def test_htpasswd_mode_answers_basic_challenges_like_registry2(htpasswd_registry: Registry) -> None:
    response = httpx.get(f"{htpasswd_registry.url}/v2/", timeout=HTTP_TIMEOUT)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="basic-realm"'
    assert (
        httpx.get(f"{htpasswd_registry.url}/v2/", auth=("ci", "wrong"), timeout=HTTP_TIMEOUT).status_code
        == 401
    )
    with htpasswd_registry.client(auth=("ci", "hunter2-but-longer")) as http:
        assert http.get("/v2/").status_code == 200
        OCIClient(http).push_image("any/repo", "v1")
        assert http.get("/v2/_catalog").status_code == 200


def test_skopeo_against_htpasswd_mode(
    htpasswd_registry: Registry, tools: ContainerTools, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=1, layer_size=8 * 1024, seed=5)
    remote = f"docker://{htpasswd_registry.host}/ci/app:1"
    tools.skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "ci:hunter2-but-longer",
        layout.transport_ref,
        remote,
    )
    with pytest.raises(CommandFailed):
        tools.skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "ci:nope", remote)


# --- the gate's cache ------------------------------------------------------------------------
class CountingVerifier:
    def __init__(self, inner: TokenService) -> None:
        self.inner = inner
        self.calls = 0

    def verify(self, token: str) -> Any:
        self.calls += 1
        return self.inner.verify(token)


def test_the_gate_verifies_a_token_once_and_never_trusts_it_past_its_expiry(registry: Registry) -> None:
    assert registry.tokens is not None
    # A token with 5 s left to live (issued 55 s "ago" with the minimum lifetime of 60 s).
    old = TokenService(
        registry.tokens.keys, issuer="dockyard", service=SERVICE, lifetime=60, clock=lambda: time.time() - 55
    )
    principal = Principal(PrincipalKind.USER, "alice")
    token = old.issue(principal, [repository_scope("team/app", "pull")]).token
    counting = CountingVerifier(registry.tokens)
    now = [time.time()]
    gate = TokenGate(counting, Challenge(SERVICE), clock=lambda: now[0])
    scope = {
        "type": "http",
        "method": "GET",
        "query_string": b"",
        "scheme": "http",
        "headers": [(b"host", b"r.test"), (b"authorization", f"Bearer {token}".encode())],
    }

    async def check() -> Any:
        return await gate.check(scope, "manifests", ("team/app", "v1"), "GET")

    for _ in range(50):
        assert asyncio.run(check()) == principal
    assert counting.calls == 1
    now[0] += 6  # past `exp`: the cached verification is gone, the token is verified afresh
    asyncio.run(check())
    assert counting.calls == 2
