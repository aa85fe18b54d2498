"""`dockyard worker`: run background jobs (no HTTP). `dockyard serve` starts one as a child process per
node unless `jobs.run_in_serve` is false; HA nodes may run more, anywhere the database is reachable.

A child process rather than a thread in serve's master: Granian forks its HTTP workers from the
master (and re-forks them when one dies), and forking a process whose other threads hold locks
(logging, the DB pool) can leave the child deadlocked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from dockyard.app import build_job_runner, build_services
from dockyard.config.settings import Settings
from dockyard.observability.logging import configure_logging

log = logging.getLogger("dockyard.worker")
_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 30.0  # seconds a stopping worker waits for its handlers before it is killed


def run_worker(settings: Settings, node: str | None = None) -> None:
    """Run the job runner until SIGTERM or SIGINT; running jobs are handed back to the queue."""
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    services = build_services(settings, migrate=True)
    runner = build_job_runner(services, node)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runner.start()
    try:
        while not stop.wait(3600):
            pass
    finally:
        log.info("stopping the job runner")
        runner.stop(timeout=STOP_TIMEOUT)
        services.close()


def start_job_worker(settings: Settings, config_path: Path | None) -> subprocess.Popen[bytes] | None:
    """The worker `serve` runs beside its HTTP workers (None when jobs.run_in_serve is false). It gets
    serve's environment (the config path, the metrics directory) and dies with serve."""
    if not settings.jobs.run_in_serve:
        log.info("jobs.run_in_serve is false: jobs run only in `dockyard worker` processes")
        return None
    command = [sys.executable, "-c", "from dockyard.cli.main import main; main()", "worker"]
    if config_path is not None:
        command += ["--config", str(config_path.resolve())]
    return subprocess.Popen(command, preexec_fn=_die_with_parent)


def stop_job_worker(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    # If serve itself is killed (SIGKILL), the kernel sends the worker SIGTERM: it hands its jobs back.
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()  # Ctrl-C in serve's terminal reaches serve, which stops the worker in order
