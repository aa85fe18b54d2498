"""The authorization matrix's half that is not the expectations: who the principals are, what each may
do (Harbor's role table, written out here by hand), which endpoints exist (read from the route tables),
and how a principal calls an endpoint (the Docker token flow, Basic on /v2, sessions or Basic on /api/v1).

Nothing here asks the code under test what is allowed: the permissions below come from Harbor's
`src/common/rbac/project/rbac_role.go` and the issue, so a policy change in dockyard shows up as a
difference instead of being copied into the expectation.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from starlette.routing import compile_path

from tests.support.ociclient import describe, error_codes
from tests.support.timeouts import HTTP_TIMEOUT

# --- what each principal may do ------------------------------------------------------------------
PULL, PUSH, DELETE = "pull", "push", "delete"
PROJECT_READ, PROJECT_UPDATE, PROJECT_DELETE = "project.read", "project.update", "project.delete"
MEMBER_READ, MEMBER_MANAGE = "member.read", "member.manage"
ROBOT_READ, ROBOT_MANAGE, LOG_READ = "robot.read", "robot.manage", "log.read"
# What only system administrators may do inside a project (set its quota): callers who cannot see the
# project still get 404, those who can a 403.
QUOTA_SET = "quota.set"

# Harbor's roles, reduced to what dockyard's endpoints need (rbac_role.go: limitedGuest has no member,
# log or robot access; guest reads members, logs and robots; developer pushes; maintainer deletes
# artifacts and tags; projectAdmin manages the project, its members and its robots).
_LIMITED_GUEST = frozenset({PROJECT_READ, PULL})
_GUEST = _LIMITED_GUEST | {MEMBER_READ, LOG_READ, ROBOT_READ}
_DEVELOPER = _GUEST | {PUSH}
_MAINTAINER = _DEVELOPER | {DELETE}
_PROJECT_ADMIN = _MAINTAINER | {PROJECT_UPDATE, PROJECT_DELETE, MEMBER_MANAGE, ROBOT_MANAGE}
ROLE_GRANTS: dict[str, frozenset[str]] = {
    "limited_guest": _LIMITED_GUEST,
    "guest": _GUEST,
    "developer": _DEVELOPER,
    "maintainer": _MAINTAINER,
    "project_admin": _PROJECT_ADMIN,
}
ALL_GRANTS = _PROJECT_ADMIN | {QUOTA_SET}  # a system administrator's
# A public project: anyone, anonymous included, sees it and pulls from it.
PUBLIC_GRANTS = frozenset({PROJECT_READ, PULL})
# A robot's permission list names registry actions; any of them lets it see the project.
ROBOT_ACTION_GRANTS = {PULL: {PULL, PROJECT_READ}, PUSH: {PUSH, PROJECT_READ}, DELETE: {DELETE, PROJECT_READ}}


@dataclass(frozen=True)
class Actor:
    """One row of the matrix: an account (or nobody) and what it has in the matrix's projects."""

    key: str
    kind: str  # "anonymous" | "user" | "robot"
    username: str | None = None
    secret: str | None = None  # what it shows as Basic credentials: a password, token or robot secret
    password: str | None = None  # a user's password (for /login and /me/password)
    usable: bool = True  # False: disabled or expired; every credential it shows must be refused
    personal_token: bool = False  # its secret is a personal access token (which cannot make tokens)
    admin: bool = False
    role: str | None = None  # its role in every matrix project
    robot_actions: frozenset[str] = frozenset()  # its registry actions in every matrix project
    elsewhere: frozenset[str] = frozenset()  # other projects it has access to (for listings)

    @property
    def signed_in(self) -> bool:
        return self.kind != "anonymous" and self.usable

    def permissions(self, public: bool) -> frozenset[str]:
        if not self.usable:
            return frozenset()
        if self.admin:
            return ALL_GRANTS
        granted: set[str] = set(PUBLIC_GRANTS) if public else set()
        if self.role:
            granted |= ROLE_GRANTS[self.role]
        for action in self.robot_actions:
            granted |= ROBOT_ACTION_GRANTS[action]
        return frozenset(granted)

    def basic(self) -> str | None:
        if self.username is None or self.secret is None:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()


