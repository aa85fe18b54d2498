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
