"""The web portal in a real browser: Debian's Chromium, headless, driven by Playwright (never its own
downloaded browsers). Log in, create a project, push an image with skopeo, find it, open the artifact
page (layers, manifest), copy the pull command, log out; browse a layer and diff two tags; add, move and
delete tags; a robot's secret used with skopeo; a job's page followed live, a GC dry run, a forged form
and a guest who sees only their project.

With DOCKYARD_UI_SCREENSHOTS=<dir> it also saves the main pages at 1280 and 390 px wide there (how
docs/ui.md's pictures are made).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.integration.test_inventory import push
from tests.support.layers import Member, file, layer, whiteout
from tests.support.oci import write_oci_layout
from tests.support.ociclient import OCI_LAYER, OCIClient
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

ADMIN = ("admin", "portal-e2e-Passw0rd")
WIDTHS = {"wide": 1280, "phone": 390}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("portal-e2e"),
        # A job runner: the GC dry run's page follows its job.
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield server
    server.stop()


def shoot(page: Page, name: str) -> None:
    directory = os.environ.get("DOCKYARD_UI_SCREENSHOTS")
    if not directory:
        return
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 800})
        page.screenshot(path=str(Path(directory) / f"ui-{name}-{label}.png"))
    page.set_viewport_size({"width": WIDTHS["wide"], "height": 800})


def test_log_in_create_push_browse_copy_and_log_out(
    registry: RunningServer, browser: Browser, tools: ContainerTools, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=registry.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=registry.url)
    page = context.new_page()
    problems: list[str] = []  # a CSP violation or a script error shows up on the console
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    shoot(page, "login")
    page.get_by_label("Username").fill(ADMIN[0])
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    assert [p for p in problems if "status of 401" not in p] == [], problems  # the refusal is a 401
    problems.clear()
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_label("Password").press("Enter")  # the keyboard works as well as the mouse
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()

    page.get_by_text("New project").click()
    page.get_by_label("Name", exact=True).fill("webshop")
    page.get_by_label("Public (anyone may pull)").check()
    page.get_by_label("Quota in GiB (empty: none)").fill("5")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name=re.compile("^webshop"))).to_be_visible()
    expect(page.get_by_text("0 repositories")).to_be_visible()

    layout = write_oci_layout(tmp_path / "image", layers=3, layer_size=48 * 1024, seed=7)
    destination = f"docker://{registry.host}/webshop/frontend:1.0"
    tools.skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", ":".join(ADMIN), layout.transport_ref, destination
    )

    page.reload()
    page.get_by_role("link", name="webshop/frontend").click()
    expect(page.get_by_role("heading", name="webshop/frontend")).to_be_visible()
    expect(page.locator(".artifact .tag").first).to_contain_text("1.0")
    shoot(page, "repository")

    page.get_by_role("link", name=layout.top.digest[:19]).click()
    expect(page.get_by_role("heading", name="Layers")).to_be_visible()
    expect(page.locator("table.layers tbody tr")).to_have_count(3)
    expect(page.get_by_label("Manifest JSON")).to_contain_text('"schemaVersion": 2')
    shoot(page, "artifact")

    command = f"docker pull {registry.host}/webshop/frontend@{layout.top.digest}"
    button = page.get_by_role("button", name=f"Copy: {command}")
    assert button.get_attribute("data-copy") == command
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == command

    page.get_by_role("link", name="Projects", exact=True).first.click()
    page.get_by_label("Search").fill("webs")
    expect(page.locator("#results")).to_contain_text("1 project")  # htmx swapped the table in
    shoot(page, "projects")
    page.get_by_label("Search").fill("nothing-like-it")
    expect(page.locator("#results")).to_contain_text("0 projects")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.goto("/ui/projects")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    assert problems == [], problems
    context.close()


def log_in(page: Page) -> None:
    page.goto("/ui/login")
    page.get_by_label("Username").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_browse_a_layer_download_a_file_and_diff_two_tags(registry: RunningServer, browser: Browser) -> None:
    """File names are the pusher's: none of the hostile ones may run a script or open a dialog."""
    hostile = ["<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>']
    base = layer([Member("dir", "etc"), file("etc/os-release", b"ID=debian\n"), file("etc/old", b"o")])
    top = layer(
        [whiteout("etc/old"), file("etc/os-release", b"ID=debian\nVERSION_ID=13\n")]
        + [file(f"srv/{name}", b"hostile") for name in hostile]
        + [file("srv/<script>alert(3)</script>", b"script")]
    )
    with httpx.Client(base_url=registry.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        assert http.post("/api/v1/projects", json={"name": "files"}).status_code == 201
        oci = OCIClient(http)
        push(oci, "files/app", "1", [(OCI_LAYER, base)])
        push(oci, "files/app", "2", [(OCI_LAYER, base), (OCI_LAYER, top)])

    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=registry.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page)

    page.goto("/ui/repositories/files/app/-/artifacts/2")
    page.get_by_role("link", name="Files of layer 2").click()
    expect(page.get_by_role("heading", name=re.compile("^Layer 2 of 2"))).to_be_visible()
    page.get_by_role("link", name="etc/").click()
    expect(page.locator("table.files")).to_contain_text("whiteout deletes old")
    page.get_by_role("link", name="..").click()
    page.get_by_role("link", name="srv/").click()
    for name in hostile:
        expect(page.locator("table.files")).to_contain_text(name)  # shown as text
    shoot(page, "layer")
    with page.expect_download() as download_info:
        page.get_by_role("link", name=f"Download /srv/{hostile[0]}").click()
    download = download_info.value
    assert Path(download.path()).read_bytes() == b"hostile"
    assert "<" not in download.suggested_filename and "/" not in download.suggested_filename
    page.get_by_role("link", name="Merged", exact=True).click()
    expect(page.locator("table.files")).to_contain_text(hostile[1])
    page.get_by_role("link", name="<script>alert(3)</").click()  # a directory: a name holds no slash
    expect(page.locator("table.files")).to_contain_text("script>")

    page.goto("/ui/repositories/files/app/-/artifacts/1")
    page.get_by_role("link", name="Compare with another tag").click()
    page.get_by_label("To (tag, digest, or REPOSITORY:TAG)").fill("2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("table.diff-files")).to_contain_text("/etc/old")
    expect(page.locator("p.facts").first).to_contain_text("1 layer shared, 1 added, 0 removed")
    shoot(page, "diff")
    assert dialogs == [], dialogs
    assert page.evaluate("typeof window.alert") == "function"
    assert problems == [], problems
    context.close()


def test_add_move_and_delete_tags_and_delete_artifacts_in_bulk(
    registry: RunningServer, browser: Browser
) -> None:
    with httpx.Client(base_url=registry.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        assert http.post("/api/v1/projects", json={"name": "tagged"}).status_code == 201
        oci = OCIClient(http)
        one = oci.push_image("tagged/app", "1", seed="one").digest
        oci.push_image("tagged/app", "2", seed="two")
        doomed = [oci.push_image("tagged/app", None, seed=f"old-{i}").digest for i in range(2)]

    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=registry.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    questions: list[str] = []  # every deleting form asks first (static/confirm.js)
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    log_in(page)

    page.goto("/ui/repositories/tagged/app/-/artifacts/1")
    page.get_by_label("Add a tag").fill("stable")
    page.get_by_role("button", name="Tag", exact=True).click()
    expect(page.locator("dl .tag", has_text="stable")).to_be_visible()

    page.goto("/ui/repositories/tagged/app/-/artifacts/2")
    page.get_by_label("Add a tag").fill("stable")
    page.get_by_role("button", name="Tag", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("names another artifact")
    page.get_by_label("Add a tag").fill("stable")
    page.get_by_label("move it here if it names another artifact").check()
    page.get_by_role("button", name="Tag", exact=True).click()
    expect(page.locator("dl .tag", has_text="stable")).to_be_visible()
    shoot(page, "tags")
    page.get_by_role("button", name="Delete tag stable").click()
    expect(page.locator("dl .tag", has_text="stable")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/-/artifacts/sha256:"))  # still on the artifact page
    assert questions == ["Delete the tag stable?"], questions

    page.goto("/ui/repositories/tagged/app")
    for digest in doomed:
        page.get_by_label(f"Select {digest[:19]}").check()
    page.get_by_role("button", name="Delete the ticked artifacts").click()
    expect(page.get_by_role("status")).to_have_text("Deleted 2 artifacts.")
    expect(page.locator(".artifact")).to_have_count(2)
    assert questions[-1] == "Delete the ticked artifacts, with all their tags?"
    assert one in page.content()
    assert [p for p in problems if "status of 409" not in p] == [], problems  # the refusal is a 409
    context.close()


def test_a_robot_is_made_its_secret_copied_once_and_used_with_skopeo(
    registry: RunningServer, browser: Browser, tools: ContainerTools
) -> None:
    with httpx.Client(base_url=registry.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        assert http.post("/api/v1/projects", json={"name": "botyard"}).status_code == 201
        OCIClient(http).push_image("botyard/app", "1", seed="robot")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=registry.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=registry.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page)

    page.goto("/ui/projects/botyard")
    page.get_by_role("link", name="Robot accounts").click()
    page.get_by_label(re.compile(r"^Name")).fill("ci")
    page.get_by_label("Description").fill("<b>builds</b>")
    page.get_by_label("push").check()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="robot$botyard+ci is ready")).to_be_visible()
    shoot(page, "robot-secret")
    button = page.locator(".pull button.copy")
    secret = str(button.get_attribute("data-copy"))
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.get_by_role("cell", name="<b>builds</b>")).to_be_visible()  # shown as text

    tools.skopeo(
        "inspect", "--tls-verify=false", "--creds", f"robot$botyard+ci:{secret}",
        f"docker://{registry.host}/botyard/app:1",
    )
    page.reload()  # the form again: the API refuses the name taken (409), and no secret comes back
    expect(page.get_by_role("alert")).to_contain_text("already exists")
    assert secret not in page.content()
    page.goto("/ui/projects/botyard/robots")
    assert secret not in page.content()
    page.get_by_role("link", name="robot$botyard+ci").click()
    expect(page.get_by_role("button", name="Make a new secret")).to_be_visible()
    assert secret not in page.content()
    assert [p for p in problems if "status of 409" not in p] == [], problems
    context.close()


def test_a_gc_dry_run_is_followed_live_and_a_guest_sees_only_their_project(
    registry: RunningServer, browser: Browser
) -> None:
    guest = ("visitor", "visitor-Passw0rd-1")
    with httpx.Client(base_url=registry.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        for name in ("guestbook", "hidden"):
            assert http.post("/api/v1/projects", json={"name": name}).status_code == 201
            OCIClient(http).push_image(f"{name}/app", "1", seed=name)
        user = {"username": guest[0], "password": guest[1]}
        assert http.post("/api/v1/users", json=user).status_code == 201
        member = {"user": guest[0], "role": "guest"}
        assert http.post("/api/v1/projects/guestbook/members", json=member).status_code == 201
        # A job that takes 3 s: its page must follow it to the end without a reload.
        slow = http.post("/api/v1/jobs", json={"kind": "selftest", "params": {"seconds": 3}}).json()["id"]
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=registry.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page)

    page.goto(f"/ui/admin/jobs/{slow}")
    expect(page.locator("#job-state dd").first).to_have_text(re.compile("^(queued|running)"))
    expect(page.locator("#job-state dd").first).to_have_text("succeeded", timeout=30_000)  # htmx, no reload

    page.goto("/ui/admin/gc")
    page.get_by_role("button", name="Start").click()  # a dry run: the form's default
    expect(page).to_have_url(re.compile(r"/ui/admin/jobs/\d+$"))
    expect(page.get_by_role("heading", name=re.compile(r"Job #\d+: gc"))).to_be_visible()
    expect(page.locator("#job-state dd").first).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_label("Result JSON")).to_contain_text('"dry_run": true')
    shoot(page, "gc-job")
    page.goto("/ui/projects/guestbook/policies")  # the retention rules' form, for the pictures
    expect(page.get_by_label("Retain")).to_be_visible()
    page.set_viewport_size({"width": WIDTHS["phone"], "height": 800})
    page.get_by_role("heading", name="Tag retention").scroll_into_view_if_needed()
    shoot(page, "policies")

    # A form posted without the session's CSRF token (another site's) changes nothing.
    refused = page.request.post("/ui/projects", form={"name": "forged"}, max_redirects=0)
    assert refused.status == 403
    page.get_by_role("button", name="Log out").click()

    # The guest: their project, read-only; nothing of the other one; no administration.
    page.goto("/ui/login")
    page.get_by_label("Username").fill(guest[0])
    page.get_by_label("Password").fill(guest[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="guestbook")).to_be_visible()
    expect(page.get_by_role("link", name="hidden")).to_have_count(0)
    expect(page.get_by_text("New project")).to_have_count(0)
    page.goto("/ui/repositories/guestbook/app")
    expect(page.locator("article.artifact")).to_have_count(1)
    expect(page.locator("article.artifact .tag").first).to_have_text("1")
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)  # as its role says
    expect(page.get_by_role("checkbox")).to_have_count(0)
    assert page.goto("/ui/repositories/hidden/app").status == 404
    assert page.goto("/ui/admin/gc").status == 403
    with httpx.Client(base_url=registry.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        assert http.get("/api/v1/projects/forged").status_code == 404
    assert [p for p in problems if "Failed to load resource" not in p] == [], problems
    context.close()
