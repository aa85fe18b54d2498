"""OpenID Connect single sign-on against a real provider (oidc-provider, tests/support/oidc.py) and a
real `dockyard serve`, over HTTP as a browser: the login creates and maps the user (groups, system
administrator), the CLI secret works with /token and the API and dies when replaced, and the abuse
cases are refused: a replayed callback, a state finished in another browser, a missing binding, an
open redirect through `next`, a subject that takes another's name, a disabled user. (The ID token's
own checks, with tokens no real provider signs: tests/unit/oidc/test_idtoken.py. The browser flow:
tests/e2e/test_portal.py.)"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.oidc import RunningProvider, login_with_http, provider_and_dockyard
from tests.support.portal import PortalBrowser, signed_out
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "oidc-admin-Passw0rd")
SECRET = re.compile(r'data-copy="(dyc_[A-Za-z0-9_-]+)"')


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningProvider, RunningServer]]:
    with provider_and_dockyard(tmp_path_factory.mktemp("oidc"), ADMIN[1]) as (provider, server):
        with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as admin:
            assert admin.post("/api/v1/projects", json={"name": "dev", "public": False}).status_code == 201
            member = {"group": "developers", "role": "developer"}
            assert admin.post("/api/v1/projects/dev/members", json=member).status_code == 201
        yield provider, server


@pytest.fixture
def server(stack: tuple[RunningProvider, RunningServer]) -> RunningServer:
    return stack[1]


@pytest.fixture
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield http


def to_provider(browser: PortalBrowser, next_path: str = "/ui/projects") -> str:
    """Click "Log in with ...": the provider's authorization URL the portal sends the browser to."""
    answer = browser.get("/ui/oidc/login", params={"next": next_path})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def back_from_provider(
    server: RunningServer, browser: PortalBrowser, user: str, next_path: str = "/ui/projects"
) -> str:
    """The callback URL (with code and state) the provider sends the browser back to, logged in as user."""
    return login_with_http(browser.http, to_provider(browser, next_path), user, server.url)


def sso_browser(server: RunningServer, user: str) -> PortalBrowser:
    browser = PortalBrowser(server.url)
    answer = browser.http.get(back_from_provider(server, browser, user))
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/projects"), answer.text
    return browser


def test_the_login_page_offers_single_sign_on(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/ui/login", params={"next": "/ui/projects/dev"}, timeout=HTTP_TIMEOUT)
    assert 'href="/ui/oidc/login?next=/ui/projects/dev"' in page.text.replace("%2F", "/")
    assert "Log in with Example SSO" in page.text


def test_the_authorization_request_uses_pkce_state_nonce_and_the_configured_redirect(
    stack: tuple[RunningProvider, RunningServer],
) -> None:
    provider, server = stack
    with PortalBrowser(server.url) as browser:
        answer = browser.get(
            "/ui/oidc/login", params={"next": "/ui/projects"}, headers={"Host": "evil.example"}
        )
        location = urlsplit(answer.headers["location"])
        query = {key: values[0] for key, values in parse_qs(location.query).items()}
        assert f"{location.scheme}://{location.netloc}" == provider.issuer
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
        # From the configuration, never from the request's Host.
        assert query["redirect_uri"] == f"{server.url}/ui/oidc/callback"
        assert query["scope"] == "openid profile email groups"
        cookie = answer.headers["set-cookie"].lower()
        assert cookie.startswith("dockyard_oidc=")
        for attribute in ("httponly", "samesite=lax", "path=/", "max-age=600"):
            assert attribute in cookie


def test_a_login_creates_the_user_with_their_groups_and_admin_standing(
    server: RunningServer, admin: httpx.Client
) -> None:
    with sso_browser(server, "alice") as alice:
        assert alice.get("/ui/projects/dev").status_code == 200  # through the developers group
        account = alice.get("/ui/account")
        assert "single sign-on" in account.text and "Make a new CLI secret" in account.text
    user = admin.get("/api/v1/users/alice").json()
    assert (user["source"], user["admin"], user["email"]) == ("oidc", True, "alice@example.com")
    with sso_browser(server, "bob") as bob:  # a developer, not an administrator
        assert bob.get("/ui/projects/dev").status_code == 200
        assert admin.get("/api/v1/users/bob").json()["admin"] is False
    with sso_browser(server, "carol") as carol:  # in no group
        assert carol.get("/ui/projects/dev").status_code == 404
        assert admin.get("/api/v1/users/carol").json()["admin"] is False


def test_the_cli_secret_is_shown_once_works_as_a_password_and_dies_when_replaced(
    server: RunningServer,
) -> None:
    with sso_browser(server, "bob") as bob:
        made = bob.submit("/ui/account/cli-secret")
        assert made.status_code == 200
        first = SECRET.search(made.text)
        assert first, made.text
        assert "dyc_" not in bob.get("/ui/account").text  # shown once
        secret = first.group(1)
        token = httpx.get(
            f"{server.url}/token",
            params={"service": "dockyard", "scope": "repository:dev/app:push"},
            auth=("bob", secret),
            timeout=HTTP_TIMEOUT,
        )
        assert token.status_code == 200
        assert (
            httpx.get(f"{server.url}/api/v1/me", auth=("bob", secret), timeout=HTTP_TIMEOUT).json()["name"]
            == "bob"
        )
        grant = {"grant_type": "password", "username": "bob", "password": secret, "service": "dockyard"}
        offline = httpx.post(
            f"{server.url}/token",
            data={**grant, "client_id": "t", "access_type": "offline"},
            timeout=HTTP_TIMEOUT,
        )
        refresh = offline.json()["refresh_token"]
        # The secret cannot make secrets or personal tokens: a leaked one, replaced, leaves none behind.
        assert (
            httpx.post(
                f"{server.url}/api/v1/me/cli-secret", auth=("bob", secret), timeout=HTTP_TIMEOUT
            ).status_code
            == 403
        )
        personal = httpx.post(
            f"{server.url}/api/v1/me/tokens", json={"name": "x"}, auth=("bob", secret), timeout=HTTP_TIMEOUT
        )
        assert personal.status_code == 403
        again = SECRET.search(bob.submit("/ui/account/cli-secret").text)
        assert again and again.group(1) != secret
        assert (
            httpx.get(f"{server.url}/api/v1/me", auth=("bob", secret), timeout=HTTP_TIMEOUT).status_code
            == 401
        )  # at once
        again_grant = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": "dockyard",
            "client_id": "t",
        }
        assert (
            httpx.post(f"{server.url}/token", data=again_grant, timeout=HTTP_TIMEOUT).json()["error"]
            == "invalid_grant"
        )
        assert (
            httpx.get(
                f"{server.url}/api/v1/me", auth=("bob", again.group(1)), timeout=HTTP_TIMEOUT
            ).status_code
            == 200
        )
    # Users with a password have no CLI secret.
    assert (
        httpx.post(f"{server.url}/api/v1/me/cli-secret", auth=ADMIN, timeout=HTTP_TIMEOUT).status_code == 403
    )


