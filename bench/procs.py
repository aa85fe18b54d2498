"""Peak memory of a server's whole process tree, sampled from /proc while it runs.

dockyard runs several worker processes, so the figure that matters is the sum over the tree (what the
machine pays) and the largest single process (what the per-worker target is about).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields after it are fixed.
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> list[int]:
    """root and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of root and its descendants alive now (a process that has exited is not
    counted: measure across runs of long-lived servers, not of short children)."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_cpu_ticks() -> tuple[int, int]:
    """(idle, total) clock ticks of all CPUs since boot, from /proc/stat (idle counts iowait too)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # user nice system idle iowait irq softirq steal


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the machine's CPU time that was idle between two `machine_cpu_ticks()`."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


def rss_bytes(pid: int) -> int:
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * PAGE_SIZE


@dataclass
class PeakRss:
    total: int = 0  # largest sum over the tree seen in one sample
    per_process: int = 0  # largest single process seen
    processes: int = 0  # most processes seen in the tree at once


class RssSampler:
    """Samples a process tree in a background thread until stopped; keeps the peaks."""

    def __init__(self, root_pid: int, interval: float = 0.2) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.peak = PeakRss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{root_pid}", daemon=True)

    def sample(self) -> None:
        sizes = [rss_bytes(pid) for pid in process_tree(self.root_pid)]
        self.peak.total = max(self.peak.total, sum(sizes))
        self.peak.per_process = max(self.peak.per_process, max(sizes, default=0))
        self.peak.processes = max(self.peak.processes, len(sizes))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> PeakRss:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.peak
