"""The job queue's services: `JobQueue` (enqueue, look at, cancel, retry, schedules) and `JobRunner`
(the threads that claim and run jobs). See docs/jobs.md."""

from __future__ import annotations

from dockyard.jobs.queue import JobQueue
from dockyard.jobs.runner import JobRunner

__all__ = ["JobQueue", "JobRunner"]