# --- what an endpoint needs --------------------------------------------------------------------
# Endpoint-level needs (anything else is a set of project permissions, all required).
OPEN = "open"  # looks at no credentials at all (health, API docs, logout)
ANYONE = "anyone"  # anonymous welcome, but credentials that are sent must be valid; lists are filtered
LOGIN = "login"  # /v2/: any valid credentials, or a token (an anonymous one too)
ACCOUNT = "account"  # any enabled account, user or robot
USER = "user"  # an enabled user (robots have no password, tokens or sessions)
PASSWORD_USER = "password-user"  # an enabled user signed in with the password, not a personal token
SYSTEM_ADMIN = "system-admin"
# A user in a session opened with single sign-on (OIDC). The matrix has no such actor (test_oidc.py has):
# every actor here is refused, 401 without usable credentials, 403 with.
OIDC_SESSION = "oidc-session"
Need = str | frozenset[str]


@dataclass(frozen=True)
class Rule:
    """The expectation for one endpoint (or one variant of it): what it needs and its success status."""

    need: Need
    ok: int = 200

    @property
    def per_project(self) -> bool:
        return isinstance(self.need, frozenset)


def api_denial(rule: Rule, actor: Actor, public: bool | None) -> int | None:
    """None if the management API must allow the call, else the status it must refuse it with: 401 for
    nobody or refused credentials, 404 where the caller may not even see the project, 403 otherwise."""
    need = rule.need
    if need == OPEN:
        return None
    if isinstance(need, frozenset):
        assert public is not None
        granted = actor.permissions(public)
        if need <= granted:
            return None
        if not actor.signed_in:
            return 401
        return 403 if PROJECT_READ in granted else 404
    if not actor.usable:
        return 401
    if need == ANYONE:
        return None
    if actor.kind == "anonymous":
        return 401
    if need == ACCOUNT:
        return None
    if need == USER:
        return None if actor.kind == "user" else 403
    if need == PASSWORD_USER:
        return None if actor.kind == "user" and not actor.personal_token else 403
    if need == SYSTEM_ADMIN:
        return None if actor.admin else 403
    if need == OIDC_SESSION:
        return 403
    raise AssertionError(f"unknown need {need!r}")


def v2_denial(rule: Rule, actor: Actor, public: bool | None, via_token: bool) -> int | None:
    """Same for /v2: with a token every refusal is a 401 challenge (clients fetch a token for the new
    scope on it); with Basic, right credentials without the right are a 403."""
    need = rule.need
    if not actor.usable:
        return 401
    if actor.kind == "anonymous":
        if not via_token:
            return 401  # no Authorization header at all: always the challenge
        allowed = need == LOGIN or (isinstance(need, frozenset) and need <= PUBLIC_GRANTS and bool(public))
        return None if allowed else 401
    if isinstance(need, frozenset):
        assert public is not None
        allowed = need <= actor.permissions(public)
    else:
        allowed = need in (LOGIN, ACCOUNT)
    if allowed:
        return None
    return 401 if via_token else 403


def token_scope(need: Need, repository: str | None) -> str | None:
    """The scope a client asks the token endpoint for, per the Docker token spec."""
    if need == ACCOUNT:
        return "registry:catalog:*"
    if not isinstance(need, frozenset):
        return None
    assert repository is not None
    actions = [action for action in (PULL, PUSH, DELETE) if action in need]
    return f"repository:{repository}:{','.join(actions)}"


# --- the route tables --------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    path: str  # the route's template, as the table spells it
    method: str
    params: frozenset[str]  # its path parameters

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def v2_endpoints() -> list[Endpoint]:
    """Every (route, method) the /v2 router dispatches."""
    from dockyard.api.oci.routes import _routes

    found = []
    for route in _routes().values():
        params = frozenset(re.findall(r"{(\w+)(?::\w+)?}", route.template))
        found += [Endpoint(route.template, method, params) for method in sorted(route.handlers)]
    return found


