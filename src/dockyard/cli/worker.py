"""`dockyard worker`: run background jobs (no HTTP). `dockyard serve` runs one in a child process per
node unless `jobs.run_in_serve` is false (`cli/job_child.py`: forked from serve, whose modules it shares);
HA nodes may run more, anywhere the database is reachable.

Started on its own, the job runner imports what it runs: the services (`dockyard.services`), not the
web stack, the management API or the CLI's commands.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading

from prometheus_client import CollectorRegistry, ProcessCollector

from dockyard.bootstrap import secure_data
from dockyard.cli.job_child import PROCESS_NAME, STOP_TIMEOUT
from dockyard.cli.slim import server_settings
from dockyard.config.settings import Settings
from dockyard.db.session import Database
from dockyard.jobs.metrics import MetricsServer, QueueDepthCollector
from dockyard.jobs.services import JobRunner
from dockyard.lifecycle import PARENT_ENV, die_with_parent, name_process
from dockyard.observability.logging import configure_logging
from dockyard.observability.metrics import multiprocess_directory
from dockyard.services import build_job_runner, build_services, tune_malloc

log = logging.getLogger("dockyard.worker")


def run_worker(settings: Settings, node: str | None = None, metrics_listen: str | None = None) -> None:
    """Run the job runner until SIGTERM or SIGINT; running jobs are handed back to the queue.

    With `metrics_listen` (or `jobs.metrics_listen`) it also serves its job metrics over HTTP; the
    worker `serve` starts does not: its metrics are on serve's own /metrics."""
    started_by_serve = PARENT_ENV in os.environ
    die_with_parent(STOP_TIMEOUT + 5)  # time to hand the running jobs back
    tune_malloc()  # its job threads read and hash blobs, as the HTTP workers do
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    secure_data(settings)
    if metrics_listen is None and not started_by_serve:
        metrics_listen = settings.jobs.metrics_listen
    services = build_services(settings, migrate=True)
    runner = build_job_runner(services, node)
    # What it imported and built lives as long as it does: out of the collector's reach, which serve's
    # job runner turned off while it did so (cli.job_child: ~200 collections that freed next to nothing).
    gc.freeze()
    gc.enable()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    metrics_server = _serve_metrics(metrics_listen, services.db, runner) if metrics_listen else None
    runner.start()
    try:
        while not stop.wait(3600):
            pass
    finally:
        log.info("stopping the job runner")
        runner.stop(timeout=STOP_TIMEOUT)
        if metrics_server is not None:
            metrics_server.close()
        services.close()


def main_in_serve() -> None:
    """The job runner child of `serve` (`cli/job_child.py` starts it): `dockyard worker` on the settings
    serve validated (config.loader.handed_down), without the CLI's typer commands and API client, which
    this process never uses. Started otherwise, it reads `--config PATH` as `dockyard worker` does."""
    name_process(PROCESS_NAME)
    run_worker(server_settings())


def _serve_metrics(listen: str, db: Database, runner: JobRunner) -> MetricsServer:
    """The runner's counters, the queue's depth and (this being one process) its CPU and memory."""
    registry = runner.metrics.registry if runner.metrics else CollectorRegistry()
    registry.register(QueueDepthCollector(db, runner.kinds))
    if multiprocess_directory() is None:
        ProcessCollector(registry=registry)
    return MetricsServer(listen, registry)
