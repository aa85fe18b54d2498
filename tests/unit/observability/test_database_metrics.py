"""Statement latency and the connection pool of the metadata database, per worker process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import column, create_engine, func, insert, select, table, text

from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.db.statements import DriverStatement
from dockyard.observability.database import instrument_database
from dockyard.observability.metrics import Metrics


def values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        for sample in family.samples
    }


def test_statements_are_timed_and_the_pool_is_sampled(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metrics = Metrics()
    instrument_database(metrics, engine)
    with engine.connect() as connection:
        for _ in range(3):
            connection.execute(text("SELECT 1")).scalar_one()
        held = values(metrics)  # rendered while this connection is checked out
    assert held[("database_pool_connections", (("state", "in_use"),))] == 1
    released = values(metrics)
    assert released[("database_query_duration_seconds_count", ())] == 3
    assert released[("database_query_duration_seconds_bucket", (("le", "+Inf"),))] == 3
    assert 0 < released[("database_query_duration_seconds_sum", ())] < 1
    assert released[("database_pool_connections", (("state", "in_use"),))] == 0
    assert released[("database_pool_connections", (("state", "idle"),))] == 1
    engine.dispose()


def test_statements_run_on_the_driver_are_timed_too(tmp_path: Path) -> None:
    """The push path's statements (db.statements, on the kept write Connection of a SQLite file) fire
    the engine's cursor events as SQLAlchemy's own execution does: each is timed once."""
    with sqlite3.connect(tmp_path / "db.sqlite") as made:
        made.execute("CREATE TABLE numbers (n INTEGER)")
    database = Database(build_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"), flush_commits=False)
    metrics = Metrics()
    instrument_database(metrics, database.engine)
    numbers = table("numbers", column("n"))
    add = DriverStatement(insert(numbers), column_keys=("n",))
    count = DriverStatement(select(func.count()).select_from(numbers))
    for _ in range(2):  # the kept Connection's first transaction and a later one
        with database.write() as connection:
            add.execute_many(connection, [{"n": 1}, {"n": 2}])
            assert count.execute(connection, {}).scalar() > 0
    counted = values(metrics)[("database_query_duration_seconds_count", ())]
    database.dispose()
    assert counted == 4
