"""How often a `--wait` command asks the server whether the thing it waits for is done."""

from __future__ import annotations

from collections.abc import Iterator

FIRST_POLL_SECONDS = 0.1


def poll_delays(longest: float, first: float = FIRST_POLL_SECONDS) -> Iterator[float]:
    """The pauses between two looks: short at first, since most jobs (a scan, a small replication run)
    end within a second or two and a fixed pause made every wait a pause long; doubling up to
    `longest`, so a long job is not asked about more often than it was."""
    delay = min(first, longest)
    while True:
        yield delay
        delay = min(delay * 2, longest)