def api_endpoints() -> list[Endpoint]:
    """Every (route, method) of the management app, routers included, relative to /api/v1."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Route

    from dockyard.api.management import create_management_app

    app = create_management_app(cast(Any, None))  # only its route table is read
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, Route):
            raise AssertionError(f"{route!r} is not a plain route: the matrix cannot enumerate it")
        params = frozenset(compile_path(route.path)[2])
        found += [Endpoint(route.path, method, params) for method in sorted(route.methods or ())]
    return found


def fill(template: str, **values: str) -> str:
    """A route template with its path parameters filled in; every parameter must be given."""
    names = set(re.findall(r"{(\w+)(?::\w+)?}", template))
    assert names == set(values), f"{template}: parameters {sorted(names)}, given {sorted(values)}"
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values[m.group(1)], template)


# --- calling ------------------------------------------------------------------------------------
@dataclass
class Call:
    """One request to make as the actor, and how to tell whether it changed anything."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    repository: str | None = None  # /v2: the repository the token scope names
    observe: Callable[[], Any] | None = None  # the state this call would change, as the admin sees it
    cleanup: Callable[[], None] | None = None  # puts things back after the case, whatever happened
    check: Callable[[httpx.Response], list[str]] | None = None  # more to check on an allowed answer


class Session:
    """A management API session (cookie + CSRF token), opened with POST /login."""

    def __init__(self, cookie: str, csrf: str) -> None:
        self.cookie = cookie
        self.csrf = csrf

    def headers(self, method: str) -> dict[str, str]:
        out = {"Cookie": self.cookie}
        if method not in ("GET", "HEAD", "OPTIONS"):
            out["X-CSRF-Token"] = self.csrf
        return out


def login(http: httpx.Client, username: str, password: str) -> Session:
    answer = http.post("/api/v1/login", json={"username": username, "password": password})
    assert answer.status_code == 200, describe(answer)
    http.cookies.clear()
    cookie = answer.headers["set-cookie"].split(";", 1)[0]
    return Session(cookie, answer.json()["csrf_token"])


class Caller:
    """Makes the matrix's requests on one shared client, as each actor. Tokens are fetched once per
    actor and scope; a refusal by the token endpoint is remembered too (it is the answer)."""

    def __init__(self, http: httpx.Client, service: str) -> None:
        self.http = http
        self.service = service
        self.sessions: dict[str, Session] = {}  # actor key -> session, for users
        self.tokens: dict[tuple[str, str | None], str | httpx.Response] = {}

    def send(self, call: Call, headers: dict[str, str]) -> httpx.Response:
        self.http.cookies.clear()  # a Set-Cookie from an earlier answer must not ride along
        return self.http.request(
            call.method,
            call.path,
            params=call.params or None,
            json=call.json,
            content=call.content,
            headers={**call.headers, **headers},
        )

    def api(self, actor: Actor, call: Call) -> httpx.Response:
        session = self.sessions.get(actor.key)
        if session is not None:
            return self.send(call, session.headers(call.method))
        basic = actor.basic()
        return self.send(call, {"Authorization": basic} if basic else {})

    def v2_basic(self, actor: Actor, call: Call) -> httpx.Response:
        basic = actor.basic()
        return self.send(call, {"Authorization": basic} if basic else {})

    def v2_token(self, actor: Actor, call: Call, scope: str | None) -> httpx.Response:
        token = self.token(actor, scope)
        if isinstance(token, httpx.Response):
            return token
        return self.send(call, {"Authorization": f"Bearer {token}"})

    def token(self, actor: Actor, scope: str | None) -> str | httpx.Response:
        key = (actor.key, scope)
        if key not in self.tokens:
            params = {"service": self.service, **({"scope": scope} if scope else {})}
            basic = actor.basic()
            answer = self.http.get("/token", params=params, headers={"Authorization": basic} if basic else {})
            self.tokens[key] = answer.json()["token"] if answer.status_code == 200 else answer
        return self.tokens[key]


# --- checking answers ------------------------------------------------------------------------------
API_ERROR_CODES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND"}


