"""Job metrics a scrape computes from the queue, and the plain HTTP endpoint a standalone `dockyard
worker` serves them on (`--metrics-listen`, `jobs.metrics_listen`).

`serve` has /metrics already: the worker it starts writes its counters into serve's multiprocess
directory. A `dockyard worker` on another node has no HTTP server, so it can open this one: the
same metric names as on serve's /metrics, so one dashboard fits both.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dockyard.config.settings import split_addr
from dockyard.db.session import Database
from dockyard.jobs.models import JobRow

if TYPE_CHECKING:
    from threading import Thread
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("dockyard.jobs")
PENDING_STATUSES = ("queued", "running")


class QueueDepthCollector(Collector):
    """`jobs_queue_depth{kind,status}`: the jobs queued (due or waiting to retry) and running, over
    the whole deployment, read from the database at each scrape. Every known kind is listed, at 0 when
    it has nothing pending, so a dashboard sees the series before the first job."""

    def __init__(self, db: Database, kinds: Collection[str]) -> None:
        self.db = db
        self.kinds = sorted(kinds)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "jobs_queue_depth", "Jobs queued or running now, by kind and status.", labels=["kind", "status"]
        )
        counts = dict.fromkeys(((kind, status) for kind in self.kinds for status in PENDING_STATUSES), 0)
        with self.db.read() as connection:
            rows = connection.execute(
                select(JobRow.kind, JobRow.status, func.count())
                .where(JobRow.status.in_(PENDING_STATUSES))
                .group_by(JobRow.kind, JobRow.status)
            ).all()
        for kind, status, count in rows:
            counts[(kind, status)] = count
        for (kind, status), count in sorted(counts.items()):
            family.add_metric([kind, status], count)
        yield family

    def exposition(self) -> bytes:
        """The gauge as Prometheus text, for an endpoint that adds it to its own (serve's /metrics)."""
        registry = CollectorRegistry()
        registry.register(self)
        return generate_latest(registry)


class MetricsServer:
    """prometheus_client's HTTP exposition of `registry` on `listen`, in a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = split_addr(listen)
        self._server: WSGIServer
        self._thread: Thread
        self._server, self._thread = start_http_server(port, host, registry=registry)
        log.info("serving job metrics on http://%s/metrics", listen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
