"""Serve's main process keeps what its imports compile from text (dataclasses' methods, annotations
given as text, regular expressions) from one start to the next (cli.startup_cache): the next start
compiles none of it again, and what it builds from the kept table behaves as what it compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import startup_cache

pytestmark = pytest.mark.skipif(not startup_cache.SUPPORTED, reason="patches CPython 3.11's modules only")

# A start in miniature: the cache installed, classes and patterns built, the table saved.
START = """
import json, sys
from dockyard.cli import startup_cache

cache = startup_cache.install()
import dataclasses, re, typing

@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int = 2
    tags: list = dataclasses.field(default_factory=list, hash=False)

class Shape(typing.TypedDict):
    corner: "Point"

pattern = re.compile(r"(?P<name>[a-z]+)-(\\d+)", re.IGNORECASE)
match = pattern.match("Abc-42")
facts = {
    "compiled": cache.compiled,
    "table": str(startup_cache.table_path()),
    "repr": repr(Point(1)),
    "equal": Point(1) == Point(1, 2),
    "hashes_equal": hash(Point(1)) == hash(Point(1, 2)),
    "frozen": "no",
    "forward": typing.get_type_hints(Shape, localns={"Point": Point})["corner"] is Point,
    "groups": [match.group("name"), match.group(2)],
    "groupindex": dict(pattern.groupindex),
    "flags": pattern.flags,
    "bytes": re.match(rb"(a)(?P<b>b)", b"ab").groups(),
}
try:
    Point(1).x = 3
except dataclasses.FrozenInstanceError:
    facts["frozen"] = "yes"
startup_cache.save_and_uninstall()
facts["restored"] = [
    hasattr(dataclasses, "exec"), hasattr(typing, "compile"), re._compiler.compile.__module__,
]
facts["bytes"] = [part.decode() for part in facts["bytes"]]
print(json.dumps(facts))
"""
EXPECTED = {
    "repr": "Point(x=1, y=2, tags=[])",
    "equal": True,
    "hashes_equal": True,
    "frozen": "yes",
    "forward": True,
    "groups": ["Abc", "42"],
    "groupindex": {"name": 1},
    "flags": 34,  # IGNORECASE | UNICODE
    "bytes": ["a", "b"],
    "restored": [False, False, "re._compiler"],
}


def start(prefix: Path, write_bytecode: bool = True) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(prefix)  # the table is kept where the .pyc files are
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", START], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


def behaviour(facts: dict[str, Any]) -> dict[str, Any]:
    return {key: facts[key] for key in EXPECTED}


def test_the_next_start_compiles_nothing_and_builds_the_same(tmp_path: Path) -> None:
    first = start(tmp_path)
    assert first["compiled"] > 0
    assert Path(first["table"]).is_file()
    assert Path(first["table"]).is_relative_to(tmp_path)
    second = start(tmp_path)
    assert second["compiled"] == 0
    assert behaviour(first) == behaviour(second) == EXPECTED


def test_no_table_is_written_where_python_writes_no_bytecode(tmp_path: Path) -> None:
    first = start(tmp_path, write_bytecode=False)
    assert not Path(first["table"]).exists()
    assert start(tmp_path, write_bytecode=False)["compiled"] == first["compiled"]


@pytest.mark.parametrize("content", [b"", b"not a table", startup_cache.MAGIC_NUMBER + b"\x00garbage"])
def test_a_damaged_or_foreign_table_is_compiled_anew(tmp_path: Path, content: bytes) -> None:
    table = Path(start(tmp_path)["table"])
    table.write_bytes(content)
    again = start(tmp_path)
    assert again["compiled"] > 0
    assert behaviour(again) == EXPECTED
    assert start(tmp_path)["compiled"] == 0  # written anew


def configuration(name: str) -> str:
    """What START builds, and 40 patterns of this configuration's own."""
    return START.replace(
        "startup_cache.save_and_uninstall()",
        f'for number in range(40):\n    re.compile(f"{name}-{{number}}-[a-z]+")\n'
        'facts["compiled"] = cache.compiled\nstartup_cache.save_and_uninstall()',
    )


def test_two_configurations_started_in_turn_compile_nothing_again(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path)

    def start_as(name: str) -> int:
        result = subprocess.run(
            [sys.executable, "-c", configuration(name)], capture_output=True, text=True, env=env, check=True
        )
        compiled: int = json.loads(result.stdout)["compiled"]
        return compiled

    assert start_as("one") > 40
    assert start_as("other") == 40
    assert start_as("one") == 0  # its own entries were kept beside the other's
    assert start_as("other") == 0


