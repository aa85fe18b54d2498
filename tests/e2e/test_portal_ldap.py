"""Directory users in a real browser: Debian's Chromium, headless, through Playwright, against a real
OpenLDAP `slapd` (StartTLS) behind a real `dockyard serve`. A directory user logs in with their directory
password and sees what their directory groups give them: a member of the administrators' group gets the
administration pages, a member of a group with a project role sees that project and nothing else; a wrong
password is refused on the login page; logout ends the session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.server import RunningServer, start_server
from tests.support.slapd import USERS, start_slapd
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "portal-ldap-e2e-Passw0rd")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("portal-ldap-e2e")
    slapd = start_slapd(root / "slapd", tls=True)
    ldap = slapd.dockyard_ldap(admin_groups=["registry-admins"])
    try:
        server = start_server(
            root / "server",
            {"auth": {"enabled": True, "ldap": ldap}},
            env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
        )
    except BaseException:
        slapd.stop()
        raise
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
            for name in ("devteam", "secret-plans"):
                assert api.post("/projects", json={"name": name, "public": False}).status_code == 201
            # The directory's `developers` group (alice, bob) is a developer of devteam only.
            member = {"group": "developers", "role": "developer"}
            assert api.post("/projects/devteam/members", json=member).status_code == 201, "group member"
        yield server
    finally:
        server.stop()
        slapd.stop()


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_directory_users_log_in_and_see_what_their_groups_give_them(
    registry: RunningServer, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=registry.url)
    page = context.new_page()
    # A CSP violation or a script error shows up on the console; the refusals (401, 403, 404) the test
    # asks for show up there too, as failed loads, and are checked where they are asked for.
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.text} {m.location}")
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))

    log_in(page, "bob", "not-bobs-password")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/ui/login"))

    # bob: in `developers`, not in `registry-admins`.
    log_in(page, "bob", USERS["bob"].password)
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_role("link", name="devteam")).to_be_visible()
    expect(page.get_by_role("link", name="secret-plans")).to_have_count(0)
    expect(page.get_by_text("New project")).to_have_count(0)
    page.get_by_role("link", name="devteam").click()
    expect(page.get_by_role("heading", name=re.compile("devteam"))).to_be_visible()
    assert page.goto("/ui/projects/secret-plans").status == 404  # names nothing it may not see
    assert page.goto("/ui/admin/users").status == 403
    page.goto("/ui/projects")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    assert page.goto("/ui/projects").url.split("?")[0].endswith("/ui/login")

    # alice: in `registry-admins`: a system administrator, whatever the projects' members say.
    log_in(page, "alice", USERS["alice"].password)
    expect(page.get_by_text("New project")).to_be_visible()
    expect(page.get_by_role("link", name="secret-plans")).to_be_visible()
    page.goto("/ui/admin/users")
    row = page.get_by_role("row").filter(has_text="alice")
    expect(row).to_contain_text("ldap")  # made at her first login, from the directory
    assert problems == [], problems
    context.close()
