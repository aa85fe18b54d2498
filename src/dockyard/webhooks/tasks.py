"""The `notify` job: send the outbox to the endpoints. Queued by each recorded event (when none is
waiting), by itself for an endpoint that is backing off, and every few minutes as a safety net."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dockyard.config.notifications_settings import NotificationsSettings
from dockyard.db.session import Database
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.queue import JobQueue
from dockyard.webhooks.services import KIND, Post, Sender

SAFETY_NET = "@every 5m"


def notify_kind(
    db: Database,
    jobs: JobQueue,
    settings: NotificationsSettings,
    allowed_networks: list[str],
    post: Post | None = None,
) -> JobKind:
    client: list[Post] = []

    def sender_post() -> Post:
        if post is not None:
            return post
        if not client:  # built on the first run: a runner with no endpoints never loads httpx
            from dockyard.webhooks.delivery import guarded_client, http_post

            client.append(http_post(guarded_client(allowed_networks)))
        return client[0]

    def notify(ctx: JobContext) -> Mapping[str, Any]:
        result = Sender(db, jobs, settings, sender_post()).run(ctx.check_cancelled)
        for name, count in result["sent"].items():
            if count:
                ctx.log(f"{name}: sent {count} events")
        return result

    schedule = SAFETY_NET if settings.active else None
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
