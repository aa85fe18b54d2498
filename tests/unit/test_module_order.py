"""The suite's module order (tests/support/module_order.py): longest first, a module's tests together."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import module_order
from tests.support.module_order import (
    SharedScopeScheduling,
    durations_from_cpu_log,
    expected_seconds,
    longest_first,
)

pytestmark = pytest.mark.db_independent  # the order of node ids: no database


def items(*nodeids: str) -> list[Any]:
    return [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]


def test_modules_go_longest_first_with_their_tests_together_and_in_order() -> None:
    collected = items("a.py::t1", "a.py::t2", "b.py::C::t1", "b.py::t2", "c.py::t1", "a.py::t3")
    durations = {"sqlite": {"a.py": 1.0, "b.py": 30.0, "c.py": 5.0}}

    ordered = [item.nodeid for item in longest_first(collected, durations, "sqlite")]

    assert ordered == ["b.py::C::t1", "b.py::t2", "c.py::t1", "a.py::t1", "a.py::t2", "a.py::t3"]


def test_a_module_without_a_figure_goes_first_and_ties_keep_collection_order() -> None:
    collected = items("old.py::t", "same1.py::t", "new.py::t", "same2.py::t")
    durations = {"sqlite": {"old.py": 50.0, "same1.py": 2.0, "same2.py": 2.0}}

    ordered = [item.nodeid for item in longest_first(collected, durations, "sqlite")]

    assert ordered == ["new.py::t", "old.py::t", "same1.py::t", "same2.py::t"]


def test_a_shared_directory_goes_to_one_worker_as_one_unit_ranked_by_its_sum() -> None:
    collected = items("tests/cluster/test_a.py::t", "tests/x.py::t", "tests/cluster/test_b.py::C::t",
                      "tests/y.py::t")  # fmt: skip
    durations = {"sqlite": {"tests/cluster/test_a.py": 10.0, "tests/cluster/test_b.py": 15.0,
                            "tests/x.py": 20.0, "tests/y.py": 1.0}}  # fmt: skip

    ordered = [item.nodeid for item in longest_first(collected, durations, "sqlite")]

    assert ordered == ["tests/cluster/test_a.py::t", "tests/cluster/test_b.py::C::t", "tests/x.py::t",
                       "tests/y.py::t"]  # fmt: skip
    scheduler = object.__new__(SharedScopeScheduling)  # _split_scope reads nothing of its state
    assert {scheduler._split_scope(nodeid) for nodeid in ordered} == {
        "tests/cluster/", "tests/x.py", "tests/y.py"
    }  # fmt: skip


def test_the_image_modules_go_to_one_worker_the_one_that_needs_fewer_images_first() -> None:
    collected = items("tests/images/test_compose.py::t", "tests/x.py::t", "tests/images/test_container.py::t")
    durations = {"postgresql": {"tests/images/test_compose.py": 75.0, "tests/images/test_container.py": 37.0,
                                "tests/x.py": 100.0}}  # fmt: skip

    ordered = [item.nodeid for item in longest_first(collected, durations, "postgresql")]

    assert ordered == [
        "tests/images/test_container.py::t", "tests/images/test_compose.py::t", "tests/x.py::t"
    ]  # fmt: skip
    scheduler = object.__new__(SharedScopeScheduling)
    assert {scheduler._split_scope(nodeid) for nodeid in ordered} == {"tests/images/", "tests/x.py"}


def test_a_pass_without_a_figure_for_a_module_uses_the_other_pass() -> None:
    durations = {"sqlite": {"moved.py": 40.0}, "postgresql": {"both.py": 9.0}}

    assert expected_seconds("moved.py", durations, "postgresql") == 40.0
    assert expected_seconds("both.py", durations, "postgresql") == 9.0
    assert expected_seconds("new.py", durations, "postgresql") == math.inf


def test_the_durations_come_from_a_cpu_log_per_pass_and_module(tmp_path: Path) -> None:
    def record(test: str, wall: float) -> str:
        return json.dumps({"test": test, "wall": wall, "own": 0.1, "children": 0.0})

    (tmp_path / "sqlite-gw0.jsonl").write_text(
        record("a.py::t1", 1.25) + "\n" + record("a.py::t2", 2.0) + "\n"
    )
    (tmp_path / "sqlite-gw1.jsonl").write_text(record("b.py::C::t", 4.0) + "\n")
    (tmp_path / "postgresql-gw0.jsonl").write_text(record("a.py::t1", 3.0) + "\n")
    # The servers' lines (tests/support/cpu_accounting.py) are not tests.
    server = {"test": "a.py::t1", "ready_wall": 1.0, "ready_cpu": 0.2, "cpu": 0.3}
    (tmp_path / "servers-sqlite-gw0.jsonl").write_text(json.dumps(server) + "\n")

    assert durations_from_cpu_log(tmp_path) == {
        "sqlite": {"a.py": 3.2, "b.py": 4.0},
        "postgresql": {"a.py": 3.0},
    }


def test_a_refresh_keeps_other_modules_and_drops_removed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tests").mkdir()
    for name in ("kept.py", "logged.py"):
        (tmp_path / "tests" / name).write_text("")
    monkeypatch.setattr(module_order, "DURATIONS", tmp_path / "tests" / "module_durations.json")
    old = {
        "sqlite": {"tests/kept.py": 7.0, "tests/logged.py": 1.0, "tests/removed.py": 3.0},
        "postgresql": {},
    }
    logged = {"sqlite": {"tests/logged.py": 2.5}, "postgresql": {"tests/logged.py": 4.0}}

    assert module_order.merged(old, logged) == {
        "sqlite": {"tests/kept.py": 7.0, "tests/logged.py": 2.5},
        "postgresql": {"tests/logged.py": 4.0},
    }


def test_the_committed_durations_file_reads() -> None:
    durations = module_order.read_durations()

    assert set(durations) == {"sqlite", "postgresql"}
    assert all(seconds >= 0 for table in durations.values() for seconds in table.values())
