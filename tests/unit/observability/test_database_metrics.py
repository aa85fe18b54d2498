"""Statement latency and the connection pool of the metadata database, per worker process."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

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
