"""The event trigger: after a tag is pushed to this registry, each enabled push policy with the event
trigger whose filters select it gets a `replicate` job for that one tag (the copy runs on a job worker,
never in the request); after a tag is deleted here, each such policy that propagates deletes gets one
that deletes it on the destination. The event policies are cached for `ttl` seconds per process
(`replication.event_policies_ttl`), so a push with none costs a look at a list, and one with some the
jobs' inserts. The policies' service (with replication's models) is built on the first tag pushed or
deleted: not before serve forks its workers, where it cost each start ~20 ms of CPU (issue 18)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.jobs.queue import JobQueue

if TYPE_CHECKING:
    from dockyard.replication.interfaces import Policy
    from dockyard.replication.services import ReplicationPolicies

log = logging.getLogger("dockyard.replication")
KIND = "replicate"  # tasks.KIND, without loading the job's code in an HTTP worker


class ReplicateOnPush:
    def __init__(self, policies: Callable[[], ReplicationPolicies], jobs: JobQueue, ttl: float) -> None:
        self._build_policies = policies  # called once, on the first tag pushed or deleted
        self._policies: ReplicationPolicies | None = None
        self.jobs = jobs
        self.ttl = ttl  # seconds the event policies are remembered
        self._known: tuple[tuple[Policy, ...], float] | None = None
        self._lock = threading.Lock()

    def wanted(self, repository: str, reference: str) -> bool:
        """Whether a push like this may trigger a run (no I/O): a tag (not a digest), when event
        policies may exist (or are not known yet)."""
        if ":" in reference:
            return False
        known = self._known
        if known is None or known[1] <= time.monotonic():
            return True
        return any(_selects(policy, repository, reference) for policy in known[0])

    def pushed(self, repository: str, tag: str) -> list[int]:
        """Queue a run of each event policy that selects the tag; the jobs' ids. Runs in a worker
        thread. A failure is logged, never fails the push (the manifest is stored already)."""
        try:
            queued = []
            for policy in self._event_policies():
                if _selects(policy, repository, tag):
                    params = {"policy": policy.name, "trigger": "event", "repository": repository, "tag": tag}
                    queued.append(self.jobs.enqueue(KIND, params))
            return queued
        except Exception:
            log.exception("replication on push of %s:%s not queued", repository, tag)
            return []

    def deleted(self, repository: str, tag: str) -> list[int]:
        """A tag deleted here: queue its delete on the destination of each event policy that selects
        it and propagates deletes; the jobs' ids (a worker thread; failures logged, as for pushes)."""
        try:
            queued = []
            for policy in self._event_policies():
                if policy.propagate_deletes and _selects(policy, repository, tag):
                    params = {
                        "policy": policy.name,
                        "trigger": "event",
                        "repository": repository,
                        "tag": tag,
                        "deleted": True,
                    }
                    queued.append(self.jobs.enqueue(KIND, params))
            return queued
        except Exception:
            log.exception("replication of the delete of %s:%s not queued", repository, tag)
            return []

    def _event_policies(self) -> tuple[Policy, ...]:
        now = time.monotonic()
        known = self._known
        if known is not None and known[1] > now:
            return known[0]
        if self._policies is None:  # two threads may both build it: no state of its own
            self._policies = self._build_policies()
        policies = tuple(self._policies.on_push())
        with self._lock:
            self._known = (policies, now + self.ttl)
        return policies


def _selects(policy: Policy, repository: str, tag: str) -> bool:
    return policy.selects_repository(repository) and policy.selects_tag(tag)
