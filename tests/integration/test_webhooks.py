"""Per-project webhook policies from a real `dockyard serve` to real HTTP receivers on loopback
(docs/webhooks.md): each format as its consumers read it, the HMAC signature, a receiver that fails and
then recovers, pulls and deletes, quota, immutability and retention events, the management API (CRUD,
delivery log, test delivery, who may), and the SSRF guard (metadata and loopback addresses, names that
resolve to them, redirects)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import Cli
from tests.support.ociclient import OCIClient, digest_of
from tests.support.receivers import Received, Receiver, running_receiver
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "webhooks-Passw0rd")
DEVELOPER = ("hookdev", "webhooks-dev-Passw0rd")
SECRET = "webhook-secret-123"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, Receiver]]:
    with (
        running_receiver() as harbor,
        running_receiver() as cloud,
        running_receiver() as slack,
        running_receiver(fail_first=1) as flaky,
        running_receiver() as events,
        running_receiver() as tags,
    ):
        yield {
            "harbor": harbor,
            "cloud": cloud,
            "slack": slack,
            "flaky": flaky,
            "events": events,
            "tags": tags,
        }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("webhooks"),
        {
            "auth": {"enabled": True},
            "storage": {"delete": {"enabled": True}},
            "jobs": {"run_in_serve": True},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},  # the receivers are on loopback
            "webhooks": {"backoff": "300ms", "attempts": 3, "timeout": "5s"},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield http


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield OCIClient(http)


def project(api: httpx.Client, name: str) -> str:
    answer = api.post("/projects", json={"name": name})
    assert answer.status_code == 201, answer.text
    return name


def webhook(api: httpx.Client, project: str, **body: Any) -> dict[str, Any]:
    answer = api.post(f"/projects/{project}/webhooks", json={"name": "hook", "events": ["push"], **body})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def deliveries(api: httpx.Client, project: str, name: str = "hook") -> list[dict[str, Any]]:
    answer = api.get(f"/projects/{project}/webhooks/{name}/deliveries", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def of_type(received: list[Received], kind: str) -> list[dict[str, Any]]:
    return [r.body for r in received if r.body.get("type") == kind]


def test_a_push_is_delivered_in_harbors_format_signed(
    server: RunningServer, api: httpx.Client, oci: OCIClient, receivers: dict[str, Receiver]
) -> None:
    receiver = receivers["harbor"]
    project(api, "hb")
    created = webhook(api, "hb", url=receiver.url, secret=SECRET, headers={"Authorization": "Bearer t0k"})
    assert created["has_secret"] and created["header_names"] == ["Authorization"] and "secret" not in created
    pushed = oci.push_image("hb/app", "v1")

    (request,) = receiver.wait_for_bodies(lambda got: len(got) >= 1)
    body = request.body
    assert body["type"] == "PUSH_ARTIFACT" and body["operator"] == "admin"
    assert abs(body["occur_at"] - time.time()) < 120
    (resource,) = body["event_data"]["resources"]
    assert resource["digest"] == pushed.digest and resource["tag"] == "v1"
    assert resource["resource_url"] == f"{server.host}/hb/app:v1"
    assert body["event_data"]["repository"] == {
        "name": "app", "namespace": "hb", "repo_full_name": "hb/app", "repo_type": "private",
    }  # fmt: skip
    # Only the manifest: blob pushes are not artifact events.
    time.sleep(1.0)
    assert len(receiver.requests) == 1
    # The signature a receiver checks: HMAC-SHA256 of the exact body with the shared secret.
    expected = "sha256=" + hmac.new(SECRET.encode(), request.raw, hashlib.sha256).hexdigest()
    assert request.headers["x-dockyard-signature"] == [expected]
    assert request.headers["authorization"] == ["Bearer t0k"]
    assert request.headers["content-type"] == ["application/json"]
    assert request.headers["x-dockyard-event"] == ["push"]

    (logged,) = deliveries(api, "hb")
    assert logged["event"] == "push" and logged["status_code"] == 200 and logged["attempt"] == 1
    assert logged["ok"] and logged["error"] is None and logged["duration_ms"] >= 0


def test_cloudevents_and_slack_formats(
    api: httpx.Client, oci: OCIClient, receivers: dict[str, Receiver]
) -> None:
    project(api, "fmt")
    webhook(api, "fmt", name="ce", url=receivers["cloud"].url, format="cloudevents")
    webhook(api, "fmt", name="slack", url=receivers["slack"].url, format="slack")
    pushed = oci.push_image("fmt/web", "2.0")

    (cloud,) = receivers["cloud"].wait_for_bodies(lambda got: len(got) >= 1)
    assert cloud.headers["content-type"] == ["application/cloudevents+json"]
    event = cloud.body
    assert event["specversion"] == "1.0" and event["type"] == "io.dockyard.artifact.pushed"
    assert event["id"] and event["time"].endswith("Z") and event["datacontenttype"] == "application/json"
    assert event["source"].endswith("/api/v1/projects/fmt") and event["subject"] == "fmt/web:2.0"
    assert event["data"]["resources"][0]["digest"] == pushed.digest
    assert event["data"]["repository"]["repo_full_name"] == "fmt/web"

    (slack,) = receivers["slack"].wait_for_bodies(lambda got: len(got) >= 1)
    assert slack.body["text"] == "admin pushed fmt/web:2.0"
    assert slack.body["blocks"][0]["type"] == "section"


def test_a_receiver_that_fails_gets_the_event_on_the_retry(
    api: httpx.Client, oci: OCIClient, receivers: dict[str, Receiver]
) -> None:
    receiver = receivers["flaky"]  # answers 500 once, then 200
    project(api, "flaky")
    webhook(api, "flaky", url=receiver.url)
    pushed = oci.push_image("flaky/app", "v1")
    (delivered,) = receiver.wait_for_bodies(lambda got: len(got) >= 1)
    assert delivered.body["event_data"]["resources"][0]["digest"] == pushed.digest
    assert [r.status for r in receiver.requests] == [500, 200]
    # The sender logs an attempt once it has the answer: the receiver may have its body before that.
    deadline = time.monotonic() + 30
    while len(log := deliveries(api, "flaky")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(d["attempt"], d["status_code"], d["ok"]) for d in reversed(log)] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert "500" in log[1]["error"]


def test_pulls_deletes_and_project_events(
    api: httpx.Client, oci: OCIClient, receivers: dict[str, Receiver]
) -> None:
    receiver = receivers["events"]
    project(api, "ev")
    events = ["pull", "delete", "quota_warning", "quota_exceeded", "immutable_refusal", "retention_run"]
    webhook(api, "ev", url=receiver.url, events=events)
    kept = oci.push_image("ev/app", "v1")  # not wanted: no push event
    oci.get_manifest("ev/app", "v1")
    assert oci.http.delete(f"/v2/ev/app/manifests/{kept.digest}").status_code == 202
    received = receiver.wait_for_bodies(
        lambda got: bool(of_type(got, "PULL_ARTIFACT")) and bool(of_type(got, "DELETE_ARTIFACT"))
    )
    assert not of_type(received, "PUSH_ARTIFACT")
    (pull,) = of_type(received, "PULL_ARTIFACT")
    assert pull["event_data"]["resources"][0]["tag"] == "v1"
    (deleted,) = of_type(received, "DELETE_ARTIFACT")
    assert deleted["event_data"]["resources"][0]["digest"] == kept.digest

    # Immutability: a second push of v2 with other content is refused.
    rule = api.post("/projects/ev/immutable-rules", json={"tag_pattern": "v2"})
    assert rule.status_code == 201, rule.text
    oci.push_image("ev/app", "v2", seed="first")
    other = oci.push_image("ev/app", "other", seed="second")
    refused = oci.put_manifest("ev/app", "v2", other.body, other.media_type)
    assert refused.status_code in (400, 403, 409), refused.text
    received = receiver.wait_for_bodies(lambda got: bool(of_type(got, "TAG_IMMUTABILITY_REFUSED")))
    (refusal,) = of_type(received, "TAG_IMMUTABILITY_REFUSED")
    assert refusal["event_data"]["resources"][0]["tag"] == "v2"
    assert refusal["event_data"]["custom_attributes"]["operation"] == "push"

    # Quotas: a limit the next push passes 80% of, then one it cannot fit.
    used = api.get("/projects/ev/quota").json()["used_bytes"]
    assert (
        api.put("/projects/ev/quota", json={"limit_bytes": used + 1200, "warn_percent": 80}).status_code
        == 200
    )
    oci.push_blob("ev/app", b"z" * 1000)
    received = receiver.wait_for_bodies(lambda got: bool(of_type(got, "QUOTA_WARNING")))
    warning = of_type(received, "QUOTA_WARNING")[0]["event_data"]["custom_attributes"]
    assert warning["warn_percent"] == 80 and warning["limit_bytes"] == used + 1200
    big = b"y" * 5000
    refused = oci.finish_upload(oci.upload_location("ev/app"), digest_of(big), big)
    assert refused.status_code == 403, refused.text
    received = receiver.wait_for_bodies(lambda got: bool(of_type(got, "QUOTA_EXCEED")))
    exceeded = of_type(received, "QUOTA_EXCEED")[0]["event_data"]["custom_attributes"]
    assert exceeded["limit_bytes"] == used + 1200 and "exceed" in exceeded["Details"]

    # Retention: a run's summary.
    assert api.put("/projects/ev/quota", json={"limit_bytes": None}).status_code == 200
    keep_one = {"rules": [{"action": "latestPushedK", "count": 1, "repositories": {"match": "**"}}]}
    assert api.put("/projects/ev/retention", json=keep_one).status_code == 200
    assert api.post("/projects/ev/retention/run", json={"dry_run": False}).status_code == 202
    received = receiver.wait_for_bodies(lambda got: bool(of_type(got, "TAG_RETENTION")))
    (retention,) = of_type(received, "TAG_RETENTION")
    summary = retention["event_data"]["retention"]
    assert summary["project"] == "ev" and summary["dry_run"] is False and summary["run_id"]
    assert {"kept", "deleted", "kept_immutable", "skipped"} <= set(summary)


def test_tags_set_and_deleted_through_the_management_api_are_events_as_over_v2(
    api: httpx.Client, oci: OCIClient, receivers: dict[str, Receiver]
) -> None:
    """The portal's add-tag, delete-tag and delete-artifact go through /api/v1, not /v2: they must
    reach the project's webhooks all the same."""
    receiver = receivers["tags"]
    project(api, "tg")
    webhook(api, "tg", url=receiver.url, events=["push", "delete"])
    pushed = oci.push_image("tg/app", "v1")
    receiver.wait_for_bodies(lambda got: len(of_type(got, "PUSH_ARTIFACT")) == 1)

    assert api.put("/repositories/tg/app/tags/stable", json={"digest": pushed.digest}).status_code == 201
    received = receiver.wait_for_bodies(lambda got: len(of_type(got, "PUSH_ARTIFACT")) == 2)
    tagged = of_type(received, "PUSH_ARTIFACT")[1]
    assert tagged["operator"] == "admin"
    (resource,) = tagged["event_data"]["resources"]
    assert resource["digest"] == pushed.digest and resource["tag"] == "stable"

    assert api.delete("/repositories/tg/app/tags/stable").status_code == 204
    received = receiver.wait_for_bodies(lambda got: len(of_type(got, "DELETE_ARTIFACT")) == 1)
    assert of_type(received, "DELETE_ARTIFACT")[0]["event_data"]["resources"][0]["tag"] == "stable"

    assert api.delete(f"/repositories/tg/app/artifacts/{pushed.digest}").status_code == 204
    received = receiver.wait_for_bodies(lambda got: len(of_type(got, "DELETE_ARTIFACT")) == 2)
    assert of_type(received, "DELETE_ARTIFACT")[1]["event_data"]["resources"][0]["digest"] == pushed.digest


