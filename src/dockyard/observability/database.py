"""The metadata database's metrics: statement latency and the connection pool, per worker process.

Statements are timed by SQLAlchemy's cursor events and batched into `Metrics` (no prometheus_client
call per statement). The pool is not watched per checkout: the metrics flush thread samples it about
once a second, so a request pays nothing for it. Point lookups on the hot path (db/lookups.py) use raw
driver connections and are not timed here: their requests are (`http_request_duration_seconds`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, event

from dockyard.observability.metrics import Metrics


def instrument_database(metrics: Metrics, engine: Engine) -> None:
    """Time `engine`'s statements and sample its pool into `metrics`."""
    # When each statement started, by thread: a connection runs one statement at a time, in one
    # thread, so its end is met in the thread its start was (a thread-local attribute costs less
    # than the Connection's `info`: three properties down to the pool's record).
    started_at = threading.local()

    # retval=True: SQLAlchemy calls the listener as it is, instead of through a wrapper that returns
    # the statement and parameters for it (a call less on every statement).
    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def started(
        connection: Any, cursor: Any, statement: Any, parameters: Any, context: Any, many: Any
    ) -> tuple[Any, Any]:
        started_at.value = time.perf_counter()
        return statement, parameters

    @event.listens_for(engine, "after_cursor_execute")
    def finished(
        connection: Any, cursor: Any, statement: Any, parameters: Any, context: Any, many: Any
    ) -> None:
        began = started_at.__dict__.pop("value", None)
        if began is not None:
            metrics.observe_query(time.perf_counter() - began)

    pool = engine.pool
    in_use = metrics.database_pool_connections.labels("in_use")
    idle = metrics.database_pool_connections.labels("idle")

    def sample() -> None:
        # QueuePool (PostgreSQL, SQLite files) counts both; other pools report nothing.
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if checked_out is not None and checked_in is not None:
            in_use.set(checked_out())
            idle.set(checked_in())

    metrics.add_sampler(sample)
