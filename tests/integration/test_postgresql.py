"""Several nodes (and several workers per node) migrating one PostgreSQL database at the same time."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dockyard.db.engine import build_engine
from dockyard.db.migrate import current_revision, head_revisions, upgrade
from tests.support.postgres import PostgresCluster, throwaway_postgres
from tests.support.server import DOCKYARD


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with throwaway_postgres() as running:
        yield running


def test_db_upgrade_from_several_nodes_at_once(cluster: PostgresCluster, tmp_path: Path) -> None:
    url = cluster.create_database().replace("postgresql+psycopg://", "postgresql://", 1)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"datadir": str(tmp_path / "data"), "database": {"url": url}}))
    nodes = [  # three processes, as three nodes upgrade at once: each with its own connections and lock
        subprocess.Popen(
            [DOCKYARD, "db", "upgrade", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [node.communicate(timeout=120)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0, 0], outputs
    (head,) = head_revisions()
    assert all(f"database at revision {head}" in output for output in outputs), outputs


def test_a_process_that_migrated_does_not_keep_other_processes_waiting(cluster: PostgresCluster) -> None:
    # Each server worker migrates at start and keeps its engine (and its pooled connections) for good.
    url = cluster.create_database()
    first, second = build_engine(url), build_engine(url)
    try:
        upgrade(first)
        finished = threading.Event()
        worker = threading.Thread(target=lambda: (upgrade(second), finished.set()), daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert finished.is_set(), "the second upgrade waited on a lock the first process still holds"
        assert current_revision(second) in head_revisions()
    finally:
        first.dispose()
        second.dispose()
