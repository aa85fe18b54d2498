"""The cluster the tests in this directory share: one for the whole directory (see deployment.py).

Building it is most of what a cross-node test costs, so every module here uses the same one: the
directory's modules go to one xdist worker as one unit (tests/support/module_order.py, SHARED_SCOPES),
and the cluster is package-scoped, stopped after the directory's last test. The tests that kill a node,
Redis or PostgreSQL start it again and wait until HAProxy has every node UP; each test pushes under
names and contents of its own (tests/cluster/load.py), so what an earlier test left is never what a
later one checks. A test that failed half-way may leave a part down: the next test then gets a new
cluster rather than an error that is not its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.deployment import Cluster, start_cluster


class SharedCluster:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.running: Cluster | None = None

    def healthy(self) -> Cluster:
        """The running cluster if every part is up (HAProxy has every node UP); else a new one."""
        if self.running is not None and not self.running.healthy():
            self.running.stop()
            self.running = None
        if self.running is None:
            self.running = start_cluster(self.factory.mktemp("cluster"))
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()


@pytest.fixture(scope="package")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedCluster]:
    shared = SharedCluster(tmp_path_factory)
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def cluster(shared_cluster: SharedCluster) -> Cluster:
    return shared_cluster.healthy()
