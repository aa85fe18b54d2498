"""`dockyard serve` gives the jemalloc in Granian's library (the HTTP workers' request and response
buffers) one arena per core of each worker's share, not jemalloc's 4 per core; an operator's own
setting of its variable stays as it is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dockyard.cli import server

pytestmark = pytest.mark.db_independent


@pytest.mark.parametrize(("workers", "cpus", "arenas"), [(2, 2, 1), (2, 8, 4), (4, 2, 1), (1, 4, 4)])
def test_each_worker_gets_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch, workers: int, cpus: int, arenas: int
) -> None:
    monkeypatch.delenv(server.GRANIAN_MALLOC_CONF_ENV, raising=False)
    server.tune_granian_allocator(workers, cpus)
    assert os.environ[server.GRANIAN_MALLOC_CONF_ENV] == f"narenas:{arenas}"


def test_an_operators_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(server.GRANIAN_MALLOC_CONF_ENV, "narenas:3,dirty_decay_ms:0")
    server.tune_granian_allocator(2, 2)
    assert os.environ[server.GRANIAN_MALLOC_CONF_ENV] == "narenas:3,dirty_decay_ms:0"


def test_granian_reads_it_when_imported_after() -> None:
    # jemalloc names a setting it does not know on stderr: the variable set at run time reaches it.
    script = (
        "import os; from dockyard.cli import server; "
        "server.tune_granian_allocator(2, 2); "
        "os.environ[server.GRANIAN_MALLOC_CONF_ENV] += ',no_such_option:1'; "
        "import granian"
    )
    env = {key: value for key, value in os.environ.items() if key != server.GRANIAN_MALLOC_CONF_ENV}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert "no_such_option:1" in done.stderr
    assert "narenas" not in done.stderr  # the setting itself was taken
