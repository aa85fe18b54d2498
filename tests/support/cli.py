"""Run a `dockyard` command in the test process, as the `dockyard` binary would run it.

Each start of the binary costs ~0.33 s of CPU (interpreter, typer, every command's module) before the
command runs, and the suite ran it hundreds of times. Tests of what a command does call `run_dockyard`:
the same command tree (`dockyard.cli.main.app`) parses the same argv, with stdin, the environment and the
working directory given, and stdout, stderr and the exit status come back separately, as a
`subprocess.CompletedProcess`. Tests of the process itself (the console entry point, `serve`, signals,
what a process imports, the command tree without pydantic) still start the binary (`server.DOCKYARD`).

What a command could leave behind in this process is put back after it: the environment, the working
directory, the umask (every command that reads the server's settings makes it private), signal
handlers, the root logger and structlog's configuration, and the database engines it built (disposed,
as the end of a process would close their connections). A thread it leaves running fails the test, and
so does an exception that escapes the command: the binary would print a traceback, which no test wants
to pass as output.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, overload

import click
from click import formatting
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

Arg = str | Path | int
# A command runs on the process's environment, working directory and standard streams: one at a time.
_ONE_AT_A_TIME = threading.Lock()
_LEFTOVER_THREAD_GRACE_SECONDS = 5.0
_command: click.Command | None = None


def dockyard_command() -> click.Command:
    """The click command behind `dockyard` (built once: typer builds it from the functions' signatures)."""
    global _command
    if _command is None:
        import typer.main

        from dockyard.cli.main import app

        _command = typer.main.get_command(app)
    return _command


@overload
def run_dockyard(
    *args: Arg,
    input: str | bytes | None = ...,
    env: Mapping[str, str] | None = ...,
    cwd: str | Path | None = ...,
    text: Literal[True] = ...,
) -> subprocess.CompletedProcess[str]: ...
@overload
def run_dockyard(
    *args: Arg,
    input: str | bytes | None = ...,
    env: Mapping[str, str] | None = ...,
    cwd: str | Path | None = ...,
    text: Literal[False],
) -> subprocess.CompletedProcess[bytes]: ...
def run_dockyard(
    *args: Arg,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess[Any]:
    """`dockyard ARGS...` with `input` on stdin (empty if None: never the test's own stdin), in `env`
    (the whole environment, as subprocess takes it; None: this process's) and `cwd`. Never raises for a
    failing command: check `returncode`, as with `subprocess.run(..., check=False)`."""
    argv = [str(arg) for arg in args]
    with _ONE_AT_A_TIME, _process_state_restored(env, cwd), _engines_disposed(), _no_thread_left(argv):
        runner = CliRunner()
        with runner.isolation(input=input if input is not None else "") as (stdout, stderr, _):
            formatting.FORCED_WIDTH = None  # CliRunner forces 80 columns; the binary reads COLUMNS
            returncode = _exit_status(argv)
            sys.stdout.flush()
            sys.stderr.flush()
            out, err = stdout.getvalue(), stderr.getvalue()
    if text:
        return subprocess.CompletedProcess(["dockyard", *argv], returncode, out.decode(), err.decode())
    return subprocess.CompletedProcess(["dockyard", *argv], returncode, out, err)


def _exit_status(argv: list[str]) -> int:
    """Run the command as `sys.exit(app())` does in the binary; what is not an exit escapes."""
    try:
        dockyard_command().main(args=argv, prog_name="dockyard", standalone_mode=True)
    except SystemExit as exit_:
        if _interrupted(exit_):
            raise KeyboardInterrupt from None  # typer makes Ctrl-C exit 130: the test run stops instead
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        sys.stderr.write(f"{code}\n")  # sys.exit("message"): the interpreter prints it on stderr, exit 1
        return 1
    return 0


def _interrupted(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@contextmanager
def _process_state_restored(env: Mapping[str, str] | None, cwd: str | Path | None) -> Iterator[None]:
    environment = dict(os.environ)
    directory = os.getcwd()
    umask = os.umask(0o022)
    os.umask(umask)
    handlers = {number: signal.getsignal(number) for number in _catchable_signals()}
    root = logging.getLogger()
    root_handlers, root_level, disabled = list(root.handlers), root.level, logging.root.manager.disable
    structlog_config = _structlog_config()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(directory)
        os.umask(umask)
        for number, handler in handlers.items():
            if signal.getsignal(number) is not handler and handler is not None:
                signal.signal(number, handler)
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        logging.disable(disabled)
        if structlog_config is not None:
            import structlog

            structlog.configure(**structlog_config)


def _catchable_signals() -> list[signal.Signals]:
    return [number for number in signal.valid_signals() if number not in (signal.SIGKILL, signal.SIGSTOP)]


def _structlog_config() -> dict[str, Any] | None:
    if "structlog" not in sys.modules:
        return None  # a command that configures it loads it: its defaults are what is put back then
    import structlog

    return dict(structlog.get_config())


@contextmanager
def _engines_disposed() -> Iterator[None]:
    """Dispose of the engines the command connected with: a process's end closes their connections
    (a PostgreSQL connection left open counts against the server's limit and blocks DROP DATABASE)."""
    command_thread = threading.get_ident()
    engines: list[Engine] = []

    def connected(connection: Connection) -> None:
        # Only the command's own: a server running in this process's threads keeps its pool.
        if threading.get_ident() == command_thread and connection.engine not in engines:
            engines.append(connection.engine)

    event.listen(Engine, "engine_connect", connected)
    try:
        yield
    finally:
        event.remove(Engine, "engine_connect", connected)
        for engine in engines:
            engine.dispose()


@contextmanager
def _no_thread_left(argv: list[str]) -> Iterator[None]:
    """The threads the command starts must have ended when it returns (a process's end would stop
    them). Only the command's own: the test's other threads may start theirs meanwhile."""
    command_thread = threading.get_ident()
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def recorded_start(thread: threading.Thread) -> None:
        if threading.get_ident() == command_thread:
            started.append(thread)
        start(thread)

    threading.Thread.start = recorded_start  # type: ignore[method-assign]
    try:
        yield
    finally:
        threading.Thread.start = start  # type: ignore[method-assign]
    from dockyard.storage.driver.filesystem_files import SYNC_THREAD_PREFIX

    for thread in started:
        if thread.name.startswith(SYNC_THREAD_PREFIX):
            continue  # the filesystem driver's sync threads: one bounded pool per process, kept for reuse
        thread.join(_LEFTOVER_THREAD_GRACE_SECONDS)
        assert not thread.is_alive(), f"`dockyard {' '.join(argv)}` left thread {thread.name} running"