def test_management_api_and_test_delivery(api: httpx.Client, receivers: dict[str, Receiver]) -> None:
    project(api, "crud")
    receiver = receivers["events"]
    webhook(api, "crud", url=receiver.url, events=["push", "scan_finished", "replication_finished"])
    assert [w["name"] for w in api.get("/projects/crud/webhooks").json()] == ["hook"]
    changed = api.put("/projects/crud/webhooks/hook", json={"format": "slack", "enabled": False})
    assert (
        changed.status_code == 200 and changed.json()["format"] == "slack" and not changed.json()["enabled"]
    )
    shown = api.get("/projects/crud/webhooks/hook").json()
    assert shown["events"] == ["push", "scan_finished", "replication_finished"]

    before = len(receiver.requests)
    tested = api.post("/projects/crud/webhooks/hook/test")
    assert tested.status_code == 200, tested.text
    assert tested.json()["status_code"] == 200 and tested.json()["ok"] and tested.json()["event"] == "test"
    assert len(receiver.requests) == before + 1
    assert receiver.requests[-1].body["text"] == "admin pushed crud/webhook-test:test"
    assert deliveries(api, "crud")[0]["event"] == "test"

    bad = api.post("/projects/crud/webhooks", json={"name": "x", "url": receiver.url, "events": ["teleport"]})
    assert bad.status_code == 400 and "teleport" in bad.text
    dup = api.post("/projects/crud/webhooks", json={"name": "hook", "url": receiver.url, "events": ["push"]})
    assert dup.status_code == 409
    assert api.get("/projects/crud/webhooks/nope").status_code == 404
    assert api.get("/projects/nosuch/webhooks").status_code == 404
    assert api.delete("/projects/crud/webhooks/hook").status_code == 204
    assert api.get("/projects/crud/webhooks").json() == []