def test_a_replayed_callback_is_refused(server: RunningServer) -> None:
    with PortalBrowser(server.url) as browser:
        callback = back_from_provider(server, browser, "carol")
        binding = browser.http.cookies.get("dockyard_oidc")
        assert browser.http.get(callback).status_code == 303
    with PortalBrowser(server.url) as replay:
        replay.http.cookies.set("dockyard_oidc", binding or "")
        answer = replay.http.get(callback)
        assert answer.status_code == 401 and "log in again" in answer.text
        assert "dockyard_ui=" not in answer.headers.get("set-cookie", "")


def test_a_state_cannot_be_finished_in_another_browser(server: RunningServer) -> None:
    # Login CSRF: the attacker gets a code for their own account and sends the victim the callback URL.
    with PortalBrowser(server.url) as attacker, PortalBrowser(server.url) as victim:
        callback = back_from_provider(server, attacker, "carol")
        no_binding = victim.http.get(callback)
        assert no_binding.status_code == 400 and "another browser" in no_binding.text
        to_provider(victim)  # the victim has a login of their own under way: another binding
        other_binding = victim.http.get(callback)
        assert other_binding.status_code == 401 and "another browser" in other_binding.text
        assert "dockyard_ui=" not in other_binding.headers.get("set-cookie", "")
        # The state still works in the browser that started it (the refusals did not use it up).
        assert attacker.http.get(callback).status_code == 303


def test_a_forged_or_unknown_state_and_a_provider_error_are_refused(server: RunningServer) -> None:
    with PortalBrowser(server.url) as browser:
        callback = back_from_provider(server, browser, "carol")
        forged = re.sub(r"state=[^&]+", "state=forged-state", callback)
        assert browser.http.get(forged).status_code == 401
        denied = browser.http.get(
            "/ui/oidc/callback",
            params={"error": "access_denied<script>", "error_description": "<img src=x onerror=alert(1)>"},
        )
        assert denied.status_code == 401
        assert (
            "access_denied" in denied.text and "<script>" not in denied.text and "onerror" not in denied.text
        )


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/api/v1/me", "javascript:alert(1)"],
)
def test_next_never_leaves_the_portal(server: RunningServer, target: str) -> None:
    with PortalBrowser(server.url) as browser:
        answer = browser.http.get(back_from_provider(server, browser, "carol", target))
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/projects")
    with PortalBrowser(server.url) as browser:
        answer = browser.http.get(back_from_provider(server, browser, "carol", "/ui/projects/dev?page=2"))
        assert answer.headers["location"] == "/ui/projects/dev?page=2"


