"""`python -m bench.audit_pulls [--db sqlite|postgresql]`: what pulls cost the audit log (docs/auth.md).

Before (a row per pull, as dockyard wrote until audit.pulls): `--rows` pull events, as a manifest GET
recorded them, go through the audit log's batched writer; the table's size (with its indexes) is
measured and scaled to a million pulls (it grows linearly). After (audit.pulls: counted): a million
pulls go through the pull counter, in process and without HTTP, at a simulated 100 pulls/s (so they
span 2.8 hours) with a batch every 5 s, as a worker process writes them; for three kinds of traffic:

- one-key: one robot pulling one manifest (a CI job in a loop, a benchmark);
- teams: 200 principals (Zipf-distributed activity), each pulling 20 manifests of its own: at most
  4,000 (manifest, principal) pairs;
- scattered: any of 200 principals pulls any of 1,000 manifests (Zipf-distributed popularity): about
  80,000 distinct pairs an hour;
- worst: no two pulls in an hour share a (manifest, principal): as many rows as pulls.

The table grows with the distinct (hour, manifest, principal) triples, so the traffic decides.

It prints rows, bytes and bytes per pull for each, and the size 90 days of 100 pulls/s would take.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

PULLS = 1_000_000
RATE = 100  # pulls a second
BATCH_EVERY = 5 * RATE  # pulls between batches: the counter's 5 s
DAYS_90 = 90 * 24 * 3600 * RATE  # pulls in 90 days at RATE
START = datetime(2026, 3, 1, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_pulls", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000, help="pull events written the old way")
    args = parser.parse_args()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="audit-pulls-bench-")))
        if args.db == "postgresql":
            from tests.support.postgres import start_postgres  # the suite's launcher, as bench/gc.py

            cluster = start_postgres()
            stack.callback(cluster.stop)

            def fresh(name: str) -> str:
                return cluster.create_database(name.replace("-", "_"))
        else:

            def fresh(name: str) -> str:
                return f"sqlite:///{workdir / name}.db"

        figures: dict[str, Any] = {"database": args.db, "row_per_pull": _rows(fresh("rows"), args.rows)}
        for traffic in ("one-key", "teams", "scattered", "worst"):
            figures[traffic] = _counted(fresh(traffic), traffic)
    print(json.dumps(figures, indent=2))
    return 0


def _database(url: str) -> Any:
    from dockyard.db.engine import build_engine
    from dockyard.db.migrate import upgrade
    from dockyard.db.session import Database

    engine = build_engine(url)
    upgrade(engine)
    return Database(engine)


def _rows(url: str, pulls: int) -> dict[str, Any]:
    """A row per pull, as a manifest GET was recorded before audit.pulls."""
    from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, ResourceType
    from dockyard.audit.services import AuditLog

    database = _database(url)
    log = AuditLog(database, flush_interval=3600)
    digest = "sha256:" + "5" * 64
    started = time.monotonic()
    for number in range(pulls):
        path = f"/v2/team/app-{number % 100}/manifests/{digest}"
        log.record(
            AuditEvent(
                AuditAction.PULL,
                f"robot$team+ci{number % 20}",
                ActorKind.ROBOT,
                resource_type=ResourceType.ARTIFACT,
                resource_name=f"team/app-{number % 100}@{digest}",
                client_ip=f"10.0.{number % 256}.{number % 200}",
                detail={"method": "GET", "path": path},
                occurred_at=START + timedelta(seconds=number / RATE),
            )
        )
    log.close()
    seconds = time.monotonic() - started
    size = _size(database, "audit_events")
    database.dispose()
    per_pull = size / pulls
    return {
        "pulls": pulls,
        "rows": pulls,
        "bytes": size,
        "bytes_per_pull": round(per_pull, 1),
        "per_million_pulls_mib": round(per_pull * 1_000_000 / 2**20, 1),
        "90_days_at_100_per_s_gib": round(per_pull * DAYS_90 / 2**30, 1),
        "write_seconds": round(seconds, 1),
    }


def _counted(url: str, traffic: str) -> dict[str, Any]:
    from dockyard.audit.interfaces import ActorKind
    from dockyard.audit.pull_counts import PullCounter

    database = _database(url)
    now = [START]
    counter = PullCounter(
        database, interval=3600, clock=lambda: now[0]
    )  # batches below, on the simulated clock
    chooser = random.Random(18)
    manifests = [f"team/app-{n % 100}@sha256:{n:064x}" for n in range(1000)]
    zipf = [1 / (rank + 1) ** 1.1 for rank in range(len(manifests))]
    popular = chooser.choices(manifests, zipf, k=PULLS) if traffic == "scattered" else []
    busy = chooser.choices(range(200), zipf[:200], k=PULLS) if traffic == "teams" else []
    started = time.monotonic()
    for number in range(PULLS):
        now[0] = START + timedelta(seconds=number / RATE)
        if traffic == "one-key":
            name, actor = manifests[0], "robot$team+ci"
        elif traffic == "teams":
            principal = busy[number]
            name = manifests[(principal * 5 + chooser.randrange(20)) % len(manifests)]
            actor = f"robot$team+ci{principal}"
        elif traffic == "scattered":
            name = popular[number]
            actor = f"robot$team+ci{chooser.randrange(200)}"
        else:
            name, actor = f"team/app@sha256:{number:064x}", "robot$team+ci"
        counter.count(name, actor, ActorKind.ROBOT, f"10.0.{number % 256}.{number % 200}")
        if number % BATCH_EVERY == BATCH_EVERY - 1:
            counter.flush()
    counter.close()
    seconds = time.monotonic() - started
    with database.read() as connection:
        rows = connection.execute(text("SELECT count(*), sum(pulls) FROM audit_pull_counts")).one()
        hours = connection.execute(text("SELECT count(DISTINCT hour) FROM audit_pull_counts")).scalar_one()
    size = _size(database, "audit_pull_counts")
    database.dispose()
    assert rows[1] == PULLS, rows
    # 90 days: as many hours as the run's full hours' rows each, at the same bytes a row.
    span_hours = PULLS / RATE / 3600
    rows_per_hour = rows[0] / span_hours
    bytes_per_row = size / rows[0]
    return {
        "pulls": PULLS,
        "rows": rows[0],
        "hours": hours,
        "bytes": size,
        "bytes_per_pull": round(size / PULLS, 2),
        "90_days_at_100_per_s_gib": round(rows_per_hour * 90 * 24 * bytes_per_row / 2**30, 3),
        "count_and_write_seconds": round(seconds, 1),
    }


def _size(database: Any, table: str) -> int:
    """The table's bytes on disk with its indexes."""
    if database.engine.dialect.name == "postgresql":
        # Each batch's UPDATE of a row leaves its old version behind until (auto)vacuum reclaims it.
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"VACUUM FULL {table}"))
            return int(connection.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one())
    with database.read() as connection:
        query = (
            "SELECT sum(pgsize) FROM dbstat WHERE name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name = :table)"
        )
        return int(connection.execute(text(query), {"table": table}).scalar_one())


if __name__ == "__main__":
    raise SystemExit(main())
