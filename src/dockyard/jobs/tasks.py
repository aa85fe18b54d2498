"""The job queue's own kind: `selftest`, a job that only waits. It shows that the workers of a
deployment pick jobs up, report progress and stop when cancelled (`dockyard job run selftest -p
seconds=30 --wait` on any node), without touching any data."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dockyard.jobs.interfaces import JobContext, JobKind

MAX_SECONDS = 3600
TICK_SECONDS = 0.2


def selftest(ctx: JobContext) -> Mapping[str, Any]:
    seconds = float(ctx.params.get("seconds", 0))
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_SECONDS}, got {seconds}")
    if ctx.params.get("fail"):
        raise RuntimeError("failing as asked (params.fail)")
    ctx.log(f"waiting {seconds:g}s")
    started = time.monotonic()
    total = max(1, int(seconds))
    while (waited := time.monotonic() - started) < seconds:
        ctx.check_cancelled()
        ctx.progress(min(int(waited), total), total)
        time.sleep(min(TICK_SECONDS, seconds - waited))
    ctx.progress(total, total)
    ctx.log("done")
    return {"waited_seconds": round(time.monotonic() - started, 3)}


def selftest_kind() -> JobKind:
    return JobKind("selftest", selftest, concurrency=4, timeout=timedelta(seconds=MAX_SECONDS + 60))
