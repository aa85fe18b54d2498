"""Where the suite's CPU goes: with DOCKYARD_TEST_CPU_LOG=<dir>, each test process appends one JSON line per
test to <dir>/<worker>.jsonl: wall seconds, the test process's own user+system CPU, and the CPU of its
children reaped meanwhile (servers and CLI runs the test started and stopped, those forked by the zygote,
tests/support/zygote.py, too; a module's shared server is counted in the test during which it stops).
Unlike wall time, CPU seconds hold on a loaded machine.
Each dockyard server the tests start (tests/support/server.py) adds a line to
<dir>/servers-<db>-<worker>.jsonl: the test that started it, seconds until it answered, and its processes'
CPU (the whole session: serve, its start-up child, HTTP workers, job runner) when it answered and when it
was asked to stop.
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


def session_cpu_seconds(session: int) -> float:
    """User+system CPU of the live processes in a session (and of the children they reaped)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            total += sum(int(value) for value in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def server_log_line(pid: int, ready_after: float | None, ready_cpu: float | None) -> None:
    """One server's line (see above); None: not waited for (start_server(wait=False))."""
    if not LOG_DIR:
        return
    record = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0],
        "ready_wall": ready_after,
        "ready_cpu": ready_cpu,
        "cpu": round(session_cpu_seconds(pid), 3),
    }
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    db = os.environ.get("DOCKYARD_TEST_DB", "sqlite")
    with (Path(LOG_DIR) / f"servers-{db}-{worker}.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")


def summarize_servers(directory: Path, top: int) -> None:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for path in directory.glob("servers-*.jsonl"):
        db = path.name.split("-", 2)[1]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            row = totals[f"{db} {record['test'].split('::', 1)[0]}"]
            row[0] += 1
            row[1] += record["ready_wall"] or 0.0
            row[2] += record["ready_cpu"] or 0.0
            row[3] += record["cpu"]
    if not totals:
        return
    print(f"\n{'servers started, by module':70} {'count':>5} {'ready s':>8} {'startcpu':>8} {'cpu':>8}")
    for name, (count, wall, start, cpu) in sorted(totals.items(), key=lambda kv: -kv[1][3])[:top]:
        print(f"{name:70} {count:5d} {wall:8.1f} {start:8.1f} {cpu:8.1f}")
    for db in ("sqlite", "postgresql"):
        rows = [v for k, v in totals.items() if k.startswith(db)]
        print(db, "servers", sum(r[0] for r in rows), "start cpu", round(sum(r[2] for r in rows)),
              "cpu", round(sum(r[3] for r in rows)))  # fmt: skip


def summarize(directory: Path, top: int = 40) -> None:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for path in directory.glob("*.jsonl"):
        db = path.name.split("-", 1)[0]
        if db == "servers":
            continue
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
    summarize_servers(directory, top)


if __name__ == "__main__":
    summarize(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40)