def test_only_project_and_system_administrators_manage_webhooks(
    api: httpx.Client, server: RunningServer, receivers: dict[str, Receiver]
) -> None:
    project(api, "guarded")
    user = api.post("/users", json={"username": DEVELOPER[0], "password": DEVELOPER[1]})
    assert user.status_code == 201, user.text
    member = api.post("/projects/guarded/members", json={"user": DEVELOPER[0], "role": "maintainer"})
    assert member.status_code == 201, member.text
    webhook(api, "guarded", url=receivers["events"].url)
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=DEVELOPER, timeout=HTTP_TIMEOUT) as maintainer:
        assert maintainer.get("/projects/guarded/webhooks").status_code == 403
        assert maintainer.post("/projects/guarded/webhooks/hook/test").status_code == 403
        body = {"name": "mine", "url": receivers["events"].url, "events": ["push"]}
        assert maintainer.post("/projects/guarded/webhooks", json=body).status_code == 403


# --- the SSRF guard ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the default guard: no private, loopback or link-local targets."""
    running = start_server(
        tmp_path_factory.mktemp("webhooks-guarded"),
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:{port}/events",
        "http://[::ffff:127.0.0.1]:{port}/events",
        "http://10.0.0.1/hook",
        "http://0.0.0.0:{port}/events",
    ],
)
def test_literal_private_and_metadata_addresses_are_refused(guarded: RunningServer, url: str) -> None:
    # 60 s: the first calls check the password (argon2) on a server still warming (load 20 failed it).
    api_client = httpx.Client(base_url=f"{guarded.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT)
    with running_receiver() as receiver, api_client as api:
        api.post("/projects", json={"name": "ssrf"})
        port = receiver.url.split(":")[2].split("/")[0]
        answer = api.post(
            "/projects/ssrf/webhooks", json={"name": "x", "url": url.format(port=port), "events": ["push"]}
        )
        assert answer.status_code == 400, answer.text
        assert "may not send to" in answer.text
        assert receiver.requests == []


def test_a_name_resolving_to_loopback_is_refused_when_delivering(guarded: RunningServer) -> None:
    """`localhost` passes the check at creation (a name); the connection is refused on the resolved
    address, for the test delivery and for events."""
    with (
        running_receiver() as receiver,
        httpx.Client(base_url=guarded.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http,
    ):
        http.post("/api/v1/projects", json={"name": "rebind"})
        url = receiver.url.replace("127.0.0.1", "localhost")
        created = http.post(
            "/api/v1/projects/rebind/webhooks", json={"name": "x", "url": url, "events": ["push"]}
        )
        assert created.status_code == 201, created.text
        tested = http.post("/api/v1/projects/rebind/webhooks/x/test").json()
        assert tested["status_code"] is None and "may not fetch from" in tested["error"]
        OCIClient(http).push_image("rebind/app", "v1")
        deadline = time.monotonic() + 20
        log: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not [d for d in log if d["event"] == "push"]:
            log = http.get("/api/v1/projects/rebind/webhooks/x/deliveries").json()
            time.sleep(0.2)
        pushes = [d for d in log if d["event"] == "push"]
        assert pushes and pushes[0]["status_code"] is None and "may not fetch from" in pushes[0]["error"]
        assert receiver.requests == []


def test_redirects_are_not_followed(api: httpx.Client) -> None:
    """A target on an allowed network that redirects (to the metadata address, or anywhere) gets one
    request; the redirect is a failed delivery, never followed."""
    with running_receiver() as inside, running_receiver(redirect_to=None) as redirecting:
        redirecting.redirect_to = inside.url
        project(api, "redir")
        webhook(api, "redir", url=redirecting.url)
        tested = api.post("/projects/redir/webhooks/hook/test").json()
        assert tested["status_code"] == 302 and not tested["ok"] and "302" in tested["error"]
        redirecting.redirect_to = "http://169.254.169.254/latest/meta-data/"
        tested = api.post("/projects/redir/webhooks/hook/test").json()
        assert tested["status_code"] == 302 and not tested["ok"]
        assert len(redirecting.requests) == 2 and inside.requests == []


def test_webhook_deliveries_are_counted_by_result(server: RunningServer) -> None:
    metrics = httpx.get(f"{server.url}/metrics", auth=ADMIN, timeout=HTTP_TIMEOUT).text
    lines = [line for line in metrics.splitlines() if line.startswith("webhook_deliveries_total")]
    assert any('result="delivered"' in line for line in lines), lines
    assert all("url" not in line and "project" not in line for line in lines)
    assert json.dumps(lines)  # low cardinality: one series per result
    assert len(lines) <= 3


@pytest.mark.db_independent  # HTTP only: the API tests here run these routes on PostgreSQL
def test_the_cli_manages_webhooks(server: RunningServer, api: httpx.Client, tmp_path: Path) -> None:
    project(api, "cli")
    cli = Cli(tmp_path / "home")
    cli.home.mkdir()
    cli.login(server.url, *ADMIN)
    with running_receiver() as receiver:
        created = cli.json(
            "webhook", "create", "cli", "ci", "--url", receiver.url, "-e", "push", "-e", "delete",
            "--format", "cloudevents", "--secret-stdin", "-H", "X-Team: platform", stdin="cli-secret-1\n",
        )  # fmt: skip
        assert created["events"] == ["push", "delete"] and created["has_secret"]
        assert created["header_names"] == ["X-Team"]
        assert "ci" in cli.ok("webhook", "list", "cli")
        assert "cloudevents" in cli.ok("webhook", "show", "cli", "ci")
        assert "answered 200" in cli.ok("webhook", "test", "cli", "ci")
        request = receiver.requests[-1]
        assert request.headers["x-team"] == ["platform"]
        signature = hmac.new(b"cli-secret-1", request.raw, hashlib.sha256).hexdigest()
        assert request.headers["x-dockyard-signature"] == [f"sha256={signature}"]
        (logged,) = cli.json("webhook", "deliveries", "cli", "ci")
        assert logged["event"] == "test" and logged["status_code"] == 200
        assert cli.json("webhook", "update", "cli", "ci", "--disable", "--no-secret")["has_secret"] is False
        assert "unknown event types: nope" in cli.fails("webhook", "update", "cli", "ci", "-e", "nope")
    assert "failed its test delivery" in cli.fails("webhook", "test", "cli", "ci")  # the receiver is gone
    cli.ok("webhook", "delete", "cli", "ci", "--yes")
    assert cli.json("webhook", "list", "cli") == []


def test_a_stored_scan_is_a_scan_finished_event_in_harbors_shape(
    server: RunningServer, api: httpx.Client, oci: OCIClient
) -> None:
    from tests.integration.test_inventory import push
    from tests.support.layers import file, layer
    from tests.support.ociclient import OCI_LAYER

    project(api, "scanned")
    with running_receiver() as receiver:
        webhook(api, "scanned", url=receiver.url, events=["scan_finished"], format="harbor")
        webhook(api, "scanned", name="chat", url=receiver.url, events=["scan_finished"], format="slack")
        digest = push(oci, "scanned/app", "v1", [(OCI_LAYER, layer([file("etc/motd", b"hello\n")]))])
        scan = api.post("/repositories/scanned/app/artifacts/v1/scan")
        assert scan.status_code == 202, scan.text
        received = receiver.wait_for_bodies(
            lambda got: bool(of_type(got, "SCANNING_COMPLETED")) and any("text" in r.body for r in got)
        )
    (event,) = of_type(received, "SCANNING_COMPLETED")
    (resource,) = event["event_data"]["resources"]
    assert resource["digest"] == digest and resource["resource_url"].endswith(f"/scanned/app@{digest}")
    overview = resource["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"]
    assert overview["scan_status"] == "Success" and overview["severity"] == "None", overview
    assert overview["summary"]["total"] == 0
    assert event["event_data"]["repository"]["repo_full_name"] == "scanned/app"
    (chat,) = [r.body for r in received if "text" in r.body]
    assert chat["text"] == f"Scan of scanned/app@{digest} finished: no vulnerabilities"
