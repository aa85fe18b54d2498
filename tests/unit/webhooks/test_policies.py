"""Per-project webhook policies on SQLite and PostgreSQL: validation (URLs, the SSRF guard on literal
addresses, reserved headers, event types), secrets sealed at rest, and the policy sender: one request per
event in the policy's format and with its signature, only the project's wanted events, retries with
backoff, a bounded number of attempts, the delivery log, and the outbox purged once policies passed."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from dockyard.config.notifications_settings import NotificationsSettings, WebhooksSettings
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.endpoints.secrets import SecretBox
from dockyard.jobs.queue import JobQueue
from dockyard.projects.services import ProjectService
from dockyard.upstream.addresses import AddressGuard
from dockyard.webhooks.interfaces import Event, InvalidWebhook, RequestInfo, WebhookExists
from dockyard.webhooks.models import NotificationCursorRow, NotificationEventRow, WebhookPolicyRow
from dockyard.webhooks.policies import WebhookPolicies
from dockyard.webhooks.policy_sender import PolicySender, policy_deliveries
from dockyard.webhooks.services import KIND, Outbox, Sender

pytestmark = pytest.mark.db_independent
REQUEST = RequestInfo("req-1", "192.0.2.7:4000", "registry.example", "PUT", "skopeo/1.13")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "b" * 64
SECRET = "a-webhook-secret"


class Target:
    """Answers each POST with the next scripted status (an exception: raised), then 200."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, bytes, dict[str, str], bool]] = []

    def __call__(
        self, url: str, body: bytes, headers: list[tuple[str, str]], timeout: float, verify: bool
    ) -> int:
        self.requests.append((url, body, dict(headers), verify))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _, _ in self.requests]


@pytest.fixture
def policies(database: Database) -> WebhookPolicies:
    ProjectService(database).create("team")
    ProjectService(database).create("other", public=True)
    box = SecretBox(b"passphrase")
    return WebhookPolicies(database, lambda: box, None, None, AddressGuard([]).permits)


@pytest.fixture
def jobs(database: Database) -> JobQueue:
    return JobQueue(database, known_kinds=[KIND])


def push(repo: str = "team/app", tag: str | None = "v1", action: str = "push") -> Event:
    target: dict[str, Any] = {
        "mediaType": MANIFEST,
        "digest": DIGEST,
        "size": 123,
        "repository": repo,
        "url": f"https://registry.example/v2/{repo}/manifests/{DIGEST}",
    }
    if tag:
        target["tag"] = tag
    return Event(action, target, REQUEST, "alice", project=repo.split("/")[0])


def record(database: Database, jobs: JobQueue, *events: Event) -> None:
    Outbox(database, jobs, {"addr": "node-1:5000", "instanceID": "i-1"}).record(list(events))


def sender(database: Database, policies: WebhookPolicies, target: Target, **settings: Any) -> PolicySender:
    webhooks = WebhooksSettings.model_validate({"attempts": 3, "backoff": "1h", **settings})
    return PolicySender(database, policies, webhooks, target, "https://registry.example")


def run(database: Database, jobs: JobQueue, policy_sender: PolicySender) -> dict[str, Any]:
    return Sender(database, jobs, NotificationsSettings(), lambda *a: 200, policy_sender).run()


# --- validation and secrets ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data", "may not send to 169.254.169.254"),
        ("http://127.0.0.1:8080/hook", "may not send to 127.0.0.1"),
        ("http://[::1]/hook", "may not send to ::1"),
        ("http://10.1.2.3/hook", "may not send to 10.1.2.3"),
        ("http://[::ffff:169.254.169.254]/", "may not send to"),
        ("ftp://hooks.example/", "https://"),
        ("https://user:pw@hooks.example/", "no credentials"),
        ("https://hooks.example/#frag", "no fragment"),
        ("https:///path", "names no host"),
    ],
)
def test_target_urls_that_are_refused(policies: WebhookPolicies, url: str, why: str) -> None:
    with pytest.raises(InvalidWebhook, match=why.replace("?", r"\?")):
        policies.create("team", "hook", url, ["push"])


