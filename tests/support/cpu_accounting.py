"""Where the suite's CPU goes: with DOCKYARD_TEST_CPU_LOG=<dir>, each test process appends one JSON line per
test to <dir>/<worker>.jsonl: wall seconds, the test process's own user+system CPU, and the CPU of its
children reaped meanwhile (servers and CLI runs the test started and stopped, those forked by the zygote,
tests/support/zygote.py, too; a module's shared server is counted in the test during which it stops).
Unlike wall time, CPU seconds hold on a loaded machine.
`python -m tests.support.cpu_accounting <dir>` sums them by module."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

LOG_DIR = os.environ.get("DOCKYARD_TEST_CPU_LOG")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not LOG_DIR:
        yield
        return
    from tests.support.zygote import zygote_cpu_seconds

    before, started, forked = os.times(), time.monotonic(), zygote_cpu_seconds()
    yield
    after, forked = os.times(), zygote_cpu_seconds() - forked
    record = {
        "test": item.nodeid,
        "wall": round(time.monotonic() - started, 3),
        "own": round(after.user + after.system - before.user - before.system, 3),
        "children": round(
            after.children_user
            + after.children_system
            - before.children_user
            - before.children_system
            + forked,
            3,
        ),
    }
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    db = os.environ.get("DOCKYARD_TEST_DB", "sqlite")
    with (Path(LOG_DIR) / f"{db}-{worker}.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")


def summarize(directory: Path, top: int = 40) -> None:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for path in directory.glob("*.jsonl"):
        db = path.name.split("-", 1)[0]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            row = totals[f"{db} {record['test'].split('::', 1)[0]}"]
            row[0] += record["wall"]
            row[1] += record["own"]
            row[2] += record["children"]
            row[3] += 1
    print(f"{'module':70} {'tests':>5} {'wall':>8} {'own':>8} {'child':>8} {'cpu':>8}")
    by_cpu = sorted(totals.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
    for name, (wall, own, children, count) in by_cpu[:top]:
        print(f"{name:70} {count:5d} {wall:8.1f} {own:8.1f} {children:8.1f} {own + children:8.1f}")
    for db in ("sqlite", "postgresql"):
        rows = [v for k, v in totals.items() if k.startswith(db)]
        print(
            db,
            "wall",
            round(sum(r[0] for r in rows)),
            "own",
            round(sum(r[1] for r in rows)),
            "children",
            round(sum(r[2] for r in rows)),
            "tests",
            sum(r[3] for r in rows),
        )


if __name__ == "__main__":
    summarize(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40)
