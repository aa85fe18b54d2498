"""The portal's administration and maintenance pages, in the test's process (tests/support/inprocess.py:
no port, no subprocess): groups (and the /api/v1/groups API under them), token signing keys, garbage
collection runs and the job page that follows a running job. Each page is the API's call as the user,
so besides what a page shows, every test checks what a user who is no system administrator gets (the
API's 403), CSRF refusals, and that hostile text comes out escaped. Jobs run when the test says so
(`runner.run_pending()`), not on a clock.

test_authz_matrix.py runs every one of these routes against every role on a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from dockyard.accounts.groups import GroupService
from dockyard.accounts.interfaces import UserSource
from dockyard.app import build_services, create_app
from dockyard.bootstrap import first_admin
from dockyard.jobs.runner import JobRunner
from dockyard.projects.services import MemberService
from dockyard.services import Services, build_job_runner
from tests.support.inprocess import ADMIN, ADMIN_PASSWORD, BASE_URL, TestClient, in_process_settings
from tests.support.portal import PortalBrowser

PASSWORD = "portal-admin-user-Passw0rd"
EVIL = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


@dataclass
class Stack:
    app: object
    api: TestClient  # the administrator, with Basic
    runner: JobRunner
    services: Services

    def browser(self, username: str, password: str = PASSWORD) -> PortalBrowser:
        http = TestClient(self.app, base_url=BASE_URL, client=("192.0.2.11", 40001))  # type: ignore[arg-type]
        browser = PortalBrowser(BASE_URL, http)
        assert browser.login(username, password).status_code == 303
        return browser


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("portal-admin")
    config = {
        "auth": {"login_limit": {"max_failures": 1_000_000}},
        "upstream": {"allowed_networks": ["127.0.0.0/8"]},  # webhooks to port 9 of loopback: refused at once
    }
    settings = in_process_settings(workdir, config)
    services = build_services(settings)
    first_admin(settings, services.db, ADMIN_PASSWORD)
    app = create_app(services)
    with TestClient(app, base_url=BASE_URL, client=("192.0.2.10", 40000)) as api:
        api.auth = ADMIN
        answer = api.post("/api/v1/users", json={"username": "plain", "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        yield Stack(app, api, build_job_runner(services), services)


def test_a_group_gives_its_members_a_project_role_and_directory_groups_stay_the_providers(
    stack: Stack,
) -> None:
    api, plain = stack.api, ("plain", PASSWORD)
    assert api.post("/api/v1/projects", json={"name": "crew-only", "public": False}).status_code == 201
    made = api.post("/api/v1/groups", json={"name": "crew"})
    assert made.status_code == 201 and made.json()["members"] == [] and made.json()["source"] == "local"
    group = made.json()["id"]
    assert api.post("/api/v1/groups", json={"name": "crew"}).status_code == 409
    member = {"group": "crew", "role": "developer"}
    assert api.post("/api/v1/projects/crew-only/members", json=member).status_code == 201
    assert api.get("/api/v1/projects/crew-only", auth=plain).status_code == 404
    added = api.put(f"/api/v1/groups/{group}/members/plain")
    assert added.status_code == 200 and added.json()["members"] == ["plain"]
    assert api.get("/api/v1/projects/crew-only", auth=plain).status_code == 200  # the group's role
    assert api.put(f"/api/v1/groups/{group}/members/nobody-here").status_code == 404
    assert api.get("/api/v1/groups", auth=plain).status_code == 403
    assert api.put(f"/api/v1/groups/{group}/members/plain", auth=plain).status_code == 403
    assert api.delete(f"/api/v1/groups/{group}/members/plain").json()["members"] == []
    assert api.get("/api/v1/projects/crew-only", auth=plain).status_code == 404
    directory = GroupService(stack.services.db).ensure("cn=ops,ou=groups,dc=example", UserSource.LDAP)
    refused = api.put(f"/api/v1/groups/{directory.id}/members/plain")
    assert refused.status_code == 409 and "ldap group" in refused.text
    assert api.get("/api/v1/groups", params={"q": "ou=groups"}).json() == [
        {"id": directory.id, "name": "cn=ops,ou=groups,dc=example", "source": "ldap"}
    ]
    assert api.delete(f"/api/v1/groups/{directory.id}").status_code == 204
    assert api.delete(f"/api/v1/groups/{group}").status_code == 204
    assert api.get("/api/v1/projects/crew-only/members", params={"q": "crew"}).json() == []


def test_groups_are_made_filled_and_deleted_in_the_portal(stack: Stack) -> None:
    with stack.browser(*ADMIN) as admin:
        assert admin.submit("/ui/admin/groups", {"name": "portal-crew"}, csrf=None).status_code == 403
        assert stack.api.get("/api/v1/groups", params={"q": "portal-crew"}).json() == []
        made = admin.submit("/ui/admin/groups", {"name": EVIL})
        assert made.status_code == 303
        group = made.headers["location"].rsplit("/", 1)[1]
        assert made.headers["location"] == f"/ui/admin/groups/{group}"
        page = admin.get(made.headers["location"])
        assert page.status_code == 200 and "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(2)" in page.text
        listed = admin.get("/ui/admin/groups", params={"q": "img"})
        assert "<script>alert" not in listed.text and f"/ui/admin/groups/{group}" in listed.text
        again = admin.submit("/ui/admin/groups", {"name": EVIL})
        assert again.status_code == 409 and "already exists" in again.text
        here = f"/ui/admin/groups/{group}"
        assert admin.submit(f"{here}/members", {"username": "plain"}).status_code == 303
        assert "plain" in admin.get(here).text
        unknown = admin.submit(f"{here}/members", {"username": "nobody-here"})
        assert unknown.status_code == 404 and "user not found" in unknown.text
        assert "Add a member" in unknown.text  # the group's page, with the form
        assert stack.api.get(f"/api/v1/groups/{group}").json()["members"] == ["plain"]
    with stack.browser("plain") as plain:
        for path in ["/ui/admin/groups", here]:
            assert plain.get(path).status_code == 403, path
        assert plain.submit("/ui/admin/groups", {"name": "sneaky"}).status_code == 403
        assert plain.submit(f"{here}/members/plain/remove").status_code == 403
        assert plain.submit(f"{here}/delete").status_code == 403
    assert stack.api.get(f"/api/v1/groups/{group}").json()["members"] == ["plain"]
    with stack.browser(*ADMIN) as admin:
        assert admin.submit(f"{here}/members/plain/remove").status_code == 303
        assert stack.api.get(f"/api/v1/groups/{group}").json()["members"] == []
        assert admin.submit(f"{here}/delete").status_code == 303
        assert admin.get(here).status_code == 404
        assert admin.get("/ui/admin/groups/not-a-number").status_code == 404


def keys(stack: Stack) -> dict[str, str]:
    return {k["kid"]: k["status"] for k in stack.api.get("/api/v1/system/signing-keys").json()}


def test_signing_keys_are_rotated_and_retired_never_shown(stack: Stack) -> None:
    assert stack.api.post("/api/v1/system/signing-keys/rotate").status_code == 201  # the first key
    before = keys(stack)
    with stack.browser(*ADMIN) as admin:
        page = admin.get("/ui/admin/signing-keys")
        assert page.status_code == 200
        for kid, status in before.items():
            assert kid in page.text and status in page.text
        assert "PRIVATE KEY" not in page.text and "BEGIN" not in page.text
        assert admin.submit("/ui/admin/signing-keys/rotate", csrf=None).status_code == 403
        assert admin.submit("/ui/admin/signing-keys/rotate", origin="https://evil.example").status_code == 403
        assert keys(stack) == before
        rotated = admin.submit("/ui/admin/signing-keys/rotate")
        assert (rotated.status_code, rotated.headers["location"]) == (303, "/ui/admin/signing-keys")
        after = keys(stack)
        (new,) = set(after) - set(before)
        assert after[new] == "signing" and all(after[kid] == "verifying" for kid in before)
        old = next(iter(before))
        signing = admin.submit(f"/ui/admin/signing-keys/{quote(new, safe='')}/retire")
        assert signing.status_code == 409 and "rotate first" in signing.text  # the API's refusal, said
        assert admin.submit(f"/ui/admin/signing-keys/{quote(old, safe='')}/retire").status_code == 303
        assert keys(stack)[old] == "retired"
        assert admin.submit("/ui/admin/signing-keys/no-such-key/retire").status_code == 404
        assert admin.submit("/ui/admin/signing-keys/..%2F..%2Fx/retire").status_code == 404
    with stack.browser("plain") as plain:
        assert plain.get("/ui/admin/signing-keys").status_code == 403
        assert plain.submit("/ui/admin/signing-keys/rotate").status_code == 403
        assert plain.submit(f"/ui/admin/signing-keys/{quote(new, safe='')}/retire").status_code == 403
    assert keys(stack)[new] == "signing" and len(keys(stack)) == len(after)


def newest_gc(stack: Stack) -> dict[str, object] | None:
    jobs = stack.api.get("/api/v1/jobs", params={"kind": "gc", "page_size": "1"}).json()
    return jobs[0] if jobs else None


def test_a_gc_dry_run_is_started_and_its_page_follows_it_live(stack: Stack) -> None:
    with stack.browser(*ADMIN) as admin:
        assert admin.get("/ui/admin/gc").status_code == 200
        assert admin.submit("/ui/admin/gc", {"mode": "delete"}, csrf=None).status_code == 403
        assert newest_gc(stack) is None
        bad = admin.submit("/ui/admin/gc", {"min_age": "soon"})
        assert bad.status_code == 400 and "duration" in bad.text and newest_gc(stack) is None
        started = admin.submit("/ui/admin/gc", {"mode": "dry-run", "delete_untagged": "on", "min_age": "0s"})
        assert started.status_code == 303
        job = newest_gc(stack)
        assert job is not None and started.headers["location"] == f"/ui/admin/jobs/{job['id']}"
        assert job["params"] == {"dry_run": True, "delete_untagged": True,
                                 "delete_referrers_with_subject": False, "min_age": "0s"}
        page = admin.get(started.headers["location"])
        assert page.status_code == 200 and "queued" in page.text
        live = f'hx-get="/ui/admin/jobs/{job["id"]}" hx-trigger="every 2s"'
        assert live in page.text  # the live part asks again while the job waits or runs
        part = admin.get(started.headers["location"], headers={"HX-Request": "true"})
        assert part.status_code == 200 and "<html" not in part.text and live in part.text
        assert part.headers["vary"] == "HX-Request"
        assert stack.runner.run_pending() >= 1
        done = admin.get(started.headers["location"], headers={"HX-Request": "true"})
        assert "succeeded" in done.text and "hx-trigger" not in done.text  # finished: the asking stops
        assert "&#34;dry_run&#34;: true" in done.text  # the report, as the job's result
        listed = admin.get("/ui/admin/gc")
        assert f"/ui/admin/jobs/{job['id']}" in listed.text
        real = admin.submit("/ui/admin/gc", {"mode": "delete"})
        assert real.status_code == 303
        assert newest_gc(stack)["params"]["dry_run"] is False  # type: ignore[index]
        stack.runner.run_pending()
    with stack.browser("plain") as plain:
        assert plain.get("/ui/admin/gc").status_code == 403
        assert plain.get(started.headers["location"]).status_code == 403
        assert plain.get(started.headers["location"], headers={"HX-Request": "true"}).status_code == 403
        before = newest_gc(stack)
        assert plain.submit("/ui/admin/gc", {"mode": "delete"}).status_code == 403
        assert newest_gc(stack) == before


def test_the_gc_schedule_is_set_changed_and_removed_from_the_gc_page(stack: Stack) -> None:
    schedule = "/api/v1/jobs/schedules/gc"
    form = {"cron": "30 2 * * 6", "enabled": "on", "mode": "delete", "delete_untagged": "on", "min_age": "6h"}
    with stack.browser("plain") as plain:
        assert plain.submit("/ui/admin/gc/schedule", form).status_code == 403
    assert stack.api.get(schedule).status_code == 404
    with stack.browser(*ADMIN) as admin:
        assert "No schedule" in admin.get("/ui/admin/gc").text
        assert admin.submit("/ui/admin/gc/schedule", form, csrf="wrong").status_code == 403
        bad = admin.submit("/ui/admin/gc/schedule", {**form, "cron": "every night"})
        assert bad.status_code == 400 and 'role="alert"' in bad.text
        assert stack.api.get(schedule).status_code == 404
        saved = admin.submit("/ui/admin/gc/schedule", form)
        assert (saved.status_code, saved.headers["location"]) == (303, "/ui/admin/gc")
        got = stack.api.get(schedule).json()
        assert (got["cron"], got["enabled"]) == ("30 2 * * 6", True)
        assert got["params"] == {"dry_run": False, "delete_untagged": True,
                                 "delete_referrers_with_subject": False, "min_age": "6h"}  # fmt: skip
        page = admin.get("/ui/admin/gc").text
        assert "<code>30 2 * * 6</code>" in page and 'value="6h"' in page
        # Unticked "Enabled": kept, not run.
        assert admin.submit("/ui/admin/gc/schedule", {**form, "enabled": ""}).status_code == 303
        assert stack.api.get(schedule).json()["enabled"] is False
        with stack.browser("plain") as plain:
            assert plain.submit("/ui/admin/gc/schedule/delete").status_code == 403
        assert admin.submit("/ui/admin/gc/schedule/delete").status_code == 303
        assert stack.api.get(schedule).status_code == 404


def test_a_job_is_cancelled_and_retried_from_its_page_and_its_text_is_escaped(stack: Stack) -> None:
    made = stack.api.post("/api/v1/jobs", json={"kind": "selftest", "params": {"seconds": 600, "note": EVIL}})
    assert made.status_code == 201
    job = made.json()["id"]
    with stack.browser("plain") as plain:
        assert plain.submit(f"/ui/admin/jobs/{job}/cancel").status_code == 403
    assert stack.api.get(f"/api/v1/jobs/{job}").json()["cancel_requested"] is False
    with stack.browser(*ADMIN) as admin:
        page = admin.get(f"/ui/admin/jobs/{job}")
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(2)" in page.text
        assert admin.submit(f"/ui/admin/jobs/{job}/cancel", csrf="wrong").status_code == 403
        cancelled = admin.submit(f"/ui/admin/jobs/{job}/cancel")
        assert (cancelled.status_code, cancelled.headers["location"]) == (303, f"/ui/admin/jobs/{job}")
        assert stack.api.get(f"/api/v1/jobs/{job}").json()["status"] == "cancelled"
        assert "Cancel the job" not in admin.get(f"/ui/admin/jobs/{job}").text
        assert re.search(r"<dd>cancelled", admin.get(f"/ui/admin/jobs/{job}").text)

        # Retry: a new job with the same kind and parameters, whose page the browser is sent to.
        assert "Retry" in admin.get(f"/ui/admin/jobs/{job}").text
        with stack.browser("plain") as plain:
            assert plain.submit(f"/ui/admin/jobs/{job}/retry").status_code == 403
        assert admin.submit(f"/ui/admin/jobs/{job}/retry", csrf="wrong").status_code == 403
        retried = admin.submit(f"/ui/admin/jobs/{job}/retry")
        assert retried.status_code == 303, retried.text
        again = int(retried.headers["location"].rsplit("/", 1)[1])
        assert again != job
        record = stack.api.get(f"/api/v1/jobs/{again}").json()
        assert (record["kind"], record["params"]["note"]) == ("selftest", EVIL)
        # A job still queued or running may not be retried: the API's 409, said on its page.
        refused = admin.submit(f"/ui/admin/jobs/{again}/retry")
        assert refused.status_code == 409 and 'class="error" role="alert"' in refused.text
        assert stack.api.post(f"/api/v1/jobs/{again}/cancel").status_code == 200


def test_members_are_listed_past_the_first_100(stack: Stack) -> None:
    """Robots' and tokens' lists page the same way (`handlers.read_page`); a user has at most 100 tokens."""
    api = stack.api
    assert api.post("/api/v1/projects", json={"name": "crowded", "public": False}).status_code == 201
    members = MemberService(stack.services.db)  # straight in: 101 API calls would be most of the test
    for n in range(101):
        members.add_group("crowded", f"team-{n:03}", "guest")
    robot = {"name": "bot-000", "actions": ["pull"]}
    assert api.post("/api/v1/projects/crowded/robots", json=robot).status_code == 201
    with stack.browser(*ADMIN) as admin:
        path = "/ui/projects/crowded/members"
        first = admin.get(path)
        assert first.status_code == 200 and "Page 1 of 2" in first.text
        assert 'href="?page=2" rel="next"' in first.text and "team-100" not in first.text
        second = admin.get(path, params={"page": "2"})
        assert "Page 2 of 2" in second.text and "team-100" in second.text
        assert 'href="?page=1" rel="prev"' in second.text
        robots = admin.get("/ui/projects/crowded/robots", params={"page": "nonsense"})
        assert robots.status_code == 200 and "bot-000" in robots.text and "Page 1" not in robots.text


def test_a_projects_webhooks_are_added_tested_and_deleted_secret_unshown(stack: Stack) -> None:
    api, secret, token = stack.api, "hook-signing-secret-5Tq9", "hook-header-value-7Zp3"
    assert api.post("/api/v1/projects", json={"name": "hooked", "public": False}).status_code == 201
    member = {"user": "plain", "role": "maintainer"}  # everything but the project's settings
    assert api.post("/api/v1/projects/hooked/members", json=member).status_code == 201
    here = "/ui/projects/hooked/webhooks"
    form = {"name": "ci", "url": "http://127.0.0.1:9/<script>alert(1)</script>", "events": "push",
            "format": "cloudevents", "secret": secret,
            "headers": f"Authorization: Bearer {token}\n\nX-Team: ops"}
    with stack.browser("plain") as plain:
        assert plain.get(here).status_code == 403
        assert plain.submit(here, form).status_code == 403
    with stack.browser(*ADMIN) as admin:
        assert admin.submit(here, form, csrf=None).status_code == 403
        assert api.get("/api/v1/projects/hooked/webhooks").json() == []
        assert admin.submit(here, {**form, "events": ""}).status_code == 400
        no_colon = admin.submit(here, {**form, "headers": "Authorization Bearer x"})
        assert no_colon.status_code == 400 and "Name: value" in no_colon.text
        bad_name = admin.submit(here, {**form, "headers": "X-Team<b>: ops"})  # the API checks the names
        assert bad_name.status_code == 400 and "X-Team&lt;b&gt;" in bad_name.text
        assert api.get("/api/v1/projects/hooked/webhooks").json() == []
        made = admin.submit(here, form)
        assert made.status_code == 303, re.findall(r'class="error"[^>]*>([^<]*)', made.text)
        assert made.headers["location"] == f"{here}/ci"
        for page in (admin.get(here), admin.get(f"{here}/ci")):
            assert page.status_code == 200 and "cloudevents" in page.text
            assert secret not in page.text and "<script>alert" not in page.text
            assert "&lt;script&gt;alert(1)" in page.text
        assert "<dd>set</dd>" in admin.get(f"{here}/ci").text
        names = lambda: api.get("/api/v1/projects/hooked/webhooks/ci").json()["header_names"]  # noqa: E731
        assert names() == ["Authorization", "X-Team"]
        shown = admin.get(f"{here}/ci").text
        assert token not in shown and "Authorization, X-Team" in shown
        assert admin.submit(f"{here}/ci/enabled", {"enabled": "false"}).status_code == 303
        assert api.get("/api/v1/projects/hooked/webhooks/ci").json()["enabled"] is False
        edit = {"url": "http://127.0.0.1:9/other", "events": ["push", "delete"], "format": "slack"}
        assert admin.submit(f"{here}/ci/edit", edit, csrf=None).status_code == 403
        assert admin.submit(f"{here}/ci/edit", edit).status_code == 303
        hook = api.get("/api/v1/projects/hooked/webhooks/ci").json()
        assert (hook["url"], hook["events"], hook["format"], hook["has_secret"]) == (
            "http://127.0.0.1:9/other", ["push", "delete"], "slack", True)  # an empty secret field keeps it
        assert names() == ["Authorization", "X-Team"]  # an empty headers field keeps them
        assert admin.submit(f"{here}/ci/edit", {**edit, "remove_secret": "on"}).status_code == 303
        assert api.get("/api/v1/projects/hooked/webhooks/ci").json()["has_secret"] is False
        assert admin.submit(f"{here}/ci/edit", {**edit, "headers": "X-Only: one"}).status_code == 303
        assert names() == ["X-Only"]
        assert admin.submit(f"{here}/ci/edit", {**edit, "remove_headers": "on"}).status_code == 303
        assert names() == []
        assert admin.submit(f"{here}/ci/edit", {**edit, "events": ""}).status_code == 400
        tested = admin.submit(f"{here}/ci/test")
        assert tested.status_code == 200 and "Test delivery: failed" in tested.text  # nothing listens
        assert secret not in tested.text
        assert admin.submit(f"{here}/ci/delete").status_code == 303
        assert api.get("/api/v1/projects/hooked/webhooks").json() == []
        assert admin.get(f"{here}/ci").status_code == 404
        assert admin.get(f"{here}/..%2Fx").status_code == 404


def test_a_project_becomes_a_pull_through_cache_by_a_system_administrator_only(stack: Stack) -> None:
    api = stack.api
    assert api.post("/api/v1/endpoints", json={"name": "hub", "url": "http://127.0.0.1:9"}).status_code == 201
    assert api.post("/api/v1/projects", json={"name": "mirror", "public": False}).status_code == 201
    member = {"user": "plain", "role": "project_admin"}
    assert api.post("/api/v1/projects/mirror/members", json=member).status_code == 201
    here = "/ui/projects/mirror"
    with stack.browser(*ADMIN) as admin:
        assert admin.submit(f"{here}/proxy", {"endpoint": "hub"}, csrf=None).status_code == 403
        assert "An ordinary project" in admin.get(f"{here}/policies").text
        for ttl, status in [("soon", 400), ("60", 303)]:
            form = {"endpoint": "hub", "tag_ttl_seconds": ttl}
            assert admin.submit(f"{here}/proxy", form).status_code == status
        proxy = api.get("/api/v1/projects/mirror").json()["proxy"]
        assert proxy == {"endpoint": "hub", "tag_ttl_seconds": 60}
        assert "This project caches <code>hub</code>" in admin.get(f"{here}/policies").text
        unknown = admin.submit(f"{here}/proxy", {"endpoint": "nowhere"})
        assert unknown.status_code == 422 and 'class="error" role="alert"' in unknown.text  # the API's
    with stack.browser("plain") as plain:  # the project's own administrator: sees it, may not change it
        page = plain.get(f"{here}/policies")
        assert "This project caches" in page.text and 'name="endpoint"' not in page.text
        assert plain.submit(f"{here}/proxy", {"endpoint": ""}).status_code == 403
    assert api.get("/api/v1/projects/mirror").json()["proxy"]["endpoint"] == "hub"
    with stack.browser(*ADMIN) as admin:
        assert admin.submit(f"{here}/proxy", {"endpoint": ""}).status_code == 303
    assert api.get("/api/v1/projects/mirror").json()["proxy"] is None


def test_a_new_project_is_a_pull_through_cache_from_the_create_form(stack: Stack) -> None:
    api = stack.api
    endpoint = {"name": "quay", "url": "http://127.0.0.1:9"}
    assert api.post("/api/v1/endpoints", json=endpoint).status_code == 201
    with stack.browser(*ADMIN) as admin:
        listed = admin.get("/ui/projects").text
        assert '<option value="quay">quay (http://127.0.0.1:9)</option>' in listed
        form = {"name": "quay-cache", "endpoint": "quay", "tag_ttl_seconds": "x"}
        bad_ttl = admin.submit("/ui/projects", form)
        assert bad_ttl.status_code == 400 and "tag TTL" in bad_ttl.text
        unknown = admin.submit("/ui/projects", {"name": "quay-cache", "endpoint": "nowhere"})
        assert unknown.status_code == 422 and 'class="error" role="alert"' in unknown.text  # the API's
        assert api.get("/api/v1/projects/quay-cache").status_code == 404  # nothing half made
        made = admin.submit("/ui/projects", {**form, "tag_ttl_seconds": "120"})
        assert (made.status_code, made.headers["location"]) == (303, "/ui/projects/quay-cache")
    proxy = api.get("/api/v1/projects/quay-cache").json()["proxy"]
    assert proxy == {"endpoint": "quay", "tag_ttl_seconds": 120}
    with stack.browser("plain") as plain:  # not an administrator: no form, no endpoints named
        page = plain.get("/ui/projects").text
        assert 'name="endpoint"' not in page and "127.0.0.1:9" not in page


def test_replication_policies_are_added_run_and_deleted_and_runs_shown(stack: Stack) -> None:
    api = stack.api
    assert api.post("/api/v1/endpoints", json={"name": "far", "url": "http://127.0.0.1:9"}).status_code == 201
    form = {"name": "to-far", "description": EVIL, "direction": "push", "endpoint": "far",
            "repositories": "nothing-here/**", "override": "on"}
    with stack.browser("plain") as plain:
        assert plain.get("/ui/admin/replication").status_code == 403
        assert plain.submit("/ui/admin/replication", form).status_code == 403
    with stack.browser(*ADMIN) as admin:
        assert admin.submit("/ui/admin/replication", form, csrf=None).status_code == 403
        assert api.get("/api/v1/replication/policies").json() == []
        assert admin.submit("/ui/admin/replication", form).status_code == 303
        policy = api.get("/api/v1/replication/policies/to-far").json()
        assert (policy["repositories"], policy["trigger"]) == ("nothing-here/**", "manual")
        page = admin.get("/ui/admin/replication")
        assert "to-far" in page.text and "<script>alert" not in page.text and "&lt;script&gt;" in page.text
        ran = admin.submit("/ui/admin/replication/policies/to-far/run")
        assert ran.status_code == 303 and ran.headers["location"].startswith("/ui/admin/jobs/")
        stack.runner.run_pending()  # selects nothing: the run succeeds at once
        (run,) = api.get("/api/v1/replication/runs", params={"policy": "to-far"}).json()
        assert f"/ui/admin/replication/runs/{run['id']}" in admin.get("/ui/admin/replication").text
        detail = admin.get(f"/ui/admin/replication/runs/{run['id']}")
        assert detail.status_code == 200 and "succeeded" in detail.text and "to-far" in detail.text
        off = admin.submit("/ui/admin/replication/policies/to-far/enabled", {"enabled": "false"})
        assert off.status_code == 303
        assert api.get("/api/v1/replication/policies/to-far").json()["enabled"] is False

        # Its page: every setting in a form filled with the policy's values; a change saves them all.
        here = "/ui/admin/replication/policies/to-far"
        shown = admin.get(here).text
        assert 'value="nothing-here/**"' in shown
        assert "&lt;script&gt;" in shown and "<script>alert" not in shown
        change = {**form, "trigger": "cron", "schedule": "0 4 * * *", "artifact_types": "image, sbom",
                  "labels": "team=platform\n\norg.opencontainers.image.vendor", "concurrency": "3",
                  "bandwidth_mib": "1.5", "dest_namespace": "mirror"}  # fmt: skip
        assert admin.submit(f"{here}/edit", change, csrf="wrong").status_code == 403
        not_a_number = admin.submit(f"{here}/edit", {**change, "concurrency": "many"})
        assert not_a_number.status_code == 400 and "a number" in not_a_number.text
        too_many = admin.submit(f"{here}/edit", {**change, "concurrency": "99"})  # the API's limit
        assert too_many.status_code == 400 and "32" in too_many.text
        assert admin.submit(f"{here}/edit", change).status_code == 303
        policy = api.get("/api/v1/replication/policies/to-far").json()
        assert (policy["trigger"], policy["schedule"], policy["concurrency"]) == ("cron", "0 4 * * *", 3)
        assert policy["artifact_types"] == ["image", "sbom"] and policy["bandwidth"] == 1572864
        assert policy["labels"] == ["team=platform", "org.opencontainers.image.vendor"]
        assert policy["dest_namespace"] == "mirror" and policy["enabled"] is False  # not on the form
        shown = admin.get(here).text
        assert 'value="image, sbom"' in shown and 'value="1.5"' in shown and 'value="0 4 * * *"' in shown
        manual = {**change, "trigger": "manual", "bandwidth_mib": "", "dest_namespace": ""}
        assert admin.submit(f"{here}/edit", manual).status_code == 303
        policy = api.get("/api/v1/replication/policies/to-far").json()
        assert (policy["trigger"], policy["schedule"], policy["bandwidth"], policy["dest_namespace"]) == (
            "manual", None, None, None)
    with stack.browser("plain") as plain:
        assert plain.get(f"/ui/admin/replication/runs/{run['id']}").status_code == 403
        assert plain.get("/ui/admin/replication/policies/to-far").status_code == 403
        assert plain.submit("/ui/admin/replication/policies/to-far/edit", form).status_code == 403
        assert plain.submit("/ui/admin/replication/policies/to-far/delete").status_code == 403
    with stack.browser(*ADMIN) as admin:
        assert admin.submit("/ui/admin/replication/policies/to-far/delete").status_code == 303
    assert api.get("/api/v1/replication/policies").json() == []
