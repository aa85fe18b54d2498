"""tests/support/cli.py: a `dockyard` command run in the test process answers as the binary does and
leaves nothing of itself behind in the process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.support import cli
from tests.support.cli import run_dockyard
from tests.support.server import DOCKYARD

SESSION = "dockyard.cli.client.session.Session.__init__"


def test_it_answers_as_the_binary_does(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "COLUMNS": "100"}
    for args in (["nosuch", "--flag"], ["whoami"], ["project", "--help"]):
        binary = subprocess.run([DOCKYARD, *args], env=env, capture_output=True, text=True, timeout=60)
        here = run_dockyard(*args, env=env)
        assert (here.returncode, here.stdout, here.stderr) == (
            binary.returncode,
            binary.stdout,
            binary.stderr,
        ), args


def test_what_a_command_changes_in_the_process_is_put_back(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"datadir": str(tmp_path / "data")}))
    umask = os.umask(0o022)
    os.umask(umask)
    directory = os.getcwd()

    # `db upgrade` makes the umask private, opens the database and builds an engine; it reads its
    # config path relative to the working directory given, and DOCKYARD_* from the environment given.
    upgraded = run_dockyard(
        "db",
        "upgrade",
        "--config",
        "config.yml",
        cwd=tmp_path,
        env={**os.environ, "DOCKYARD_LOG_LEVEL": "warn"},
    )

    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("database at revision ")
    assert (tmp_path / "data" / "dockyard.db").exists()
    assert os.umask(umask) == umask
    assert os.getcwd() == directory
    assert "DOCKYARD_LOG_LEVEL" not in os.environ


def test_sys_exit_with_a_message_is_stderr_and_status_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def leave(*_: Any) -> NoReturn:
        sys.exit("dockyard: gone")

    monkeypatch.setattr(SESSION, leave)

    left = run_dockyard("whoami")

    assert (left.returncode, left.stdout, left.stderr) == (1, "", "dockyard: gone\n")


def test_an_exception_escaping_a_command_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> NoReturn:
        raise RuntimeError("a bug")

    monkeypatch.setattr(SESSION, broken)

    with pytest.raises(RuntimeError, match="a bug"):
        run_dockyard("whoami")


def test_ctrl_c_in_a_command_stops_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: Any) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(SESSION, interrupted)

    with pytest.raises(KeyboardInterrupt):  # not exit 130 read as the command's answer
        run_dockyard("whoami")


def test_a_thread_a_command_leaves_running_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def leaves_a_thread(*_: Any) -> NoReturn:
        threading.Thread(target=release.wait, name="left-behind").start()
        raise SystemExit(0)

    monkeypatch.setattr(SESSION, leaves_a_thread)
    monkeypatch.setattr(cli, "_LEFTOVER_THREAD_GRACE_SECONDS", 0.1)
    try:
        with pytest.raises(AssertionError, match="left thread left-behind running"):
            run_dockyard("whoami")
    finally:
        release.set()
