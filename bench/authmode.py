"""`--auth`: the same small requests with authentication on, and dockyard's token issuing rate.

distribution runs with htpasswd auth (a Basic header on every request, checked with bcrypt each time, as
registry:2 does). dockyard runs twice: with its own token auth (users, projects, `GET /token`), and in
registry:2's htpasswd mode with the same htpasswd file. See docs/benchmarks.md.
"""

from __future__ import annotations

import base64
import http.client
import json
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import bcrypt

from bench.engines import HttpClientSession
from bench.runner import stopping
from bench.scenarios import RequestMaker, Scenario, small_measure
from bench.seed import IMAGE_REPO, MANIFEST_ACCEPT, Seeded, push_image, seed, small_image
from bench.servers import Server, ServerAuth, start_dockyard, start_references
from bench.smallrequests import SmallRequest

USERNAME, PASSWORD = "bench-puller", "quartz-lantern-harbor-41"  # in the htpasswd file, and a dockyard user
ADMIN_USERNAME, ADMIN_PASSWORD = "admin", "violet-anchor-meadow-73"
ADMIN_PASSWORD_ENV = "DOCKYARD_ADMIN_PASSWORD"
# `htpasswd -B` writes cost 5 unless told otherwise; registry:2's documentation creates the file with it.
BCRYPT_COST = 5
SERVICE = "dockyard"  # dockyard's default auth.token.service
PUBLIC_REPO = "public/app"  # in a public project: anyone may pull, anonymous tokens allowed
HTPASSWD_CANDIDATE = "htpasswd"  # Scenario.candidate of the row run on dockyard in htpasswd mode
TOKEN_CONNECTIONS = 16
# `--self-check --auth`: the null registry takes any credentials and hands out a dummy token.
NULL_SERVER_AUTH = ServerAuth("token", USERNAME, PASSWORD)


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def write_htpasswd(path: Path, username: str, password: str) -> Path:
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    # Apache's htpasswd writes the $2y$ prefix (the same algorithm as $2b$); both servers take either.
    path.write_text(f"{username}:{digest.replace('$2b$', '$2y$', 1)}\n")
    return path


def start_auth_servers(
    stack: ExitStack, workdir: Path, workers: int, source: Path | None
) -> tuple[list[Server], Server, dict[str, Server]]:
    """Both distributions with htpasswd; dockyard with token auth; dockyard in htpasswd mode (same file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(workdir / "htpasswd", USERNAME, PASSWORD)
    references = [stopping(stack, server) for server in start_references(workdir, htpasswd)]
    for reference in references:
        reference.auth = ServerAuth("basic", USERNAME, PASSWORD)
    dockyard = stopping(
        stack,
        start_dockyard(
            workdir / "dockyard",
            workers,
            source,
            auth={"enabled": True},
            env={ADMIN_PASSWORD_ENV: ADMIN_PASSWORD},
        ),
    )
    dockyard.auth = ServerAuth("token", USERNAME, PASSWORD)
    htpasswd_section = {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}}
    compat = stopping(
        stack, start_dockyard(workdir / "dockyard-htpasswd", workers, source, auth=htpasswd_section)
    )
    compat.name = "dockyard-htpasswd"
    compat.auth = ServerAuth("basic", USERNAME, PASSWORD)
    return references, dockyard, {HTPASSWD_CANDIDATE: compat}


def _call(server: Server, method: str, path: str, headers: dict[str, str], body: object = None) -> bytes:
    """One request; anything but 2xx is an error (the bench cannot run on a half-seeded server)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        sent = {**headers, **({"Content-Type": "application/json"} if payload else {})}
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        answer = response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{method} {path} -> {response.status} {answer[:300]!r}")
        return answer
    finally:
        conn.close()


