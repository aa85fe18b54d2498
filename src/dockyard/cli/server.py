"""`dockyard serve`: migrate, then run the ASGI app under Granian with several worker processes.

Granian forks the HTTP workers from the main process, so every module it holds is in each of them too:
it holds what the workers run and nothing else. The one-off start-up work (migrations with Alembic, the
first administrator, the data directory's checks) runs in a forked child that exits before any worker
starts (`_prepare_in_child`); meanwhile, on the core that child leaves idle, the main process imports the
app the workers run (`_preload_worker_modules`), once for all of them: a worker forked from it starts
with the app loaded (~0.5 s of CPU each, on the way to the first answer, in every worker and every one
Granian starts again), and shares those modules' memory with the others instead of holding its own copy.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dockyard.api.drain import DrainState, drain_directory
from dockyard.cli.job_child import start_job_worker, stop_job_worker
from dockyard.cli.slim import server_settings
from dockyard.cli.startup_cache import save_and_uninstall
from dockyard.config.loader import hand_down
from dockyard.config.settings import Settings
from dockyard.datadir import private_umask
from dockyard.lifecycle import ADMIN_PASSWORD_ENV, WORKER_GRACE, exit_after, expect_ready_workers, mark_parent
from dockyard.observability.logging import configure_logging
from dockyard.observability.metrics import prepare_multiprocess

if TYPE_CHECKING:
    from granian.constants import Loops
    from sqlalchemy import Engine

log = logging.getLogger("dockyard.serve")
DRAIN_POLL_SECONDS = 0.1
WORKERS_KILL_TIMEOUT = WORKER_GRACE  # seconds: a worker that does not stop after the drain is killed


# The collector is off while it imports, as in `cli.entry` (freeze_heap), and the code compiled from text
# comes from the last start's (cli.startup_cache).
SERVER_COMMAND = (
    "import gc; gc.disable(); from dockyard.cli.startup_cache import install; install(); "
    "from dockyard.cli.server import main; main()"
)


def exec_server(settings: Settings, config_path: Path | None) -> NoReturn:
    """Become, in this process (the same pid), a fresh interpreter that runs only the server: what
    `dockyard serve` loaded to read its command line (typer, click, every management command) would
    otherwise stay in the main process and in each worker Granian forks from it. It gets the settings
    this process validated (config.loader.hand_down); `--config` names the file in ps."""
    argv = [sys.executable, "-c", SERVER_COMMAND, "serve"]
    if config_path is not None:
        argv += ["--config", str(config_path.resolve())]
    hand_down(settings)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, argv)


def main() -> None:
    """`dockyard serve` once `exec_server` has replaced the CLI."""
    run_server(server_settings())


def run_server(settings: Settings) -> None:
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    private_umask()  # what this process and its workers create is private (dockyard.datadir)
    workers = settings.http.workers
    if settings.storage.driver_name == "inmemory" and workers > 1:
        log.warning("storage.inmemory keeps blobs in one process: serving with 1 worker, not %d", workers)
        workers = 1
    tune_granian_allocator(workers)
    _import_for_prepare(settings)
    _prepare_in_child(lambda: _prepare(settings), meanwhile=lambda: _preload_worker_modules(settings))
    # Workers are separate processes: their metrics meet in files that /metrics aggregates.
    prepare_multiprocess(settings.datadir / "run" / "metrics")
    # The HTTP workers and the job runner take these settings, not the file (which may change).
    hand_down(settings)
    from granian import Granian
    from granian.constants import Interfaces, SSLProtocols
    from granian.http import HTTP1Settings

    tls = settings.http.tls
    server = Granian(
        "dockyard.app:worker_app",
        factory=True,
        interface=Interfaces.ASGI,
        loop=event_loop(),
        address=settings.http.bind_host,
        port=settings.http.bind_port,
        workers=workers,
        http1_settings=HTTP1Settings(keep_alive=True),
        backlog=2048,
        log_enabled=True,
        log_access=False,
        ssl_cert=tls.certificate,
        ssl_key=tls.key,
        ssl_protocol_min=SSLProtocols.tls12,
        respawn_failed_workers=True,
        # After the drain (below) the workers get this long to finish before they are killed.
        workers_kill_timeout=WORKERS_KILL_TIMEOUT,
    )
    drain = DrainState(drain_directory(settings))
    drain.reset()
    drainer = Drainer(drain, settings.http.drain_timeout.seconds, server.signal_handler_interrupt)
    # Granian installs its SIGTERM handler at startup (stop at once); ours replaces it there.
    server.on_startup(drainer.install)
    mark_parent()  # the HTTP workers and the job runner die with this process (dockyard.lifecycle)
    expect_ready_workers(settings.datadir / "run" / "http-ready")
    save_and_uninstall()  # what the imports compiled from text, for the next start (cli.startup_cache)
    # One per node, beside the HTTP workers: forked now, while no thread runs here (cli.job_child).
    job_worker = start_job_worker(settings)
    freeze_heap()
    try:
        server.serve()
    finally:
        stop_job_worker(job_worker)


# The environment variable that configures the jemalloc Granian's library is built with (its symbols are
# prefixed `_rjem_`, so is the variable), read once, when the library first allocates.
GRANIAN_MALLOC_CONF_ENV = "_RJEM_MALLOC_CONF"


def tune_granian_allocator(workers: int, cpus: int | None = None) -> None:
    """Fewer jemalloc arenas in the HTTP workers' Rust side (Granian's request and response buffers):
    each worker's share of the cores (one each for two workers on two cores), not jemalloc's 4 per
    core. Each of Granian's threads allocates from an arena of its own until there are that many, and
    each arena keeps the pages it freed for up to 10 s for its next allocations: with 8, a worker held
    ~3 MiB more after `python -m bench.memory`'s load, and its peak was higher by about as much
    (docs/benchmarks.md, "Memory"). The same decay, so no more purging work. Set before Granian is
    imported (the library reads the variable once); an operator's own setting is left as it is."""
    if GRANIAN_MALLOC_CONF_ENV in os.environ:
        return
    arenas = max(1, (cpus or os.cpu_count() or 1) // max(1, workers))
    os.environ[GRANIAN_MALLOC_CONF_ENV] = f"narenas:{arenas}"


def event_loop() -> Loops:
    """The HTTP workers' event loop: uvloop, not asyncio's own (a cached blob HEAD costs a worker ~13%
    fewer instructions, a manifest GET ~8%: docs/benchmarks.md, "The HTTP workers' event loop"). Named,
    not Granian's `auto`, which would take any other loop package that happens to be installed. A venv
    installed before uvloop was a dependency serves on asyncio's, with a warning, rather than not at all."""
    from granian.constants import Loops

    if find_spec("uvloop") is None:
        log.warning("uvloop is not installed: the HTTP workers run on asyncio's slower loop (reinstall it)")
        return Loops.asyncio
    return Loops.uvloop


def freeze_heap() -> None:
    """Move every object this process holds (the preloaded app) out of the garbage collector's reach,
    just before Granian forks the HTTP workers, then turn the collector on (`dockyard serve` starts
    with it off: cli.entry): a collection writes into the header of each object it examines, which
    copies the page holding it into the process that ran it. Frozen, the modules' objects stay on pages
    the workers and this process share; each collects only what it makes.

    Off until here, as Python's documentation of gc.freeze advises for a process that forks: the
    imports made ~200 collections, ~65 ms of CPU (~9% of serve's start before the fork) that found
    almost nothing to free. No collection before the freeze either: it would free ~1,200 objects
    (~0.5 MiB, held for good instead) for ~0.1 s of CPU on the way to the fork."""
    gc.freeze()
    gc.enable()


class Drainer:
    """SIGTERM: flag the node as draining (/readyz answers 503 in every worker), wait until no request
    is in flight or `timeout` has passed, then let the server stop its workers. A second SIGTERM, or
    SIGINT (Ctrl-C), stops at once.

    Granian forks its HTTP workers after `install`, so a worker inherits this handler until it has
    loaded the app and put in its own. Serve stops its workers with SIGTERM: one that gets it in that
    window (serve stopped during start-up) must stop as a plain process would, not drain the master's
    state and ignore the signal (Granian then waited its 10 s kill timeout on it, and each stop did)."""

    def __init__(self, state: DrainState, timeout: float, stop: Callable[[], None]) -> None:
        self.state = state
        self.timeout = timeout
        self.stop = stop
        self.started = False
        self.master_pid = os.getpid()

    def install(self) -> None:
        self.master_pid = os.getpid()
        signal.signal(signal.SIGTERM, self._on_sigterm)
        relay_signals_to_main_thread()
        hold_stop_signals_across_forks()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        if os.getpid() != self.master_pid:  # a worker still loading the app: no request in flight yet
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if self.started:
            self.stop()
            return
        self.started = True
        self.state.begin()
        threading.Thread(target=self._drain, name="drain", daemon=True).start()

    def _drain(self) -> None:
        started = time.monotonic()
        log.info("SIGTERM: draining (not ready; up to %gs for requests in flight)", self.timeout)
        while (busy := self.state.in_flight()) > 0 and time.monotonic() - started < self.timeout:
            time.sleep(DRAIN_POLL_SECONDS)
        if busy > 0:
            log.warning("drain timeout: stopping with %d requests still in flight", busy)
        else:
            log.info("drained in %.1fs: stopping", time.monotonic() - started)
        self.stop()


# Sent by the relay to the main thread to wake it: ignored by default, and no part of serve's protocol.
_WAKE = signal.SIGWINCH


def relay_signals_to_main_thread() -> None:
    """Python runs signal handlers in the main thread only, when it next runs Python code; but the
    kernel may deliver a signal sent to serve to any of its threads (Granian's and the job runner's
    watchers, waiting for their children). Granian's main thread sleeps in an Event.wait() without
    timeout, which only a signal delivered to that thread interrupts: the handler (the drain on
    SIGTERM, Granian's stop on SIGINT) then never ran, and serve ignored the signal for good (a stop
    right after a start hung about one time in ten on a loaded machine).

    Whatever thread a signal lands on, the C-level handler writes its number to the wakeup fd; a relay
    thread reads it and sends _WAKE to the main thread itself (pthread_kill), which interrupts its wait
    so it runs the pending handlers. In a process forked from this one (a worker) the wakeup fd is
    reset, before it runs anything else."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.signal(_WAKE, lambda signum, frame: None)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    main = threading.main_thread().ident
    assert main is not None

    def relay() -> None:
        while data := os.read(read, 64):
            if any(number != _WAKE for number in data):
                signal.pthread_kill(main, _WAKE)

    def in_child() -> None:  # a worker's signals are its own; the app sets its fd (app/loop_signals.py)
        signal.set_wakeup_fd(-1)
        signal.signal(_WAKE, signal.SIG_DFL)
        os.close(read)
        os.close(write)

    os.register_at_fork(after_in_child=in_child)
    threading.Thread(target=relay, name="signal-relay", daemon=True).start()


# What Granian stops its workers with (SIGTERM), and Ctrl-C at a terminal (SIGINT, to the whole group).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_held = threading.local()  # the forking thread's signal mask, from just before a fork to just after it
_HOLDING: list[bool] = []


def hold_stop_signals_across_forks() -> None:
    """A stop signal that reaches a process serve has just forked (a worker Granian stops as it starts
    them) before CPython's own after-fork step in that child is lost: the step clears the signals the
    C-level handler noted, lest one meant for the parent be handled twice in the child
    (PyOS_AfterFork_Child). Such a worker loaded the app and served on, and Granian killed it 10 s
    later. From now on the forking thread blocks SIGTERM and SIGINT from just before each fork to just
    after it: the child inherits the block, and a signal sent to it meanwhile waits in the kernel until
    its last after-fork step (this one's, registered after the others) lets it in, where the handler
    it inherited (Drainer's) stops it. In serve itself, one that lands meanwhile reaches another
    thread, or this one a moment later."""
    if _HOLDING:
        return
    unblock = _unblock_stop_signals
    os.register_at_fork(before=_block_stop_signals, after_in_parent=unblock, after_in_child=unblock)
    _HOLDING.append(True)


def _block_stop_signals() -> None:
    _held.mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _unblock_stop_signals() -> None:
    mask = getattr(_held, "mask", None)
    if mask is not None:
        del _held.mask
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _prepare(settings: Settings) -> None:
    """What must be done once, before any worker starts; run in a child (`_prepare_in_child`)."""
    from dockyard.bootstrap import secure_data
    from dockyard.db.engine import build_engine
    from dockyard.db.revision import ensure_current

    secure_data(settings)  # 0700/0600, like PostgreSQL's data directory
    if settings.storage.driver_name == "inmemory":
        _reset_ephemeral_database(settings)
    _allocate_shared_files(settings)
    # Migrate once here, not in every worker; Alembic loads only when the schema is not at the head.
    engine = build_engine(settings.database_url)
    ensure_current(engine)
    _first_start(settings, engine)
    engine.dispose()
    _warn_if_read_only(settings)


def _import_for_prepare(settings: Settings) -> None:
    """Import the modules `_prepare` runs on that the workers run too (SQLAlchemy and the models, the
    accounts, the key store), before the start-up child is forked: it inherits them, instead of
    importing them again beside `_preload_worker_modules`, which imports them anyway (~0.2 s of CPU
    less, on the cores the start-up shares). Alembic, when the schema is not at the head, the
    migration check and the first administrator's module (`accounts.bootstrap`, which no worker of
    serve runs) stay in the child."""
    from dockyard.bootstrap import auth_mode
    from dockyard.db.session import Database  # noqa: F401

    if auth_mode(settings) == "dockyard":  # the accounts themselves come with the models above
        import dockyard.auth.keystore  # noqa: F401


def _preload_worker_modules(settings: Settings) -> None:
    """Import what each HTTP worker runs (`dockyard.app`: SQLAlchemy, the models, the services, the
    auth stack; not the management API, which loads on its first request), and what `worker_app`
    would import on its way for this configuration (`dockyard.app.preload`), once, before Granian forks
    the workers from this process. It starts no thread and opens no connection or file."""
    from dockyard.app import preload

    preload(settings)


def _prepare_in_child(work: Callable[[], None], meanwhile: Callable[[], None] = lambda: None) -> None:
    """Run `work` in a forked child and wait for it; exit as it did if it failed. What it imports
    and allocates (Alembic and the migration scripts, argon2's block for a password) leaves with it,
    instead of staying in this process and in every worker Granian forks from it. This process runs
    `meanwhile` while it waits. No thread runs yet here, so forking is safe."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        # It may migrate: the collector is on here, for what the child makes (serve has it off until
        # the workers' fork, freeze_heap), not for the ~175,000 objects of the imports it inherited.
        gc.freeze()
        gc.enable()
        exit_after(work)  # sys.exit("message") and SystemExit(2) mean what they say here too
    try:
        meanwhile()
    except BaseException:  # Ctrl-C included: the child stops too (or finishes what it does), then us
        os.waitpid(pid, 0)
        raise
    try:
        _, status = os.waitpid(pid, 0)
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it finish stopping
        os.waitpid(pid, 0)
        raise
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(code if code > 0 else 1)


def _allocate_shared_files(settings: Settings) -> None:
    """Allocate the change feed the workers map, before they start: on a full disk serve stops here
    with a message rather than workers dying of SIGBUS (each worker's own files, for metrics and
    drain counts, fall back to memory when there is no room for them)."""
    from dockyard.bootstrap import local_change_feed_path

    path = local_change_feed_path(settings)
    if path is None:
        return
    from dockyard.coordination.feeds import LocalChangeFeed

    try:
        LocalChangeFeed(path)
    except OSError as exc:
        log.error("cannot allocate %s: %s", path, exc.strerror or exc)
        sys.exit(f"dockyard: no room for {path} ({exc.strerror or exc}): free space and start again")


def _reset_ephemeral_database(settings: Settings) -> None:
    database = settings.ephemeral_database
    if database is None:
        return
    for suffix in ("", "-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)


def _warn_if_read_only(settings: Settings) -> None:
    """The runtime switch outlives a restart on the same config (db.readonly): say so at start."""
    from dockyard.db.readonly import ReadOnlyFlag

    flag = ReadOnlyFlag.for_settings(settings)
    state = flag.state() if flag.is_on() else None
    if state is not None:
        log.warning(
            "read-only since %s: %s. Pulls work, writes are refused; `dockyard read-only off` takes "
            "writes again",
            state.since,
            state.reason or "no reason given",
        )


def _first_start(settings: Settings, engine: Engine) -> None:
    """Create the first administrator (dockyard's own auth) and the shared session secret, once, and
    encrypt token signing keys stored in the clear by an older version, before workers start. A
    generated password is shown here, once, and kept only in its 0600 file."""
    from dockyard.accounts.interfaces import WeakPassword
    from dockyard.bootstrap import auth_mode, encrypt_signing_keys, first_admin, session_secret
    from dockyard.db.session import Database

    if auth_mode(settings) == "none":
        log.warning(
            "authentication is off: anyone who can reach %s may push, pull and delete", settings.http.addr
        )
        return
    try:
        password = first_admin(settings, Database(engine), os.environ.get(ADMIN_PASSWORD_ENV))
    except WeakPassword as error:  # one line naming the variable, as for a bad config: not a traceback
        sys.stderr.write(f"dockyard: {error.message}\n")
        raise SystemExit(2) from None
    session_secret(settings)
    if auth_mode(settings) == "dockyard":  # token signing keys: none of their own in the other modes
        encrypt_signing_keys(settings, Database(engine))
    if password is not None:
        path = settings.datadir / "admin-password"
        sys.stderr.write(
            f"\n  dockyard: created the administrator 'admin' with password: {password}\n"
            f"  (shown once; also in {path}, mode 0600. Change it after logging in.)\n\n"
        )