def test_another_subject_cannot_take_over_an_accounts_name(
    server: RunningServer, admin: httpx.Client
) -> None:
    sso_browser(server, "alice").close()  # alice's account is bound to her subject
    with PortalBrowser(server.url) as mallory:
        answer = mallory.http.get(back_from_provider(server, mallory, "mallory"))  # preferred_username: alice
        assert answer.status_code == 403 and "another single sign-on subject" in answer.text
    # Nor a local account of the same name: the provider's "admin" is not dockyard's administrator.
    with PortalBrowser(server.url) as impostor:
        answer = impostor.http.get(back_from_provider(server, impostor, "admin"))
        assert answer.status_code == 403 and "a local user with this name exists" in answer.text
        assert "dockyard_ui=" not in answer.headers.get("set-cookie", "")
    assert admin.get("/api/v1/users/admin").json()["source"] == "local"


def test_disabling_the_user_ends_the_session_and_refuses_the_next_login(
    server: RunningServer, admin: httpx.Client
) -> None:
    with sso_browser(server, "bob") as bob:
        assert bob.get("/ui/projects").status_code == 200
        assert admin.patch("/api/v1/users/bob", json={"disabled": True}).status_code == 200
        assert signed_out(bob.get("/ui/projects"))
        assert bob.http.get(back_from_provider(server, bob, "bob")).status_code == 403
    assert admin.patch("/api/v1/users/bob", json={"disabled": False}).status_code == 200


def test_logout_ends_the_session_on_the_server(server: RunningServer) -> None:
    with sso_browser(server, "carol") as carol:
        kept = carol.http.cookies.get("dockyard_ui")
        assert carol.submit("/ui/logout").status_code == 303
    with PortalBrowser(server.url) as copy:
        copy.http.cookies.set("dockyard_ui", kept or "")
        assert signed_out(copy.get("/ui/projects"))


def test_an_administrator_can_test_the_provider_and_no_one_else(
    server: RunningServer, admin: httpx.Client
) -> None:
    found = admin.post("/api/v1/system/oidc/test")
    assert found.status_code == 200, found.text
    body = found.json()
    assert (body["ok"], body["error"], body["redirect_uri"]) == (True, None, f"{server.url}/ui/oidc/callback")
    assert body["signing_keys"] >= 1 and body["token_endpoint"].endswith("/token")
    with sso_browser(server, "carol") as carol:  # not an administrator
        made = SECRET.search(carol.submit("/ui/account/cli-secret").text)
        assert made
    assert (
        httpx.post(
            f"{server.url}/api/v1/system/oidc/test", auth=("carol", made.group(1)), timeout=HTTP_TIMEOUT
        ).status_code
        == 403
    )
    assert httpx.post(f"{server.url}/api/v1/system/oidc/test", timeout=HTTP_TIMEOUT).status_code == 401
    deadline = time.monotonic() + 10  # the audit log writes in batches about once a second
    while not (
        checked := admin.get("/api/v1/audit", params={"action": "check", "resource": "auth.oidc"}).json()
    ):
        assert time.monotonic() < deadline, "the test was not audited"
        time.sleep(0.2)
    assert [(event["actor"], event["detail"]["ok"]) for event in checked] == [("admin", True)]


def test_the_sign_in_page_shows_the_provider_without_its_secret_and_tests_it(
    stack: tuple[RunningProvider, RunningServer],
) -> None:
    provider, server = stack
    with PortalBrowser(server.url) as admin:
        assert admin.login(*ADMIN).status_code == 303
        page = admin.get("/ui/admin/sign-in")
        assert page.status_code == 200 and provider.issuer in page.text
        assert f"{server.url}/ui/oidc/callback" in page.text and provider.client_secret not in page.text
        assert "No LDAP directory is configured" in page.text
        assert admin.submit("/ui/admin/sign-in/oidc-test", csrf=None).status_code == 403
        tested = admin.submit("/ui/admin/sign-in/oidc-test")
        assert tested.status_code == 200 and "The provider answered" in tested.text
        assert provider.client_secret not in tested.text
        assert admin.submit("/ui/admin/sign-in/ldap-test").status_code == 404  # no directory here
    with sso_browser(server, "carol") as carol:  # signed on, but no administrator
        assert carol.get("/ui/admin/sign-in").status_code == 403
        assert carol.submit("/ui/admin/sign-in/oidc-test").status_code == 403
