"""`dockyard worker`: run background jobs (no HTTP). `dockyard serve` starts one as a child process per
node unless `jobs.run_in_serve` is false; HA nodes may run more, anywhere the database is reachable.

A child process rather than a thread in serve's master: Granian forks its HTTP workers from the
master (and re-forks them when one dies), and forking a process whose other threads hold locks
(the DB pool, SQLite connections) can leave the child deadlocked. The master keeps only a small
watcher thread that waits for the child and starts another if it dies (out of memory, say).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector

from dockyard.app import build_job_runner, build_services, secure_data
from dockyard.config.settings import Settings
from dockyard.db.session import Database
from dockyard.jobs.metrics import MetricsServer, QueueDepthCollector
from dockyard.jobs.services import JobRunner
from dockyard.lifecycle import PARENT_ENV, die_with_parent
from dockyard.observability.logging import configure_logging
from dockyard.observability.metrics import multiprocess_directory

log = logging.getLogger("dockyard.worker")
STOP_TIMEOUT = 30.0  # seconds a stopping worker waits for its handlers before it is killed
RESTART_PAUSE = 10.0  # seconds between starts of serve's job worker when it keeps dying


def run_worker(settings: Settings, node: str | None = None, metrics_listen: str | None = None) -> None:
    """Run the job runner until SIGTERM or SIGINT; running jobs are handed back to the queue.

    With `metrics_listen` (or `jobs.metrics_listen`) it also serves its job metrics over HTTP; the
    worker `serve` starts does not: its metrics are on serve's own /metrics."""
    started_by_serve = PARENT_ENV in os.environ
    die_with_parent(STOP_TIMEOUT + 5)  # time to hand the running jobs back
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    secure_data(settings)
    if metrics_listen is None and not started_by_serve:
        metrics_listen = settings.jobs.metrics_listen
    services = build_services(settings, migrate=True)
    runner = build_job_runner(services, node)
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


def _serve_metrics(listen: str, db: Database, runner: JobRunner) -> MetricsServer:
    """The runner's counters, the queue's depth and (this being one process) its CPU and memory."""
    registry = runner.metrics.registry if runner.metrics else CollectorRegistry()
    registry.register(QueueDepthCollector(db, runner.kinds))
    if multiprocess_directory() is None:
        ProcessCollector(registry=registry)
    return MetricsServer(listen, registry)


class JobWorkerProcess:
    """The `dockyard worker` child of `serve`: started again (after a pause) whenever it dies, until
    `stop()`. It gets serve's environment (the config path, the metrics directory) and dies with serve."""

    def __init__(self, config_path: Path | None) -> None:
        self.command = [sys.executable, "-c", "from dockyard.cli.main import main; main()", "worker"]
        if config_path is not None:
            self.command += ["--config", str(config_path.resolve())]
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._watch, name="job-worker-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _spawn(self) -> None:
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        with self._lock:
            if not self._stopping.is_set():
                # Its own process group: Ctrl-C reaches serve, which then stops the worker in order.
                self.process = subprocess.Popen(self.command, env=env, process_group=0)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("the job worker exited with %s; starting another", code)
            # A worker that dies at once (a bad config) is not restarted in a tight loop.
            self._stopping.wait(max(0.0, RESTART_PAUSE - (time.monotonic() - started)))
            self._spawn()


def start_job_worker(settings: Settings, config_path: Path | None) -> JobWorkerProcess | None:
    """The job worker `serve` runs beside its HTTP workers (None when jobs.run_in_serve is false)."""
    if not settings.jobs.run_in_serve:
        log.info("jobs.run_in_serve is false: jobs run only in `dockyard worker` processes")
        return None
    worker = JobWorkerProcess(config_path)
    worker.start()
    return worker


def stop_job_worker(worker: JobWorkerProcess | None) -> None:
    if worker is not None:
        worker.stop()
