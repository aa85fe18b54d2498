"""The `notify` job: send the outbox to the endpoints. Queued by each recorded event (when none is
waiting), by itself for an endpoint that is backing off, and every few minutes as a safety net."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dockyard.config.notifications_settings import NotificationsSettings, WebhooksSettings
from dockyard.db.session import Database
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.queue import JobQueue
from dockyard.webhooks.policies import WebhookPolicies
from dockyard.webhooks.policy_sender import Observe, PolicyPost, PolicySender
from dockyard.webhooks.services import KIND, Post, Sender

SAFETY_NET = "@every 5m"


def notify_kind(
    db: Database,
    jobs: JobQueue,
    settings: NotificationsSettings,
    allowed_networks: list[str],
    post: Post | None = None,
    *,
    policies: WebhookPolicies | None = None,
    webhooks: WebhooksSettings | None = None,
    source: str = "",
    observe: Observe | None = None,
    policy_post: PolicyPost | None = None,
) -> JobKind:
    client: list[Post] = []
    policy_client: list[PolicyPost] = []

    def lazy_endpoint_post(url: str, body: bytes, headers: dict[str, list[str]], timeout: float) -> int:
        if not client:  # built on the first delivery: a runner with no endpoint never loads httpx
            from dockyard.webhooks.delivery import guarded_client, http_post

            client.append(http_post(guarded_client(allowed_networks)))
        return client[0](url, body, headers, timeout)

    def sender_post() -> Post:
        return post if post is not None else lazy_endpoint_post

    def lazy_post(url: str, body: bytes, headers: list[tuple[str, str]], timeout: float, verify: bool) -> int:
        if not policy_client:  # built on the first delivery: a runner with no policy never loads httpx
            from dockyard.webhooks.delivery import policy_post as build

            policy_client.append(build(allowed_networks))
        return policy_client[0](url, body, headers, timeout, verify)

    def sender_policies() -> PolicySender | None:
        if policies is None:
            return None
        chosen = policy_post if policy_post is not None else lazy_post
        return PolicySender(db, policies, webhooks or WebhooksSettings(), chosen, source, observe)

    def notify(ctx: JobContext) -> Mapping[str, Any]:
        result = Sender(db, jobs, settings, sender_post(), sender_policies()).run(ctx.check_cancelled)
        for name, count in result["sent"].items():
            if count:
                ctx.log(f"{name}: sent {count} events")
        return result

    schedule = SAFETY_NET if settings.active or policies is not None else None
    # One at a time cluster-wide: two would send the same batch twice. A failed delivery is not a
    # failed job (the endpoint's backoff retries it), so the job is not retried by the queue.
    return JobKind(
        KIND,
        notify,
        concurrency=1,
        timeout=timedelta(minutes=30),
        max_attempts=1,
        default_schedule=schedule,
    )