def test_loopback_is_accepted_where_allowed_networks_allow_it(database: Database) -> None:
    ProjectService(database).create("team")
    allowed = WebhookPolicies(
        database, lambda: SecretBox(b"p"), permits=AddressGuard(["127.0.0.0/8"]).permits
    )
    assert allowed.create("team", "hook", "http://127.0.0.1:9/hook?token=x", ["push"]).url.endswith(
        "?token=x"
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"events": ["push", "teleport"]}, "unknown event types: teleport"),
        ({"events": []}, "at least one event type"),
        ({"format": "xml"}, "unknown format"),
        ({"headers": {"Content-Type": "text/plain"}}, "set by the server"),
        ({"headers": {"X-Dockyard-Signature": "sha256=0"}}, "set by the server"),
        ({"headers": {"X-Evil": "a\r\nHost: b"}}, "invalid value"),
        ({"headers": {"bad header": "x"}}, "invalid header name"),
        ({"secret": "short"}, "8 to 512"),
    ],
)
def test_invalid_policies_are_refused(policies: WebhookPolicies, changes: dict[str, Any], why: str) -> None:
    values: dict[str, Any] = {"url": "https://hooks.example/in", "events": ["push"], **changes}
    with pytest.raises(InvalidWebhook, match=why):
        policies.create("team", "hook", **values)
    policies.create("team", "ok", "https://hooks.example/in", ["push"])
    with pytest.raises(InvalidWebhook, match=why):
        policies.update("team", "ok", **changes)


def test_names_are_unique_per_project_and_secrets_are_sealed(
    database: Database, policies: WebhookPolicies
) -> None:
    created = policies.create(
        "team",
        "hook",
        "https://hooks.example/in",
        ["push", "pull"],
        secret=SECRET,
        headers={"X-Token": "tok-123"},
    )
    assert created.has_secret and created.header_names == ("X-Token",)
    with pytest.raises(WebhookExists):
        policies.create("team", "hook", "https://hooks.example/2", ["push"])
    policies.create("other", "hook", "https://hooks.example/2", ["push"])  # another project: fine
    with database.read() as connection:
        row = connection.execute(select(WebhookPolicyRow).where(WebhookPolicyRow.id == created.id)).one()
    assert SECRET not in str(row) and "tok-123" not in str(row)
    assert policies.secrets(created.id).secret == SECRET
    assert policies.secrets(created.id).headers == {"X-Token": "tok-123"}

    policies.update("team", "hook", secret="")
    assert policies.secrets(created.id).secret is None
    assert policies.secrets(created.id).headers == {"X-Token": "tok-123"}  # untouched
    # A sealed value copied onto another policy's row does not open there.
    other = policies.get("other", "hook")
    with database.write() as connection:
        connection.execute(
            update(WebhookPolicyRow)
            .where(WebhookPolicyRow.id == other.id)
            .values(headers_sealed=row.headers_sealed)
        )
    with pytest.raises(InvalidWebhook, match="cannot open"):
        policies.secrets(other.id)


def test_wanted_lists_the_actions_of_enabled_policies(policies: WebhookPolicies) -> None:
    assert policies.wanted("team") == frozenset()
    policies.create("team", "a", "https://hooks.example/a", ["push", "retention_run"])
    policies.create("team", "b", "https://hooks.example/b", ["pull"], enabled=False)
    assert policies.wanted("team") == {"push", "retention"}
    policies.update("team", "b", enabled=True)
    assert policies.wanted("team") == {"push", "pull", "retention"}
    assert policies.wanted("other") == frozenset()


# --- delivery -------------------------------------------------------------------------------------------
def test_each_wanted_event_of_the_project_is_sent_signed_in_harbor_format(
    database: Database, jobs: JobQueue, policies: WebhookPolicies
) -> None:
    record(database, jobs, push(tag="before"))  # before the policy: not sent
    policy = policies.create(
        "team",
        "hook",
        "https://hooks.example/in",
        ["push", "delete"],
        secret=SECRET,
        headers={"X-Token": "t"},
    )
    record(database, jobs, push(), push("other/app"), push(action="pull"), push(tag=None, action="delete"))
    target = Target()
    run(database, jobs, sender(database, policies, target))

    assert [body["type"] for body in target.bodies()] == ["PUSH_ARTIFACT", "DELETE_ARTIFACT"]
    url, body, headers, verify = target.requests[0]
    assert url == "https://hooks.example/in" and verify
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Dockyard-Signature"] == expected
    assert headers["X-Token"] == "t" and headers["Content-Type"] == "application/json"
    assert headers["X-Dockyard-Event"] == "push"
    harbor = target.bodies()[0]
    assert harbor["operator"] == "alice" and isinstance(harbor["occur_at"], int)
    (resource,) = harbor["event_data"]["resources"]
    assert resource == {
        "digest": DIGEST, "tag": "v1", "resource_url": "registry.example/team/app:v1",
        "mime_type": MANIFEST, "size": 123,
    }  # fmt: skip
    assert harbor["event_data"]["repository"] == {
        "name": "app", "namespace": "team", "repo_full_name": "team/app", "repo_type": "private",
    }  # fmt: skip
    deleted = target.bodies()[1]["event_data"]["resources"][0]
    assert deleted["digest"] == DIGEST and deleted["resource_url"].endswith(f"team/app@{DIGEST}")

    log = policy_deliveries(database, policy.id, 10)
    assert [(d.event, d.attempt, d.status_code, d.error) for d in log] == [
        ("delete", 1, 200, None), ("push", 1, 200, None),
    ]  # fmt: skip
    with database.read() as connection:  # every policy passed them: deleted (the newest row stays)
        assert connection.execute(select(func.count()).select_from(NotificationEventRow)).scalar() == 1