def v2_refusal_problems(answer: httpx.Response, status: int) -> list[str]:
    """What is wrong with a /v2 (or /token) refusal: status, the spec's error body, the challenge."""
    if answer.status_code != status:
        return [f"expected {status}, got {answer.status_code}"]
    problems = []
    if answer.request.method != "HEAD":
        try:
            codes = error_codes(answer)
        except AssertionError as exc:
            return [f"not the spec's error body: {exc}"]
        if codes[0] not in ("UNAUTHORIZED", "DENIED"):
            problems.append(f"error code {codes[0]}")
    if status == 401 and not answer.headers.get("www-authenticate", "").startswith(("Bearer ", "Basic ")):
        problems.append("a 401 without a WWW-Authenticate challenge")
    return problems


def api_refusal_problems(answer: httpx.Response, status: int) -> list[str]:
    """What is wrong with a management API refusal: status and the one error format."""
    if answer.status_code != status:
        return [f"expected {status}, got {answer.status_code}"]
    if answer.request.method == "HEAD":
        return []
    try:
        body = answer.json()
        error = body["errors"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return ["not the API's error body"]
    if set(body) != {"errors"} or error.get("code") != API_ERROR_CODES[status]:
        return [f"error body {body!r}"]
    if not isinstance(error.get("message"), str):
        return ["an error without a message"]
    return []


class Counter:
    """Unique suffixes for the things cases create."""

    def __init__(self) -> None:
        self._next: Iterator[int] = itertools.count(1)

    def __call__(self, prefix: str) -> str:
        return f"{prefix}{next(self._next)}"


# --- the world the matrix runs in ------------------------------------------------------------------
class RegistryToken(httpx.Auth):
    """/v2 with a bearer token, as clients send it: one token for pull, push and delete on `repositories`,
    fetched with Basic once and again only when /v2 answers 401 (it expired). Not Basic on every request:
    the matrix's user and robot changes make the server forget remembered logins, and each Basic request
    after that costs it a password hash."""

    requires_request_body = True  # a request sent again after a new token carries its body again

    def __init__(self, url: str, credentials: tuple[str, str], repositories: tuple[str, ...]) -> None:
        self.url = url
        self.credentials = credentials
        self.scopes = [("scope", f"repository:{repo}:pull,push,delete") for repo in repositories]
        self.token: str | None = None

    def fetch(self) -> str:
        challenge = httpx.get(f"{self.url}/v2/", timeout=HTTP_TIMEOUT).headers["www-authenticate"]
        service = challenge.split('service="', 1)[1].split('"', 1)[0]
        params = [("service", service), *self.scopes]
        answer = httpx.get(f"{self.url}/token", params=params, auth=self.credentials, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200, describe(answer)
        return str(answer.json()["token"])

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        if self.token is None:
            self.token = self.fetch()
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self.token = self.fetch()
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


class Admin:
    """The bootstrap administrator: sets everything up through the management API (in a session, so
    argon2 runs once) and /v2 (a bearer token for `repositories`), and looks at state for the cases'
    before/after checks."""

    def __init__(self, url: str, password: str, repositories: tuple[str, ...]) -> None:
        self.http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT)
        self.session = login(self.http, "admin", password)
        auth = RegistryToken(url, ("admin", password), repositories)
        self.registry = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, auth=auth)

    def api(self, method: str, path: str, expect: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        self.http.cookies.clear()
        answer = self.http.request(method, "/api/v1" + path, headers=self.session.headers(method), **kwargs)
        assert answer.status_code in expect, f"admin set-up failed{describe(answer)}"
        return answer.json() if answer.content and answer.status_code != 204 else None

    def status(self, method: str, path: str, **kwargs: Any) -> int:
        """The status the admin gets (paths starting /v2 go to the registry, others to /api/v1)."""
        if path.startswith("/v2/"):
            return self.registry.request(method, path, **kwargs).status_code
        self.http.cookies.clear()
        headers = self.session.headers(method)
        return self.http.request(method, "/api/v1" + path, headers=headers, **kwargs).status_code

    def close(self) -> None:
        self.http.close()
        self.registry.close()
