"""The cluster the tests in this directory share, one per module (see deployment.py).

Each module's tests run on one xdist worker (`--dist loadscope` in pyproject.toml), so a module starts one
cluster, not one per worker that picked up one of its tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.deployment import Cluster, start_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.stop()