def test_a_failing_target_is_retried_with_backoff_then_the_event_is_given_up(
    database: Database, jobs: JobQueue, policies: WebhookPolicies
) -> None:
    policy = policies.create("team", "hook", "https://hooks.example/in", ["push"])
    record(database, jobs, push(tag="a"), push(tag="b"))
    target = Target(500, ConnectionError("refused"), 503, 500)
    policy_sender = sender(database, policies, target, attempts=3, backoff="1h", max_backoff="2h")

    run(database, jobs, policy_sender)  # attempt 1 of "a": 500, then it waits an hour
    assert len(target.requests) == 1
    with database.read() as connection:
        cursor = connection.execute(
            select(NotificationCursorRow).where(NotificationCursorRow.endpoint == policy.cursor)
        ).one()
    assert cursor.failures == 1 and cursor.retry_after > utcnow() + timedelta(minutes=59)
    run(database, jobs, policy_sender)
    assert len(target.requests) == 1  # still backing off

    def due() -> None:
        with database.write() as connection:
            connection.execute(
                update(NotificationCursorRow)
                .where(NotificationCursorRow.endpoint == policy.cursor)
                .values(retry_after=utcnow() - timedelta(seconds=1))
            )

    due()
    run(database, jobs, policy_sender)  # attempt 2: refused
    due()
    run(database, jobs, policy_sender)  # attempt 3: 503: given up; "b" follows and gets 500
    due()
    run(database, jobs, policy_sender)  # "b", attempt 2: delivered
    tags = [json.loads(body)["event_data"]["resources"][0]["tag"] for _, body, _, _ in target.requests]
    assert tags == ["a", "a", "a", "b", "b"]
    log = policy_deliveries(database, policy.id, 10)
    assert [(d.attempt, d.status_code) for d in reversed(log)] == [
        (1, 500),
        (2, None),
        (3, 503),
        (1, 500),
        (2, 200),
    ]
    assert "refused" in (log[3].error or "")


def test_cloudevents_and_slack_formats(database: Database, jobs: JobQueue, policies: WebhookPolicies) -> None:
    policies.create("other", "ce", "https://hooks.example/ce", ["push"], format="cloudevents")
    policies.create(
        "other", "slack", "https://hooks.example/slack", ["push"], format="slack", skip_tls_verify=True
    )
    event = push("other/web", tag="2.0")
    record(database, jobs, event)
    target = Target()
    run(database, jobs, sender(database, policies, target))
    by_url = {url: (json.loads(body), headers, verify) for url, body, headers, verify in target.requests}

    cloud, headers, _ = by_url["https://hooks.example/ce"]
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert cloud["specversion"] == "1.0" and cloud["id"] == event.id
    assert cloud["type"] == "io.dockyard.artifact.pushed"
    assert cloud["source"] == "https://registry.example/api/v1/projects/other"
    assert cloud["subject"] == "other/web:2.0" and cloud["datacontenttype"] == "application/json"
    assert cloud["time"].endswith("Z")
    assert cloud["data"]["repository"]["repo_type"] == "public"
    assert cloud["data"]["resources"][0]["digest"] == DIGEST

    slack, _, verify = by_url["https://hooks.example/slack"]
    assert not verify  # skip_tls_verify
    assert slack["text"] == "alice pushed other/web:2.0"
    assert slack["blocks"][0]["text"]["type"] == "mrkdwn"


def test_a_disabled_policy_holds_nothing_back_and_a_deleted_one_leaves_no_cursor(
    database: Database, jobs: JobQueue, policies: WebhookPolicies
) -> None:
    policy = policies.create("team", "hook", "https://hooks.example/in", ["push"])
    policies.update("team", "hook", enabled=False)
    record(database, jobs, push())
    target = Target()
    run(database, jobs, sender(database, policies, target))
    assert target.requests == []
    with database.read() as connection:  # not held for the disabled policy (the newest row stays)
        assert connection.execute(select(func.count()).select_from(NotificationEventRow)).scalar() == 1
    policies.update("team", "hook", enabled=True)  # from now on: not the events while it was off
    record(database, jobs, push(tag="v2"))
    run(database, jobs, sender(database, policies, target))
    assert [b["event_data"]["resources"][0]["tag"] for b in target.bodies()] == ["v2"]
    policies.delete("team", "hook")
    with database.read() as connection:
        names = list(connection.execute(select(NotificationCursorRow.endpoint)).scalars())
    assert policy.cursor not in names