# Serve's main process up to Granian's fork, as `dockyard serve` runs it (cli.entry; the job runner not
# started), then what it compiled from text and which of its modules had no bytecode to load.
SERVE_UNTIL_THE_FORK = """
import gc, os
gc.disable()
os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"  # as cli.entry sets it before any import
from dockyard.cli import startup_cache
startup_cache.install()
new = []  # what it compiled, not found in the table
compile_text, pattern_parts = startup_cache._compile, startup_cache._pattern_parts

def compiled(source, *args, **kwargs):
    new.append(source)
    return compile_text(source, *args, **kwargs)

def parsed(pattern, flags):
    new.append(repr(pattern))
    return pattern_parts(pattern, flags)

startup_cache._compile, startup_cache._pattern_parts = compiled, parsed
import json, sys
import granian
from dockyard.cli import server

def stop_here(self):
    no_bytecode = sorted(
        name for name, module in list(sys.modules.items())
        if getattr(module, "__cached__", None) and not os.path.exists(module.__cached__)
    )
    print(json.dumps({"kept": startup_cache.last.kept, "new": new, "no_bytecode": no_bytecode}))
    os._exit(0)

granian.Granian.serve = stop_here
server.start_job_worker = lambda settings: None
sys.argv = ["dockyard", "serve", "--config", sys.argv[1]]
from dockyard.cli.entry import main
main()
"""


def prime_environment(prefix: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PYTHONDONTWRITEBYTECODE" and not key.startswith(("DOCKYARD_", "REGISTRY_"))
    }
    env["PYTHONPYCACHEPREFIX"] = str(prefix)  # the .pyc files and the table: an install of its own
    return env


def prime(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dockyard.cli.prime", "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, umask=0o022)


def test_prime_writes_what_serve_would_into_an_install_serve_cannot_write(tmp_path: Path) -> None:
    """The container image's build (deploy/Dockerfile) and a root-owned install run `python -m
    dockyard.cli.prime`: serve, as a user who can write nothing there, then compiles nothing its last
    start would have kept (issue 18: the image's first start as fast as a host's second)."""
    prefix, datadir = tmp_path / "install", tmp_path / "data"
    config = tmp_path / "config.yml"
    config.write_text(f"datadir: {datadir}\nhttp:\n  workers: 2\nlog:\n  level: warn\n")
    env = prime_environment(prefix)
    primed = prime(config, env)
    assert primed.returncode == 0, primed.stderr
    tables = list(prefix.rglob(startup_cache.table_path().name))
    assert len(tables) == 1 and str(tables[0]) in primed.stdout
    assert not datadir.exists()  # it starts nothing and leaves the data alone
    unreadable = [path for path in prefix.rglob("*") if path.is_file() and not path.stat().st_mode & 0o004]
    assert unreadable == []
    # serve as the image's user: it may write nothing (no bytecode, no table) and needs nothing written.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["DOCKYARD_ADMIN_PASSWORD"] = "correct horse battery staple 42"
    served = subprocess.run(
        [sys.executable, "-c", SERVE_UNTIL_THE_FORK, str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert served.returncode == 0, served.stderr
    facts = json.loads(served.stdout.strip().splitlines()[-1])
    assert facts["kept"] > 1000
    # But one pattern PyJWT joins from a set, in an order that may change with the hash seed (and with
    # the process that compiled its module's bytecode): on a host, a second start compiles it too.
    assert [text for text in facts["new"] if "(BEGIN|END)" not in text] == []
    assert facts["no_bytecode"] == []


@pytest.mark.parametrize(
    ("arguments", "environment", "umask", "said"),
    [
        (["--config", "{config}"], {"PYTHONDONTWRITEBYTECODE": "1"}, 0o022, "PYTHONDONTWRITEBYTECODE is set"),
        (["--config", "{config}"], {}, 0o077, "with umask 077, what this writes is unreadable"),
        (["--workers", "2"], {}, 0o022, "usage: python -m dockyard.cli.prime [--config PATH]"),
        (["--config", "{missing}"], {}, 0o022, "cannot read"),
    ],
)
def test_prime_says_why_it_wrote_nothing(
    tmp_path: Path, arguments: list[str], environment: dict[str, str], umask: int, said: str
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"datadir: {tmp_path / 'data'}\n")
    names = {"config": str(config), "missing": str(tmp_path / "missing.yml")}
    env = {**prime_environment(tmp_path / "install"), **environment}
    command = [sys.executable, "-m", "dockyard.cli.prime", *(part.format(**names) for part in arguments)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, umask=umask)
    assert result.returncode == 2
    assert said in result.stderr
    assert list(tmp_path.rglob(startup_cache.table_path().name)) == []
