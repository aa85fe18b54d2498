"""The job runner `dockyard serve` starts beside its HTTP workers, as a child process.

A child process rather than a thread in serve's master: Granian forks its HTTP workers from the
master (and re-forks them when one dies), and forking a process whose other threads hold locks
(the DB pool, SQLite connections) can leave the child deadlocked. The master keeps only a small
watcher thread that waits for the child and starts another if it dies (out of memory, say).

The first job runner is forked from serve's main process, before Granian starts any thread (`fork`):
it has the settings and most of what the runner imports already (SQLAlchemy, the models, the
services), loaded once for it and the HTTP workers, and shares those pages with them. A fresh
interpreter spent ~0.7 s of CPU importing them again, on the cores the HTTP workers' start has. One
started again after the first died is started from the watcher thread, where serve runs other threads
(Granian's, the drain's): it is a fresh interpreter (`CHILD_COMMAND`), as every one was before; so is
every one where the kernel has no pidfd (Linux before 5.3), which the forked one is waited on with.

This module is what the master imports of it: no services, no database. The job runner itself runs
`dockyard.cli.worker` (`run_forked` in the forked one, `main_in_serve` in a fresh interpreter), which
loads only what the job runner uses (not the CLI's typer commands and API client).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from dockyard.config.settings import Settings
from dockyard.lifecycle import PARENT_ENV, a_worker_is_ready, exit_after, name_process

log = logging.getLogger("dockyard.worker")
STOP_TIMEOUT = 30.0  # seconds a stopping worker waits for its handlers before it is killed
RESTART_PAUSE = 10.0  # seconds between starts of serve's job worker when it keeps dying
# At start the job worker waits until an HTTP worker can answer (or this long): loading the app takes
# each worker about a second of CPU, and the job runner's own start as much again, on the same cores.
READY_WAIT = 10.0
READY_POLL = 0.02
# Its name in ps, top and /proc/PID/comm, whichever way it started (a forked one has serve's command).
PROCESS_NAME = "dockyard-jobs"
# Bound to serve (dockyard.lifecycle) before it imports anything else: killed with serve while it starts.
# No garbage collection while it imports (as in serve: cli.server.freeze_heap); run_worker turns it on.
CHILD_COMMAND = (
    "import gc; gc.disable(); from dockyard.lifecycle import bind_to_parent; bind_to_parent(); "
    "from dockyard.cli.worker import main_in_serve; main_in_serve()"
)


def wait_for_a_ready_worker(stopping: threading.Event | None = None) -> bool:
    """Wait until an HTTP worker can answer or READY_WAIT has passed; False if `stopping` was set."""
    deadline = time.monotonic() + READY_WAIT
    while not a_worker_is_ready() and time.monotonic() < deadline:
        if stopping is None:
            time.sleep(READY_POLL)
        elif stopping.wait(READY_POLL):
            return False
    return True


def _run_forked(settings: Settings) -> None:
    """In the forked job runner: what it runs, imported there (serve's main process holds the HTTP
    workers' modules, not the job handlers)."""
    from dockyard.cli.worker import run_worker

    run_worker(settings)


class ForkedChild:
    """A job runner forked from this process, with the part of subprocess.Popen's interface the
    watcher and `stop` use. Both may wait for it at once (the watcher for good, `stop` for a while):
    each waits on its pidfd, which is readable once it has exited, and whichever comes first reaps it,
    under a lock, which a signal is sent under too (never to a reaped pid, which another process may
    have by then). The pidfd stays open (one per serve: only the first job runner is forked), so
    neither waits on a number the other closed and the kernel gave to another file."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        return self.returncode if self.returncode is not None else self._reap_if_exited(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._reap_if_exited(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(["job runner"], timeout or 0)
        return code

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, signum: int) -> None:
        with self._lock:
            if self.returncode is None:
                os.kill(self.pid, signum)

    def _reap_if_exited(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            select.select([self._pidfd], [], [], timeout)
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == 0:
                    return None
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode


def fork_job_runner(target: Callable[[], None]) -> ForkedChild:
    """Fork a job runner that runs `target` once an HTTP worker is ready (no thread may run in this
    process: see the module's docstring). In a process group of its own, as a started one: Ctrl-C
    reaches serve, which then stops it in order."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()  # serve's fork hook binds it to serve first thing (lifecycle.bind_to_parent)
    if pid == 0:  # the child: never returns

        def run() -> None:
            os.setpgid(0, 0)
            name_process(PROCESS_NAME)
            # Until the runner puts in its own handlers, SIGTERM from serve stops it at once.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            wait_for_a_ready_worker()
            target()

        exit_after(run)
    with contextlib.suppress(OSError):  # as the child does, whichever runs first (it may be gone)
        os.setpgid(pid, pid)
    return ForkedChild(pid, os.pidfd_open(pid))


def can_wait_on_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


class JobWorkerProcess:
    """The job runner child of `serve`: started again (after a pause) whenever it dies, until
    `stop()`. It gets serve's environment (the settings serve validated, the metrics directory) and dies
    with serve; one started again takes the settings from there: after the config file was edited it
    runs on what the rest of the node runs on.

    `target`: what a job runner forked from this process runs (`start` forks the first one then);
    None: each is a fresh interpreter running `command`."""

    def __init__(self, target: Callable[[], None] | None = None) -> None:
        # `worker` names it in ps (as `dockyard worker` would be).
        self.command = [sys.executable, "-c", CHILD_COMMAND, "worker"]
        self.target = target
        self.process: subprocess.Popen[bytes] | ForkedChild | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """In serve before Granian starts: fork the first job runner (with a target), then start the
        thread that watches it."""
        if self.target is not None:
            self.process = fork_job_runner(self.target)
        threading.Thread(target=self._run, name="job-worker-watch", daemon=True).start()

    def _run(self) -> None:
        if self.process is None:
            if not wait_for_a_ready_worker(self._stopping):
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
    """The job worker `serve` runs beside its HTTP workers (None when jobs.run_in_serve is false).
    Called before Granian starts any thread: the first one is forked from here."""
    if not settings.jobs.run_in_serve:
        log.info("jobs.run_in_serve is false: jobs run only in `dockyard worker` processes")
        return None
    worker = JobWorkerProcess((lambda: _run_forked(settings)) if can_wait_on_pidfd() else None)
    worker.start()
    return worker


def stop_job_worker(worker: JobWorkerProcess | None) -> None:
    if worker is not None:
        worker.stop()
