"""The job runner `dockyard serve` starts beside its HTTP workers, as a child process.

A child process rather than a thread in serve's master: Granian forks its HTTP workers from the
master (and re-forks them when one dies), and forking a process whose other threads hold locks
(the DB pool, SQLite connections) can leave the child deadlocked. The master keeps only a small
watcher thread that waits for the child and starts another if it dies (out of memory, say).

This module is what the master imports of it: no services, no database. The child itself runs
`dockyard.cli.worker.main_in_serve`, which loads only what the job runner uses (not the CLI's typer
commands and API client, nor the web stack).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from dockyard.config.settings import Settings
from dockyard.lifecycle import PARENT_ENV, a_worker_is_ready

log = logging.getLogger("dockyard.worker")
STOP_TIMEOUT = 30.0  # seconds a stopping worker waits for its handlers before it is killed
RESTART_PAUSE = 10.0  # seconds between starts of serve's job worker when it keeps dying
# At start the job worker waits until an HTTP worker can answer (or this long): loading the app takes
# each worker about a second of CPU, and the job runner's own start as much again, on the same cores.
READY_WAIT = 10.0
READY_POLL = 0.02
# Bound to serve (dockyard.lifecycle) before it imports anything else: killed with serve while it starts.
# No garbage collection while it imports (as in serve: cli.server.freeze_heap); run_worker turns it on.
CHILD_COMMAND = (
    "import gc; gc.disable(); from dockyard.lifecycle import bind_to_parent; bind_to_parent(); "
    "from dockyard.cli.worker import main_in_serve; main_in_serve()"
)


class JobWorkerProcess:
    """The job runner child of `serve`: started again (after a pause) whenever it dies, until
    `stop()`. It gets serve's environment (the settings serve validated, the metrics directory) and dies
    with serve, and takes the settings from there: one started again after the config file was edited
    runs on what the rest of the node runs on."""

    def __init__(self) -> None:
        # `worker` names it in ps (as `dockyard worker` would be).
        self.command = [sys.executable, "-c", CHILD_COMMAND, "worker"]
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name="job-worker-watch", daemon=True).start()

    def _run(self) -> None:
        deadline = time.monotonic() + READY_WAIT
        while not a_worker_is_ready() and time.monotonic() < deadline:
            if self._stopping.wait(READY_POLL):
                return
        self._spawn()
        self._watch()

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
            if process is None:  # stopped before it started
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("the job worker exited with %s; starting another", code)
            # A worker that dies at once (a bad config) is not restarted in a tight loop.
            self._stopping.wait(max(0.0, RESTART_PAUSE - (time.monotonic() - started)))
            self._spawn()


def start_job_worker(settings: Settings) -> JobWorkerProcess | None:
    """The job worker `serve` runs beside its HTTP workers (None when jobs.run_in_serve is false)."""
    if not settings.jobs.run_in_serve:
        log.info("jobs.run_in_serve is false: jobs run only in `dockyard worker` processes")
        return None
    worker = JobWorkerProcess()
    worker.start()
    return worker


def stop_job_worker(worker: JobWorkerProcess | None) -> None:
    if worker is not None:
        worker.stop()