def seed_with_auth(server: Server) -> Seeded:
    """The image the manifest rows read; on dockyard with token auth also the user, projects, membership."""
    if server.auth is None:
        raise ValueError(f"{server.name} has no credentials to seed with")
    user = basic_authorization(server.auth.username, server.auth.password)
    if server.auth.scheme == "basic":
        return seed(server.host, server.port, {"Authorization": user}, minimal=True)
    admin = {"Authorization": basic_authorization(ADMIN_USERNAME, ADMIN_PASSWORD)}
    # A private project the user may pull from (guest), and a public one for anonymous pulls.
    _call(server, "POST", "/api/v1/projects", admin, {"name": IMAGE_REPO.split("/")[0]})
    _call(server, "POST", "/api/v1/projects", admin, {"name": PUBLIC_REPO.split("/")[0], "public": True})
    _call(server, "POST", "/api/v1/users", admin, {"username": USERNAME, "password": PASSWORD})
    member = {"user": USERNAME, "role": "guest"}
    _call(server, "POST", f"/api/v1/projects/{IMAGE_REPO.split('/')[0]}/members", admin, member)
    seeded = seed(server.host, server.port, admin, minimal=True)
    session = HttpClientSession(server.host, server.port, admin)
    try:
        push_image(session, PUBLIC_REPO, small_image(), ["latest"])
    finally:
        session.close()
    return seeded


def token_path(repo: str) -> str:
    return "/token?" + urlencode({"service": SERVICE, "scope": f"repository:{repo}:pull"}, safe=":/")


def fetch_token(server: Server, repo: str, authorization: str) -> str:
    answer = json.loads(_call(server, "GET", token_path(repo), {"Authorization": authorization}))
    return str(answer["token"])


def _manifest_get(use_token: bool) -> RequestMaker:
    """GET the manifest by tag with the server's credentials: a Bearer token fetched once per run (what
    docker does) on a token-auth server when `use_token`, otherwise Basic on every request."""

    def make(server: Server, seeded: Seeded) -> SmallRequest:
        if server.auth is None:
            raise ValueError(f"{server.name} has no credentials")
        authorization = basic_authorization(server.auth.username, server.auth.password)
        if use_token and server.auth.scheme == "token":
            authorization = "Bearer " + fetch_token(server, IMAGE_REPO, authorization)
        headers = {"Accept": MANIFEST_ACCEPT, "Authorization": authorization}
        return SmallRequest("GET", f"/v2/{IMAGE_REPO}/manifests/{seeded.tag}", headers)

    return make


def _user_token(server: Server, seeded: Seeded) -> SmallRequest:
    if server.auth is None:
        raise ValueError(f"{server.name} has no credentials")
    authorization = basic_authorization(server.auth.username, server.auth.password)
    return SmallRequest("GET", token_path(IMAGE_REPO), {"Authorization": authorization})


def _anonymous_token(server: Server, seeded: Seeded) -> SmallRequest:
    return SmallRequest("GET", token_path(PUBLIC_REPO))


def auth_scenarios() -> list[Scenario]:
    tokens = f"c={TOKEN_CONNECTIONS}"
    return [
        Scenario(
            "auth-manifest-get-bearer",
            "auth: manifest GET by tag c=64 (dockyard: Bearer token; distribution: Basic)",
            "req/s",
            8.0,
            small_measure(_manifest_get(use_token=True)),
            target_reference="2.8.2",
        ),
        Scenario(
            "auth-manifest-get-basic",
            "auth: manifest GET by tag c=64 (Basic on both; dockyard token mode)",
            "req/s",
            None,
            small_measure(_manifest_get(use_token=False)),
        ),
        Scenario(
            "auth-manifest-get-htpasswd",
            "auth: manifest GET by tag c=64 (both htpasswd, same file)",
            "req/s",
            8.0,
            small_measure(_manifest_get(use_token=False)),
            candidate=HTPASSWD_CANDIDATE,
            target_reference="2.8.2",
        ),
        Scenario(
            "auth-token-user",
            f"auth: token issuing, user (Basic) + pull scope {tokens}",
            "tokens/s",
            1000.0,
            small_measure(_user_token, TOKEN_CONNECTIONS),
            candidate_only=True,
        ),
        Scenario(
            "auth-token-anonymous",
            f"auth: token issuing, anonymous, public project {tokens}",
            "tokens/s",
            1000.0,
            small_measure(_anonymous_token, TOKEN_CONNECTIONS),
            candidate_only=True,
        ),
    ]
