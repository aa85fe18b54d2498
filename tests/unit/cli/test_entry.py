"""`dockyard serve` starts without the CLI's modules when its command line is one of the plain forms;
anything else goes to the CLI, which parses it (and answers --help, or a bad option) as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli.entry import plain_serve


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["serve"], (True, None)),
        (["serve", "conf.yml"], (True, Path("conf.yml"))),
        (["serve", "--config", "conf.yml"], (True, Path("conf.yml"))),
        (["serve", "-c", "conf.yml"], (True, Path("conf.yml"))),
        (["serve", "--config=conf.yml"], (True, Path("conf.yml"))),
        (["serve", "--help"], (False, None)),
        (["serve", "--config"], (False, None)),
        (["serve", "--config="], (False, None)),
        (["serve", "--config", "--help"], (False, None)),
        (["serve", "a.yml", "b.yml"], (False, None)),
        (["serve", "--bogus", "x"], (False, None)),
        (["worker"], (False, None)),
        (["config", "check", "serve"], (False, None)),
        ([], (False, None)),
    ],
)
def test_which_command_lines_start_the_server_directly(
    arguments: list[str], expected: tuple[bool, Path | None]
) -> None:
    assert plain_serve(arguments) == expected


def run_dockyard(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = "import sys; from dockyard.cli.entry import main; sys.argv[0] = 'dockyard'; main()"
    return subprocess.run(
        [sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_bad_config_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    answer = run_dockyard("serve", "--config", str(tmp_path / "missing.yml"))
    assert answer.returncode == 2
    assert answer.stderr.strip().startswith("dockyard: invalid configuration:")
    assert "missing.yml" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_serve_help_and_other_commands_go_to_the_cli() -> None:
    answer = run_dockyard("serve", "--help")
    assert answer.returncode == 0
    assert "Usage: dockyard serve" in answer.stdout
    answer = run_dockyard("serve", "--bogus")
    assert answer.returncode == 2
    assert "No such option" in answer.stderr
