"""Single sign-on in a real browser: Debian's Chromium, headless, through Playwright, against a real
OpenID provider (oidc-provider, tests/support/oidc.py) and a real `dockyard serve`. Log in with the
provider's button, its login and consent pages, land on the page asked for as the provider's user, make a
CLI secret (shown once, with a copy button) and use it with /token, log out.

The abuse cases (replays, other browsers, open redirects, impostors): tests/integration/test_oidc.py.
With DOCKYARD_UI_SCREENSHOTS=<dir> it saves the login and account pages there, as test_portal.py does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_portal import shoot
from tests.support.oidc import RunningProvider, provider_and_dockyard
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "portal-oidc-e2e-Passw0rd")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningProvider, RunningServer]]:
    with provider_and_dockyard(tmp_path_factory.mktemp("portal-oidc-e2e"), ADMIN[1]) as both:
        yield both


def test_sign_on_at_the_provider_make_a_cli_secret_and_log_out(
    stack: tuple[RunningProvider, RunningServer], browser: Browser
) -> None:
    provider, server = stack
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    # Loopback only: the provider's development pages ask for web fonts from the internet; refused here.
    context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), lambda route: route.abort())
    page = context.new_page()
    problems: list[str] = []  # a CSP violation or a script error on dockyard's pages (not the provider's)
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.text} {m.location}")
            if m.type == "error" and not page.url.startswith(provider.issuer)
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto("/ui/projects")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    shoot(page, "login-sso")
    page.get_by_role("link", name="Log in with Example SSO").click()
    # The provider's own pages: its login form, then its consent form.
    expect(page).to_have_url(re.compile("^" + re.escape(provider.issuer) + "/interaction/"))
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()

    expect(page).to_have_url(f"{server.url}/ui/projects")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_role("link", name="alice")).to_be_visible()
    expect(page.get_by_text("New project")).to_be_visible()  # an administrator: the provider's admin group

    page.get_by_role("link", name="alice").click()
    expect(page.get_by_text("single sign-on")).to_be_visible()
    page.get_by_role("button", name="Make a new CLI secret").click()
    copy = page.get_by_role("button", name=re.compile("^Copy: dyc_"))
    secret = copy.get_attribute("data-copy")
    assert secret and secret.startswith("dyc_")
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shoot(page, "account")
    scope = {"service": "dockyard", "scope": "registry:catalog:*"}
    assert (
        httpx.get(
            f"{server.url}/token", params=scope, auth=("alice", secret), timeout=HTTP_TIMEOUT
        ).status_code
        == 200
    )
    page.goto("/ui/account")
    expect(page.get_by_role("button", name=re.compile("^Copy: dyc_"))).to_have_count(0)  # shown once

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.goto("/ui/projects")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    assert problems == [], problems
    context.close()
