"""The web portal (/ui) over HTTP against a real `dockyard serve`: logging in and out, the session's
end when its user is disabled, deleted or given a new password, CSRF and Origin checks, what a
limited user sees, escaping, and the security headers. (tests/e2e/test_portal.py drives it in a
browser; test_authz_matrix.py holds every portal route against every role.)"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.integration.test_inventory import push
from tests.support.layers import Member, file, layer, whiteout
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    descriptor,
    digest_of,
    image_manifest,
    index_manifest,
)
from tests.support.portal import PortalBrowser, signed_out
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "portal-admin-Passw0rd")
PASSWORD = "portal-user-Passw0rd-1"
SECRET_PROJECT = "hush-hush-project"  # private; the limited user is no member of it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = {
        "auth": {"enabled": True, "login_limit": {"max_failures": 1_000_000}},
        "jobs": {"run_in_serve": True},  # the retention dry run's report
    }
    running = start_server(
        tmp_path_factory.mktemp("portal"), config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    with httpx.Client(base_url=running.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        for name, public in [("shop", False), (SECRET_PROJECT, False)]:
            assert http.post("/api/v1/projects", json={"name": name, "public": public}).status_code == 201
        oci = OCIClient(http)
        oci.push_image("shop/web", "1.0")
        oci.push_image(f"{SECRET_PROJECT}/app", "1.0")
        add_user(http, "viewer")
        member = {"user": "viewer", "role": "limited_guest"}
        assert http.post("/api/v1/projects/shop/members", json=member).status_code == 201
    yield running
    running.stop()


def add_user(http: httpx.Client, name: str) -> None:
    answer = http.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 201, answer.text


@pytest.fixture
def admin_api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield http


def browser_of(server: RunningServer, username: str, password: str = PASSWORD) -> PortalBrowser:
    browser = PortalBrowser(server.url)
    answer = browser.login(username, password)
    assert answer.status_code == 303, answer.text
    return browser


def test_root_sends_browsers_to_the_portal_and_the_apis_stay_where_they_were(server: RunningServer) -> None:
    answer = httpx.get(f"{server.url}/", timeout=HTTP_TIMEOUT)
    assert (answer.status_code, answer.headers["location"]) == (302, "/ui/")
    assert httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT).status_code == 401
    assert httpx.get(f"{server.url}/api/v1/systeminfo", timeout=HTTP_TIMEOUT).status_code == 200
    assert (
        httpx.get(f"{server.url}/ui/projects", timeout=HTTP_TIMEOUT).headers["location"]
        == "/ui/login?next=%2Fui%2Fprojects"
    )


def test_login_sets_a_locked_down_cookie_and_lands_on_the_asked_page(server: RunningServer) -> None:
    with PortalBrowser(server.url) as browser:
        answer = browser.http.post(
            "/ui/login",
            data={"username": ADMIN[0], "password": ADMIN[1], "next": "/ui/projects/shop"},
            headers={"Origin": server.url},
        )
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/projects/shop")
        cookie = answer.headers["set-cookie"].lower()
        assert cookie.startswith("dockyard_ui=")
        for attribute in ("httponly", "samesite=lax", "path=/"):
            assert attribute in cookie
        page = browser.get("/ui/projects/shop")
        assert page.status_code == 200 and "shop/web" in page.text


def test_login_never_redirects_to_another_site(server: RunningServer) -> None:
    with PortalBrowser(server.url) as browser:
        for target in ["https://evil.example/", "//evil.example/ui/", "/ui/\\evil", "/v2/"]:
            answer = browser.http.post(
                "/ui/login",
                data={"username": ADMIN[0], "password": ADMIN[1], "next": target},
                headers={"Origin": server.url},
            )
            assert answer.headers["location"] == "/ui/projects", target


def test_a_wrong_password_shows_the_form_again_and_opens_no_session(server: RunningServer) -> None:
    with PortalBrowser(server.url) as browser:
        answer = browser.login(ADMIN[0], "not-the-password")
        assert answer.status_code == 401
        assert "Wrong username or password" in answer.text
        assert "set-cookie" not in answer.headers
        assert signed_out(browser.get("/ui/projects"))


def test_a_login_form_posted_from_another_site_is_refused(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/ui/login",
        data={"username": ADMIN[0], "password": ADMIN[1]},
        headers={"Origin": "https://evil.example"},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    ("csrf", "origin"),
    [(None, "self"), ("wrong-token", "self"), ("page", "https://evil.example"), ("page", None)],
    ids=["no-token", "wrong-token", "foreign-origin", "no-origin"],
)
def test_a_state_change_without_the_token_or_from_another_origin_is_refused(
    server: RunningServer, admin_api: httpx.Client, csrf: str | None, origin: str | None
) -> None:
    name = f"csrf-{csrf or 'none'}-{'x' if origin else 'none'}".replace("-token", "")[:40]
    with browser_of(server, *ADMIN) as browser:
        answer = browser.submit("/ui/projects", {"name": name}, csrf=csrf, origin=origin)
        assert answer.status_code == 403, answer.text
        assert admin_api.get(f"/api/v1/projects/{name}").status_code == 404
        logout = browser.submit("/ui/logout", csrf=csrf, origin=origin)
        assert logout.status_code == 403
        assert browser.get("/ui/projects").status_code == 200  # still signed in


def test_an_administrator_creates_a_project_with_a_quota(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    with browser_of(server, *ADMIN) as browser:
        answer = browser.submit("/ui/projects", {"name": "made-here", "public": "on", "quota_gib": "2"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/projects/made-here")
        again = browser.submit("/ui/projects", {"name": "made-here"})
        assert again.status_code == 409 and "already exists" in again.text
    project = admin_api.get("/api/v1/projects/made-here").json()
    assert project["public"] is True
    assert admin_api.get("/api/v1/projects/made-here/quota").json()["limit_bytes"] == 2 * 1024**3


def test_a_limited_user_sees_only_their_project_and_cannot_create_or_delete(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    with browser_of(server, "viewer") as browser:
        listing = browser.get("/ui/projects")
        assert listing.status_code == 200
        assert "shop" in listing.text and SECRET_PROJECT not in listing.text
        assert "New project" not in listing.text
        for path in [
            f"/ui/projects/{SECRET_PROJECT}",
            f"/ui/repositories/{SECRET_PROJECT}/app",
            f"/ui/repositories/{SECRET_PROJECT}/app/-/artifacts/1.0",
        ]:
            hidden = browser.get(path)
            assert hidden.status_code == 404, path
            assert SECRET_PROJECT not in hidden.text  # not even the name it asked for
        assert browser.get("/ui/repositories/shop/web").status_code == 200
        assert "Delete tag" not in browser.get("/ui/repositories/shop/web").text
        refused = browser.submit("/ui/repositories/shop/web/-/tags/1.0/delete")
        assert refused.status_code == 403
        assert browser.submit("/ui/projects", {"name": "viewer-made"}).status_code == 403
    assert "1.0" in admin_api.get("/v2/shop/web/tags/list").json()["tags"]
    assert admin_api.get("/api/v1/projects/viewer-made").status_code == 404


def test_the_pages_show_repositories_artifacts_and_layers(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    with browser_of(server, *ADMIN) as browser:
        repos = browser.get("/ui/projects/shop")
        assert "shop/web" in repos.text
        repo = browser.get("/ui/repositories/shop/web")
        digest = admin_api.get("/api/v1/repositories/shop/web/artifacts/1.0").json()["digest"]
        host = server.url.split("://", 1)[1]
        assert f'data-copy="docker pull {host}/shop/web:1.0"' in repo.text
        assert f'data-copy="docker pull {host}/shop/web@{digest}"' in repo.text
        page = browser.get(f"/ui/repositories/shop/web/-/artifacts/{digest}")
        assert page.status_code == 200
        assert "Layers" in page.text and OCI_LAYER in page.text
        assert "&#34;schemaVersion&#34;: 2" in page.text  # the manifest, pretty-printed and escaped
        by_tag = browser.get("/ui/repositories/shop/web/-/artifacts/1.0")
        assert by_tag.status_code == 200 and digest in by_tag.text
        search = browser.get(
            "/ui/projects/shop", params={"q": "nothing-like-it"}, headers={"HX-Request": "true"}
        )
        assert search.status_code == 200 and "<html" not in search.text and "0 repositories" in search.text


def test_what_pushers_and_searchers_write_is_escaped(server: RunningServer, admin_api: httpx.Client) -> None:
    evil = "<script>alert(1)</script>"
    oci = OCIClient(admin_api)
    history = [{"created_by": f"/bin/sh -c echo {evil}"}]
    config, layer = json.dumps({"os": "linux", "history": history}).encode(), b"xss layer"
    oci.push_blob("shop/xss", config)
    oci.push_blob("shop/xss", layer)
    body = image_manifest(
        descriptor(OCI_CONFIG, config),
        [descriptor(OCI_LAYER, layer)],
        annotations={evil: evil, "title": evil},
    )
    oci.push_manifest("shop/xss", "latest", body, "application/vnd.oci.image.manifest.v1+json")
    with browser_of(server, *ADMIN) as browser:
        pages = [
            browser.get("/ui/repositories/shop/xss/-/artifacts/latest"),
            browser.get("/ui/projects", params={"q": evil}),
            browser.get("/ui/projects/shop", params={"q": evil}),
            browser.get("/ui/login", params={"next": f"/ui/{evil}"}),
        ]
        for page in pages:
            assert page.status_code == 200, page.url
            assert "<script>alert" not in page.text, page.url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text
        assert "/bin/sh -c echo &lt;script&gt;" in pages[0].text  # the history's created_by, escaped


def test_the_artifact_page_shows_history_config_and_referrers(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    oci = OCIClient(admin_api)
    history = [{"created_by": "/bin/sh -c apk add curl"}, {"created_by": 'CMD ["curl"]', "empty_layer": True}]
    config = json.dumps({"os": "linux", "architecture": "arm64", "history": history}).encode()
    for blob in (config, b"tool layer", b"{}", b"sbom"):
        oci.push_blob("shop/tool", blob)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, b"tool layer")])
    image = oci.push_manifest("shop/tool", "2.0", body, OCI_MANIFEST)
    sbom = image_manifest(
        descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        [descriptor("application/spdx+json", b"sbom")],
        artifact_type="application/spdx+json",
        subject=image.descriptor(),
    )
    referrer = oci.push_manifest("shop/tool", "sbom", sbom, OCI_MANIFEST)
    with browser_of(server, *ADMIN) as browser:
        page = browser.get("/ui/repositories/shop/tool/-/artifacts/2.0")
    assert page.status_code == 200
    assert "/bin/sh -c apk add curl" in page.text and "History" in page.text
    assert "Config JSON" in page.text and "&#34;architecture&#34;: &#34;arm64&#34;" in page.text
    assert "Referrers" in page.text and "application/spdx+json" in page.text
    assert f"/ui/repositories/shop/tool/-/artifacts/{referrer.digest}" in page.text


def test_every_page_carries_the_security_headers(server: RunningServer) -> None:
    with browser_of(server, *ADMIN) as browser:
        for path in [
            "/ui/login",
            "/ui/projects",
            "/ui/projects/shop",
            "/ui/repositories/shop/web",
            "/ui/projects/no-such",
            "/ui/static/ui.css",
        ]:
            answer = browser.get(path)
            csp = answer.headers.get("content-security-policy", "")
            assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
            assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp, path
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["referrer-policy"] == "same-origin", path
        assert "no-store" in browser.get("/ui/projects").headers["cache-control"]


def test_logout_ends_the_session_on_the_server(server: RunningServer) -> None:
    with browser_of(server, *ADMIN) as browser:
        kept = dict(browser.http.cookies)
        answer = browser.submit("/ui/logout")
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/login")
        assert signed_out(browser.get("/ui/projects"))
    with httpx.Client(
        base_url=server.url, cookies=kept, timeout=HTTP_TIMEOUT
    ) as replay:  # a copy of the cookie kept elsewhere
        assert signed_out(replay.get("/ui/projects"))


@pytest.mark.parametrize("change", ["disable", "delete", "password"])
def test_the_session_dies_with_its_user_or_password(
    server: RunningServer, admin_api: httpx.Client, change: str
) -> None:
    name = f"leaver-{change}"
    add_user(admin_api, name)
    with browser_of(server, name) as browser:
        assert browser.get("/ui/projects").status_code == 200
        if change == "disable":
            answer = admin_api.patch(f"/api/v1/users/{name}", json={"disabled": True})
        elif change == "delete":
            answer = admin_api.delete(f"/api/v1/users/{name}")
        else:
            answer = admin_api.put(f"/api/v1/users/{name}/password", json={"password": "another-Passw0rd-9"})
        assert answer.status_code in (200, 204), answer.text
        assert signed_out(browser.get("/ui/projects"))
        swap = browser.get("/ui/projects/shop", headers={"HX-Request": "true"})  # htmx: the whole page goes
        assert (swap.status_code, swap.headers["hx-redirect"]) == (401, "/ui/login")


# --- the layer browser and the diff page -------------------------------------------------------------
# The first is a directory `<script>alert(1)<` holding `script>`: a name cannot hold a slash.
EVIL_NAMES = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "<svg onload=alert(3)>",
    "bell\x07and\x1bescape",
    "n" * 250,
]


@pytest.fixture(scope="module")
def layered(server: RunningServer) -> dict[str, str]:
    """shop/files: `v1` (a base layer), `v2` (the base and a layer deleting, changing and adding files,
    hostile names among them), `big` (one directory of 1,100 files)."""
    base = layer(
        [
            Member("dir", "etc"),
            file("etc/os-release", b"ID=debian\n"),
            file("etc/old.conf", b"old"),
            Member("symlink", "bin", target="usr/bin"),
            file("usr/bin/tool", b"#!/bin/sh\n"),
        ]
    )
    top = layer(
        [
            whiteout("etc/old.conf"),
            file("etc/os-release", b"ID=debian\nVERSION_ID=13\n"),
            file("srv/page.html", HTML_FILE),
            file("../../etc/passwd", b"climbs out"),
            *[file(f"srv/{name}", b"x") for name in EVIL_NAMES],
        ]
    )
    big = layer([file(f"many/f{i:05d}", b"") for i in range(1100)])
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        return {
            "v1": push(oci, "shop/files", "v1", [(OCI_LAYER, base)]),
            "v2": push(oci, "shop/files", "v2", [(OCI_LAYER, base), (OCI_LAYER, top)]),
            "big": push(oci, "shop/files", "big", [(OCI_LAYER, big)]),
            "base": digest_of(base),
            "top": digest_of(top),
            "many": digest_of(big),
        }


HTML_FILE = b"<html><script>alert(document.cookie)</script></html>"


def test_the_layer_browser_lists_a_layer_and_the_merged_tree_by_directory(
    server: RunningServer, layered: dict[str, str]
) -> None:
    artifact = f"/ui/repositories/shop/files/-/artifacts/{layered['v2']}"
    with browser_of(server, *ADMIN) as browser:
        page = browser.get(artifact)
        assert f'{artifact}/layers/{layered["top"]}/files"' in page.text  # each layer links to its files
        assert f'{artifact}/files"' in page.text
        top = browser.get(f"{artifact}/layers/{layered['top']}/files", params={"path": "/etc"})
        assert top.status_code == 200, top.text
        assert "whiteout</span> deletes <code>old.conf</code>" in top.text
        assert "os-release" in top.text and "tool" not in top.text  # this layer only
        root = browser.get(f"{artifact}/layers/{layered['base']}/files")
        assert "bin</code> <span class=\"muted\">→</span> <code>usr/bin</code>" in root.text  # a symlink
        assert '?path=%2Fetc">etc/</a>' in root.text  # a directory to open
        assert "-rw-r--r--" in browser.get(
            f"{artifact}/layers/{layered['base']}/files", params={"path": "/etc"}
        ).text
        merged = browser.get(f"{artifact}/files", params={"path": "/etc"})
        assert merged.status_code == 200
        assert "os-release" in merged.text and "old.conf" not in merged.text  # the whiteout applied
        assert f"{artifact}/layers/{layered['top']}/files" in merged.text  # os-release's layer
        assert "2 entries" not in merged.text and "1 entry" in merged.text
        climbed = browser.get(f"{artifact}/layers/{layered['top']}/files")
        assert "passwd" not in climbed.text  # `../../etc/passwd` climbs out of the root: not listed
        # A layer that is not the artifact's, a directory that climbs out: refused, naming nothing.
        other = browser.get(f"/ui/repositories/shop/files/-/artifacts/v1/layers/{layered['top']}/files")
        assert other.status_code == 404
        assert browser.get(f"{artifact}/files", params={"path": "/../.."}).status_code in (400, 404)


def test_file_names_in_a_layer_are_escaped_and_a_download_never_renders(
    server: RunningServer, layered: dict[str, str]
) -> None:
    artifact = f"/ui/repositories/shop/files/-/artifacts/{layered['v2']}"
    with browser_of(server, *ADMIN) as browser:
        for path in [f"{artifact}/layers/{layered['top']}/files", f"{artifact}/files"]:
            page = browser.get(path, params={"path": "/srv"})
            assert page.status_code == 200
            assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
            assert "<svg" not in page.text and "&lt;svg onload=alert(3)&gt;" in page.text
            assert "&lt;script&gt;alert(1)&lt;/</a>" in page.text  # the directory
            assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page.text
            assert "\x07" not in page.text and "\x1b" not in page.text
            assert "bell\\x07and\\x1bescape" in page.text  # shown escaped
            assert "n" * 250 in page.text
        inner = browser.get(f"{artifact}/files", params={"path": "/srv/<script>alert(1)<"})
        assert "<code>script&gt;</code>" in inner.text and "<script>" not in inner.text
        download = f"{artifact}/layers/{layered['top']}/download"
        answer = browser.get(download, params={"path": "/srv/page.html"})
        assert answer.status_code == 200 and answer.content == HTML_FILE
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-disposition"].startswith('attachment; filename="page.html"')
        assert answer.headers["content-security-policy"] == "default-src 'none'; sandbox"
        evil = browser.get(download, params={"path": f"/srv/{EVIL_NAMES[1]}"})
        assert evil.status_code == 200 and evil.content == b"x"
        disposition = evil.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="_')  # no quote or bracket left to inject
        assert disposition.count('"') == 2 and "<" not in disposition and "\r" not in disposition
        assert browser.get(download, params={"path": "/srv"}).status_code == 404
        assert browser.get(download, params={"path": "/no/such"}).status_code == 404


def test_a_huge_directory_is_shown_a_page_at_a_time(server: RunningServer, layered: dict[str, str]) -> None:
    files = f"/ui/repositories/shop/files/-/artifacts/big/layers/{layered['many']}/files"
    with browser_of(server, *ADMIN) as browser:
        first = browser.get(files, params={"path": "/many"})
        assert first.status_code == 200
        assert first.text.count("<tr>") == 1 + 1 + 500  # the header, `..`, a page of entries
        assert "more than 500 entries" in first.text and 'rel="next"' in first.text
        assert "f00499" in first.text and "f00500" not in first.text
        last = browser.get(files, params={"path": "/many", "page": "3"})
        assert last.text.count("<tr>") == 1 + 1 + 100 and "f01099" in last.text
        assert 'rel="next"' not in last.text and "Entries 1001\N{EN DASH}1100 of 1100" in last.text


def manifest_bytes(http: httpx.Client, tag: str) -> bytes:
    answer = http.get(f"/v2/shop/files/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert answer.status_code == 200, answer.text
    return answer.content


def test_the_diff_page_shows_layers_files_and_packages(
    server: RunningServer, layered: dict[str, str], admin_api: httpx.Client
) -> None:
    with browser_of(server, *ADMIN) as browser:
        form = browser.get("/ui/repositories/shop/files/-/diff")
        assert form.status_code == 200 and '<option value="v2">' in form.text
        page = browser.get("/ui/repositories/shop/files/-/diff", params={"from": "v1", "to": "v2"})
        assert page.status_code == 200, page.text
        assert "1 layer shared, 1 added, 0 removed" in page.text
        assert '<tr class="d-removed"><td data-label="Path"><code>/etc/old.conf</code>' in page.text
        assert '<tr class="d-changed"><td data-label="Path"><code>/etc/os-release</code>' in page.text
        assert "<code>/srv/page.html</code></td><td data-label=\"Change\">added" in page.text
        assert "&lt;script&gt;alert(1)" in page.text and "<script>alert(1)" not in page.text
        missing = browser.get("/ui/repositories/shop/files/-/diff", params={"from": "v1", "to": "nope"})
        assert missing.status_code == 404
        # Multi-platform images: the page says which platforms there are, then compares the one named.
        index = index_manifest([
            {**descriptor(OCI_MANIFEST, manifest_bytes(admin_api, tag)), "platform": platform}
            for tag, platform in (("v2", {"os": "linux", "architecture": "amd64"}),
                                  ("big", {"os": "linux", "architecture": "arm64"}))
        ])
        OCIClient(admin_api).push_manifest("shop/files", "multi", index, OCI_INDEX)
        query = {"from": "v1", "to": "multi"}
        which = browser.get("/ui/repositories/shop/files/-/diff", params=query)
        assert which.status_code == 400 and "linux/arm64" in which.text
        chosen = browser.get(
            "/ui/repositories/shop/files/-/diff", params={**query, "platform": "linux/amd64"}
        )
        assert chosen.status_code == 200 and "1 layer shared, 1 added, 0 removed" in chosen.text
    with browser_of(server, "viewer") as browser:  # a member of shop: may pull, so may compare
        assert browser.get(
            "/ui/repositories/shop/files/-/diff", params={"from": "v1", "to": "v2"}
        ).status_code == 200
        hidden = browser.get(
            f"/ui/repositories/{SECRET_PROJECT}/app/-/diff", params={"from": "1.0", "to": "1.0"}
        )
        assert hidden.status_code == 404 and SECRET_PROJECT not in hidden.text


# --- tags and bulk deletes -----------------------------------------------------------------------------
def test_tags_are_added_moved_and_deleted_on_the_artifact_page(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    oci = OCIClient(admin_api)
    one = oci.push_image("shop/tags", "1.0", seed="one").digest
    two = oci.push_image("shop/tags", "2.0", seed="two").digest
    page = f"/ui/repositories/shop/tags/-/artifacts/{one}"

    def named(tag: str) -> str | None:
        answer = admin_api.get(f"/api/v1/repositories/shop/tags/artifacts/{tag}")
        return str(answer.json()["digest"]) if answer.status_code == 200 else None

    with browser_of(server, *ADMIN) as browser:
        form = browser.get(page).text
        assert 'action="/ui/repositories/shop/tags/-/artifacts/' + one + '/tags"' in form
        assert "Delete tag 1.0" in form
        added = browser.submit(f"{page}/tags", {"tag": "stable"})
        assert (added.status_code, added.headers["location"]) == (303, page)
        assert named("stable") == one
        other = "/ui/repositories/shop/tags/-/artifacts/2.0/tags"
        taken = browser.submit(other, {"tag": "stable"})
        assert taken.status_code == 409 and "tick “move”" in taken.text and named("stable") == one
        moved = browser.submit(other, {"tag": "stable", "move": "on"})
        assert moved.status_code == 303 and named("stable") == two
        bad = browser.submit(f"{page}/tags", {"tag": "x/tags/y"})
        assert bad.status_code == 400 and "A tag is 1 to 128" in bad.text
        rule = {"repository_pattern": "tags", "tag_pattern": "stable"}
        made = admin_api.post("/api/v1/projects/shop/immutable-rules", json=rule)
        assert made.status_code == 201, made.text
        try:
            frozen = browser.submit(f"{page}/tags", {"tag": "stable", "move": "on"})
            assert frozen.status_code == 412 and "tag stable in shop/tags is immutable" in frozen.text
            assert named("stable") == two
        finally:
            admin_api.delete(f"/api/v1/projects/shop/immutable-rules/{made.json()['id']}")
        gone = browser.submit("/ui/repositories/shop/tags/-/tags/stable/delete", {"back": page})
        assert (gone.status_code, gone.headers["location"]) == (303, page)  # back to the artifact
        assert named("stable") is None
        elsewhere = browser.submit("/ui/repositories/shop/tags/-/tags/2.0/delete", {"back": "https://evil.example/"})
        assert elsewhere.headers["location"] == "/ui/repositories/shop/tags"
    with browser_of(server, "viewer") as browser:  # a limited guest: may look, not tag
        assert "Add a tag" not in browser.get(page).text
        assert browser.submit(f"{page}/tags", {"tag": "mine"}).status_code == 403
    assert named("mine") is None


def test_artifacts_are_deleted_in_bulk_each_as_the_api_allows(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    oci = OCIClient(admin_api)
    doomed = [oci.push_image("shop/bulk", tag, seed=tag).digest for tag in ("a", "b", "c")]
    kept = oci.push_image("shop/bulk", "v1", seed="kept").digest

    def exists(digest: str) -> bool:
        return admin_api.head(f"/v2/shop/bulk/manifests/{digest}").status_code == 200

    with browser_of(server, "viewer") as browser:
        assert 'form="bulk"' not in browser.get("/ui/repositories/shop/bulk").text
        assert browser.submit("/ui/repositories/shop/bulk/-/delete", {"digest": doomed[0]}).status_code == 403
    with browser_of(server, *ADMIN) as browser:
        listing = browser.get("/ui/repositories/shop/bulk").text
        assert f'name="digest" value="{doomed[0]}" form="bulk"' in listing
        refused = browser.submit("/ui/repositories/shop/bulk/-/delete", {"digest": doomed[0]}, csrf=None)
        assert refused.status_code == 403 and exists(doomed[0])
        answer = browser.http.post(
            "/ui/repositories/shop/bulk/-/delete",
            data={"digest": doomed[:2], "csrf_token": browser.csrf_token()},
            headers={"Origin": server.url},
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/repositories/shop/bulk?deleted=2"
        assert "Deleted 2 artifacts." in browser.get(answer.headers["location"]).text
        assert not exists(doomed[0]) and not exists(doomed[1]) and exists(doomed[2])
        # One of them under an immutable tag: the other goes, the page says which stayed and why.
        made = admin_api.post(
            "/api/v1/projects/shop/immutable-rules", json={"repository_pattern": "bulk", "tag_pattern": "v*"}
        )
        try:
            partial = browser.http.post(
                "/ui/repositories/shop/bulk/-/delete",
                data={"digest": [doomed[2], kept], "csrf_token": browser.csrf_token()},
                headers={"Origin": server.url},
            )
            assert partial.status_code == 200
            assert "Deleted 1 artifact." in partial.text
            assert f"{kept}: tag v1 in shop/bulk is immutable" in partial.text
            assert not exists(doomed[2]) and exists(kept)
        finally:
            admin_api.delete(f"/api/v1/projects/shop/immutable-rules/{made.json()['id']}")
        nothing = browser.submit("/ui/repositories/shop/bulk/-/delete", {"digest": "../../x"})
        assert nothing.status_code == 200 and "Those are not digests." in nothing.text and exists(kept)


def test_members_are_added_changed_and_removed_as_the_api_allows(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    add_user(admin_api, "mate")
    crew = "cn=<b>crew</b>,ou=groups"  # a group's name is the directory's text: escaped on the page
    with browser_of(server, *ADMIN) as browser:
        for kind, name in [("user", "mate"), ("group", crew)]:
            form = {"kind": kind, "name": name, "role": "developer"}
            added = browser.submit("/ui/projects/shop/members", form)
            assert (added.status_code, added.headers["location"]) == (303, "/ui/projects/shop/members")
        page = browser.get("/ui/projects/shop/members")
        assert page.status_code == 200 and "mate" in page.text
        assert "cn=&lt;b&gt;crew&lt;/b&gt;" in page.text and "<b>crew" not in page.text
        members = admin_api.get("/api/v1/projects/shop/members", params={"q": "mate"}).json()
        assert [(m["name"], m["role"]) for m in members] == [("mate", "developer")]
        member = members[0]["id"]
        changed = browser.submit(f"/ui/projects/shop/members/{member}/role", {"role": "maintainer"})
        assert changed.status_code == 303
        assert admin_api.get(f"/api/v1/projects/shop/members/{member}").json()["role"] == "maintainer"
        twice = browser.submit("/ui/projects/shop/members", {"kind": "user", "name": "mate", "role": "guest"})
        assert twice.status_code == 409  # the API's refusal, on the page
    with browser_of(server, "viewer") as browser:  # a limited guest may not even read the members
        assert browser.get("/ui/projects/shop/members").status_code == 403
        assert browser.submit(f"/ui/projects/shop/members/{member}/delete").status_code == 403
        assert browser.get(f"/ui/projects/{SECRET_PROJECT}/members").status_code == 404
    assert admin_api.get(f"/api/v1/projects/shop/members/{member}").status_code == 200
    with browser_of(server, *ADMIN) as browser:
        assert browser.submit(f"/ui/projects/shop/members/{member}/delete").status_code == 303
    assert admin_api.get(f"/api/v1/projects/shop/members/{member}").status_code == 404


def test_a_robot_secret_is_shown_once_and_never_again(server: RunningServer, admin_api: httpx.Client) -> None:
    evil = "<script>alert(1)</script>"
    with browser_of(server, *ADMIN) as browser:
        form = {"name": "ci", "description": evil, "actions": "pull", "expires_on": "2099-01-31"}
        unsigned = browser.submit("/ui/projects/shop/robots", form, csrf=None)
        assert unsigned.status_code == 403
        assert admin_api.get("/api/v1/projects/shop/robots/ci").status_code == 404
        made = browser.submit("/ui/projects/shop/robots", form)
        assert made.status_code == 200, made.text
        assert made.headers["cache-control"] == "no-store"
        secret = re.search(r'data-copy="([^"]+)"', made.text).group(1)  # type: ignore[union-attr]
        robot = "robot$shop+ci"
        assert (
            httpx.get(
                f"{server.url}/api/v1/projects/shop", auth=(robot, secret), timeout=HTTP_TIMEOUT
            ).status_code
            == 200
        )
        page = f"/ui/projects/shop/robots/{quote(robot, safe='')}"
        for path in ["/ui/projects/shop/robots", page]:
            shown = browser.get(path)
            assert shown.status_code == 200 and robot in shown.text, path
            assert secret not in shown.text, path
            assert "<script>alert" not in shown.text and "&lt;script&gt;alert(1)" in shown.text, path
        assert "2099-01-31 23:59 UTC" in browser.get(page).text
        assert browser.submit(f"{page}/disabled", {"disabled": "true"}).status_code == 303
        assert admin_api.get("/api/v1/projects/shop/robots/ci").json()["disabled"] is True
        assert browser.submit(f"{page}/disabled", {"disabled": "false"}).status_code == 303
        fresh = browser.submit(f"{page}/secret")
        assert fresh.status_code == 200
        new_secret = re.search(r'data-copy="([^"]+)"', fresh.text).group(1)  # type: ignore[union-attr]
        assert new_secret != secret
        assert (
            httpx.get(
                f"{server.url}/api/v1/projects/shop", auth=(robot, secret), timeout=HTTP_TIMEOUT
            ).status_code
            == 401
        )
        for path in ["/ui/projects/shop/robots", page]:
            assert new_secret not in browser.get(path).text
    with browser_of(server, "viewer") as browser:  # a limited guest: neither the list nor a change
        assert browser.get("/ui/projects/shop/robots").status_code == 403
        assert browser.submit(f"{page}/delete").status_code == 403
    with browser_of(server, *ADMIN) as browser:
        assert browser.submit(f"{page}/delete").status_code == 303
    assert admin_api.get("/api/v1/projects/shop/robots/ci").status_code == 404


def test_a_personal_token_is_shown_once_works_and_is_revoked(server: RunningServer) -> None:
    with browser_of(server, "viewer") as browser:
        made = browser.submit("/ui/account/tokens", {"name": "<i>laptop</i>", "expires_on": "2099-12-31"})
        assert made.status_code == 200, made.text
        secret = re.search(r'data-copy="([^"]+)"', made.text).group(1)  # type: ignore[union-attr]
        assert (
            httpx.get(f"{server.url}/api/v1/me", auth=("viewer", secret), timeout=HTTP_TIMEOUT).json()["name"]
            == "viewer"
        )
        listed = browser.get("/ui/account/tokens")
        assert listed.status_code == 200 and secret not in listed.text
        assert "&lt;i&gt;laptop&lt;/i&gt;" in listed.text and "<i>laptop" not in listed.text
        assert "2099-12-31 23:59 UTC" in listed.text
        assert secret not in browser.get("/ui/account").text
        token_id = re.search(r'/ui/account/tokens/(\d+)/revoke', listed.text).group(1)  # type: ignore[union-attr]
        assert browser.submit(f"/ui/account/tokens/{token_id}/revoke", csrf=None).status_code == 403
        assert (
            httpx.get(f"{server.url}/api/v1/me", auth=("viewer", secret), timeout=HTTP_TIMEOUT).status_code
            == 200
        )
        assert browser.submit(f"/ui/account/tokens/{token_id}/revoke").status_code == 303
        assert (
            httpx.get(f"{server.url}/api/v1/me", auth=("viewer", secret), timeout=HTTP_TIMEOUT).status_code
            == 401
        )
    with browser_of(server, *ADMIN) as browser:  # another user's token is not theirs to revoke
        mine = browser.submit("/ui/account/tokens", {"name": "admin-own"})
        admin_token = re.search(r'/ui/account/tokens/(\d+)/revoke', mine.text).group(1)  # type: ignore[union-attr]
    with browser_of(server, "viewer") as browser:
        assert browser.submit(f"/ui/account/tokens/{admin_token}/revoke").status_code == 404


def test_policies_immutable_rules_retention_preview_and_quota(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    here = "/ui/projects/shop"
    with browser_of(server, *ADMIN) as browser:
        rule = {"repository_pattern": "web", "tag_pattern": "1.*"}
        assert browser.submit(f"{here}/immutable-rules", rule).status_code == 303
        page = browser.get(f"{here}/policies")
        assert page.status_code == 200 and "<code>1.*</code>" in page.text
        assert browser.submit(f"{here}/retention", {"policy": "{not json"}).status_code == 400
        refused = browser.submit(f"{here}/retention", {"policy": '{"rules": [{"action": "latestPushedK"}]}'})
        assert refused.status_code == 400 and "needs `count`" in refused.text
        assert "latestPushedK&#34;}]}</textarea>" in refused.text  # the draft stays to be fixed
        policy = {"rules": [{"action": "latestPushedK", "count": 1}]}
        assert browser.submit(f"{here}/retention", {"policy": json.dumps(policy)}).status_code == 303
        assert admin_api.get("/api/v1/projects/shop/retention").json()["rules"][0]["count"] == 1
        queued = browser.submit(f"{here}/retention/dry-run")
        assert queued.status_code == 303 and "/policies?job=" in queued.headers["location"]
        job = int(queued.headers["location"].rsplit("=", 1)[1])
        deadline = time.monotonic() + 60
        while not [r for r in admin_api.get("/api/v1/projects/shop/retention/runs").json()
                   if r["job_id"] == job and r["status"] != "running"]:
            assert time.monotonic() < deadline, "the dry run did not finish"
            time.sleep(0.2)
        listed = browser.get(f"{here}/policies")
        run_id = re.search(r"/retention/runs/(\d+)", listed.text).group(1)  # type: ignore[union-attr]
        report = browser.get(f"{here}/retention/runs/{run_id}")
        assert report.status_code == 200 and "dry run" in report.text
        assert browser.submit(f"{here}/quota", {"limit_gib": "3", "warn_percent": "90"}).status_code == 303
        assert admin_api.get("/api/v1/projects/shop/quota").json()["limit_bytes"] == 3 * 1024**3
        rule_id = admin_api.get("/api/v1/projects/shop/immutable-rules").json()[0]["id"]
    with browser_of(server, "viewer") as browser:  # reads the retention policy; changes nothing
        page = browser.get(f"{here}/policies")
        assert page.status_code == 200 and "latestPushedK" in page.text
        assert "Immutable tags" not in page.text and "Storage quota" not in page.text
        assert "Save the policy" not in page.text
        assert browser.submit(f"{here}/immutable-rules/{rule_id}/delete").status_code == 403
        assert browser.submit(f"{here}/retention", {"policy": "{}"}).status_code == 403
        assert browser.submit(f"{here}/quota", {"limit_gib": ""}).status_code == 403
        assert browser.get(f"/ui/projects/{SECRET_PROJECT}/policies").status_code == 404
    assert len(admin_api.get("/api/v1/projects/shop/immutable-rules").json()) == 1
    with browser_of(server, *ADMIN) as browser:
        assert browser.submit(f"{here}/immutable-rules/{rule_id}/delete").status_code == 303
    admin_api.delete("/api/v1/projects/shop/retention")
    admin_api.put("/api/v1/projects/shop/quota", json={"limit_bytes": None})
    assert admin_api.get("/api/v1/projects/shop/immutable-rules").json() == []


def test_the_retention_policy_is_written_as_rules_in_a_form(
    server: RunningServer, admin_api: httpx.Client
) -> None:
    here = "/ui/projects/shop"
    first = {"rule-0-action": "latestPushedK", "rule-0-number": "5", "rule-0-repositories": "**",
             "rule-0-repositories-exclude": "sandbox/** tmp", "rule-0-tags": "v* {latest,stable}",
             "rule-0-untagged": "on", "schedule": "0 3 * * *"}  # fmt: skip
    with browser_of(server, "viewer") as viewer:
        assert viewer.submit(f"{here}/retention", first).status_code == 403
    with browser_of(server, *ADMIN) as browser:
        blank = browser.get(f"{here}/policies").text
        assert 'name="rule-0-action"' in blank and "(no new rule)" in blank
        assert 'name="rule-1-action"' not in blank  # no rules yet: one blank row
        not_a_number = browser.submit(f"{here}/retention", {**first, "rule-0-number": "five"})
        assert not_a_number.status_code == 400 and "Rule 1: the count is a whole number" in not_a_number.text
        bad = browser.submit(f"{here}/retention", {**first, "rule-0-tags": "v[1"})  # the API checks patterns
        assert bad.status_code == 400 and "unclosed" in bad.text and 'value="v[1"' in bad.text  # kept to fix
        assert admin_api.get("/api/v1/projects/shop/retention").status_code == 404
        assert browser.submit(f"{here}/retention", first).status_code == 303
        policy = admin_api.get("/api/v1/projects/shop/retention").json()
        (rule,) = policy["rules"]
        assert (rule["action"], rule["count"], policy["schedule"]) == ("latestPushedK", 5, "0 3 * * *")
        assert rule["repositories"]["exclude"] == ["sandbox/**", "tmp"]
        assert rule["tags"]["match"] == ["v*", "{latest,stable}"] and rule["tags"]["untagged"] is True
        shown = browser.get(f"{here}/policies").text
        assert 'value="v* {latest,stable}"' in shown and 'name="rule-1-action"' in shown  # one more, blank

        # A second rule added in the blank row, the first one turned off, then removed.
        second = {**first, "rule-0-disabled": "on", "rule-1-action": "always", "rule-1-tags": "release-*"}
        assert browser.submit(f"{here}/retention", second).status_code == 303
        rules = admin_api.get("/api/v1/projects/shop/retention").json()["rules"]
        assert [(r["action"], r.get("disabled", False)) for r in rules] == [
            ("latestPushedK", True), ("always", False)]  # fmt: skip
        removed = {**second, "rule-0-remove": "on", "schedule": ""}
        assert browser.submit(f"{here}/retention", removed).status_code == 303
        policy = admin_api.get("/api/v1/projects/shop/retention").json()
        assert [r["action"] for r in policy["rules"]] == ["always"] and policy["schedule"] is None
    with browser_of(server, "viewer") as viewer:  # reads the rules, cannot change them
        page = viewer.get(f"{here}/policies").text
        assert 'value="release-*" disabled' in page and "Save the policy" not in page
    admin_api.delete("/api/v1/projects/shop/retention")


def test_administration_users_audit_jobs_and_system(server: RunningServer, admin_api: httpx.Client) -> None:
    evil = "<script>alert('audit')</script>"
    with PortalBrowser(server.url) as stranger:  # a failed login puts the attacker's text in the log
        assert stranger.login(evil, "nope").status_code == 401
    job = admin_api.post("/api/v1/jobs", json={"kind": "selftest", "params": {"seconds": 0}}).json()["id"]
    deadline = time.monotonic() + 30  # failed logins are written to the audit log in batches
    while not admin_api.get("/api/v1/audit", params={"actor": evil, "action": "login_failed"}).json():
        assert time.monotonic() < deadline, "the failed login never reached the audit log"
        time.sleep(0.2)
    with browser_of(server, *ADMIN) as browser:
        made = browser.submit("/ui/admin/users", {"username": "newcomer", "password": PASSWORD})
        assert made.status_code == 303
        assert browser.submit("/ui/admin/users/newcomer/change", {"admin": "true"}).status_code == 303
        assert browser.submit("/ui/admin/users/newcomer/change", {"disabled": "true"}).status_code == 303
        user = admin_api.get("/api/v1/users/newcomer").json()
        assert (user["admin"], user["disabled"]) == (True, True)
        listed = browser.get("/ui/admin/users", params={"q": "newcomer"})
        assert listed.status_code == 200 and "newcomer" in listed.text and "viewer" not in listed.text
        audit = browser.get("/ui/admin/audit", params={"action": "login_failed", "actor": evil})
        assert audit.status_code == 200 and '<td data-label="Actor">&lt;script&gt;alert(' in audit.text
        assert "<script>alert" not in audit.text
        wanted = {"actor": "admin", "resource": "newcomer", "action": "update"}
        while len(admin_api.get("/api/v1/audit", params=wanted).json()) < 2:  # written in batches too
            assert time.monotonic() < deadline, "the changes never reached the audit log"
            time.sleep(0.2)
        narrowed = browser.get("/ui/admin/audit", params={"actor": "admin", "resource": "newcomer"})
        assert narrowed.text.count('<td data-label="Resource"><small>user</small> newcomer</td>') == 3
        assert "login_failed" not in narrowed.text
        assert browser.get("/ui/admin/audit", params={"since": "yesterday"}).status_code in (400, 422)
        jobs = browser.get("/ui/admin/jobs", params={"kind": "selftest"})
        assert jobs.status_code == 200 and f"/ui/admin/jobs/{job}" in jobs.text
        detail = browser.get(f"/ui/admin/jobs/{job}")
        assert detail.status_code == 200 and "selftest" in detail.text
        system = browser.get("/ui/admin/system")
        assert system.status_code == 200 and "healthy" in system.text
    with browser_of(server, "viewer") as browser:  # the API's refusal on every admin page
        for path in ["/ui/admin/users", "/ui/admin/audit", "/ui/admin/jobs", f"/ui/admin/jobs/{job}"]:
            assert browser.get(path).status_code == 403, path
        assert browser.submit("/ui/admin/users/viewer/change", {"admin": "true"}).status_code == 403
        sneaky = {"username": "sneaky", "password": PASSWORD}
        assert browser.submit("/ui/admin/users", sneaky).status_code == 403
        assert browser.get("/ui/admin/system").status_code == 200  # the API shows it to anyone signed in
    assert admin_api.get("/api/v1/users/viewer").json()["admin"] is False
    assert admin_api.get("/api/v1/users/sneaky").status_code == 404
