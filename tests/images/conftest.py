"""One throwaway dockerd for both image modules (tests/support/docker.py, its data root on a tmpfs).

test_container and test_compose each started a daemon and loaded dockyard's image into it (~150 MB,
~2.3 s of the daemon's CPU each time). Now the first module to need the daemon starts it, each image set
(`make image`'s, `make images`' HA one) is loaded once, and the daemon stops after the last module of
the directory. The modules' containers, volumes and networks have names of their own (test_container's
`dockyard` on the host network, the compose project `dockyard-ha` on its bridge), and each module removes
its own when it ends. tests/support/module_order.py sends the directory to one xdist worker as a unit
(SHARED_SCOPES), so the daemon starts once per pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.docker import start_docker
from tests.support.images import ImagesDaemon


@pytest.fixture(scope="package")
def images_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImagesDaemon]:
    root = tmp_path_factory.mktemp("images")
    daemon = start_docker(root / "dockerd", data_tmpfs="16g")
    shared = ImagesDaemon(daemon, root)
    try:
        yield shared
    finally:
        # What a module left: its containers go, and the networks' bridges, which are in the host's
        # namespace (the containers, volumes and images are in the daemon's tmpfs, gone with it).
        docker = shared.client("teardown")
        containers = docker("ps", "--all", "--quiet", check=False).stdout.split()
        if containers:
            docker("rm", "--force", *containers, check=False)
        docker("network", "prune", "--force", check=False)
        daemon.stop()
