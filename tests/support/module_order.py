"""The order test modules go out to the xdist workers in: longest first, from tests/module_durations.json.

pytest-xdist's loadscope (pyproject.toml) hands a whole module (a class, for tests in classes) to a worker
when that worker is nearly done with its last one, in collection order. In path order a long module
collected late (tests/unit holds a few) ran alone on one worker at the end of a pass while the other had
finished. Longest first is the classic fix for that (LPT): the long modules share the workers at the start
and the many short ones even out the end.

The durations are each module's summed test wall seconds in one pass of a `make test` run, per pass (a
module's PostgreSQL run is slower than its SQLite one). A module missing from the file (a new one) goes
first: a long new module left to the end would make the tail again, a short one first costs nothing.
Tests keep their order inside a module, and a module's tests stay together.

Refresh the file from a run's CPU log (`DOCKYARD_TEST_CPU_LOG=DIR make test`, see
tests/support/cpu_accounting.py): `python -m tests.support.module_order DIR` (a log of part of the suite
updates those modules only). A stale file only costs time, never a test: the order is the same on every
worker of a pass, which xdist requires.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

DURATIONS = Path(__file__).resolve().parents[1] / "module_durations.json"
PASSES = ("sqlite", "postgresql")


# Directories whose modules share a package-scoped fixture (tests/cluster: one HA cluster; tests/images:
# one dockerd with the images loaded): they go to one xdist worker as one unit, and rank by their summed
# seconds, so the fixture starts once per run.
SHARED_SCOPES = ("tests/cluster/", "tests/images/")
# Modules that go first in their shared scope (the others keep collection order): test_container needs
# only dockyard's image, which `make test`'s background build makes before the HA set test_compose waits
# for.
FIRST_IN_SCOPE = ("tests/images/test_container.py",)


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def scope_of(nodeid: str) -> str:
    """What goes to one xdist worker together: the test's module, or the shared directory it is in."""
    module = module_of(nodeid)
    return next((prefix for prefix in SHARED_SCOPES if module.startswith(prefix)), module)


class SharedScopeScheduling(LoadScopeScheduling):
    """pytest-xdist's loadscope (pyproject.toml), with SHARED_SCOPES as units of their own."""

    def _split_scope(self, nodeid: str) -> str:
        scope = scope_of(nodeid)
        return scope if scope in SHARED_SCOPES else super()._split_scope(nodeid)


@pytest.hookimpl(optionalhook=True)  # without xdist (`-p no:xdist`) there is no such hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling | None:
    return SharedScopeScheduling(config, log) if config.getoption("dist") == "loadscope" else None


def read_durations(path: Path = DURATIONS) -> dict[str, dict[str, float]]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {db: {str(k): float(v) for k, v in data.get(db, {}).items()} for db in PASSES}


def expected_seconds(module: str, durations: dict[str, dict[str, float]], db: str) -> float:
    """This pass's figure; the other pass's when this one has none (a module that just changed pass);
    infinity (first) when neither has one."""
    for table in (durations.get(db, {}), *(durations.get(other, {}) for other in PASSES if other != db)):
        if module in table:
            return table[module]
    return math.inf


def longest_first(
    items: list[pytest.Item], durations: dict[str, dict[str, float]], db: str
) -> list[pytest.Item]:
    """Items grouped by module, modules by expected seconds descending (a shared scope's modules together,
    by their sum, FIRST_IN_SCOPE first); ties and tests inside a module keep collection order."""
    position: dict[str, int] = {}  # of modules and of scopes, in collection order
    seconds: dict[str, float] = defaultdict(float)  # per scope
    for module in dict.fromkeys(module_of(item.nodeid) for item in items):
        position[module] = len(position)
        position.setdefault(scope_of(module), position[module])
        seconds[scope_of(module)] += expected_seconds(module, durations, db)

    def rank(item: pytest.Item) -> tuple[float, int, bool, int]:
        module = module_of(item.nodeid)
        scope = scope_of(module)
        return (-seconds[scope], position[scope], module not in FIRST_IN_SCOPE, position[module])

    return sorted(items, key=rank)  # stable: a module's tests stay in their order


@pytest.hookimpl(trylast=True)  # after conftest's markers and pytest's own fixture-based reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    durations = read_durations()
    if durations:
        items[:] = longest_first(items, durations, os.environ.get("DOCKYARD_TEST_DB", "sqlite"))


def durations_from_cpu_log(directory: Path) -> dict[str, dict[str, float]]:
    """Summed test wall seconds per pass and module from a DOCKYARD_TEST_CPU_LOG directory."""
    totals: dict[str, dict[str, float]] = {db: defaultdict(float) for db in PASSES}
    for path in sorted(directory.glob("*.jsonl")):
        db = path.name.split("-", 1)[0]
        if db not in totals:
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            totals[db][module_of(record["test"])] += record["wall"]
    return {
        db: {module: round(seconds, 1) for module, seconds in sorted(table.items())}
        for db, table in totals.items()
    }


def merged(
    old: dict[str, dict[str, float]], logged: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """The logged figures over the old ones (a log of a part of the suite updates that part), without
    modules whose file is gone."""
    root = DURATIONS.parent.parent
    out = {}
    for db in PASSES:
        table = {**old.get(db, {}), **logged.get(db, {})}
        out[db] = {module: table[module] for module in sorted(table) if (root / module).is_file()}
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m tests.support.module_order CPU_LOG_DIR", file=sys.stderr)
        return 2
    logged = durations_from_cpu_log(Path(argv[0]))
    if not any(logged.values()):
        print(f"{argv[0]}: no test records", file=sys.stderr)
        return 1
    durations = merged(read_durations(), logged)
    DURATIONS.write_text(json.dumps(durations, indent=1) + "\n")
    print(f"{DURATIONS}: " + ", ".join(f"{db} {len(table)} modules" for db, table in durations.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
