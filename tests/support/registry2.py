"""Debian's docker-registry (distribution 2.8, what `registry:2` runs), or the peer distribution v3.1.1
(`registry:3`, in ../shared/peers), on a free loopback port, open or behind htpasswd, for tests that need
a real third-party registry."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import yaml

from tests.support.processes import stop_process
from tests.support.server import REPO_ROOT, free_port, require_tool


def distribution_v3() -> list[str]:
    """The command that serves a registry:2 config with distribution v3.1.1: `run.sh` in the peers
    directory ($DOCKYARD_PEERS, else `shared/peers` beside the main worktree, as the benchmarks use it).
    Missing is a failure, not a skip."""
    peers = os.environ.get("DOCKYARD_PEERS")
    if peers is None:
        common = subprocess.run(
            ["git", "rev-parse", "--git-common-dir"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        main_worktree = (REPO_ROOT / common).resolve().parent if common else REPO_ROOT
        peers = str(main_worktree.parent / "shared" / "peers")
    script = Path(peers) / "distribution-v3.1.1" / "run.sh"
    assert script.is_file(), f"distribution v3.1.1 not found at {script}: set DOCKYARD_PEERS"
    return ["sh", str(script)]


@contextmanager
def running_registry2(
    workdir: Path, user: tuple[str, str] | None = None, command: list[str] | None = None
) -> Iterator[str]:
    """Its URL while it runs; with `user`, it asks for Basic auth (htpasswd) and knows that one user.
    `command` serves the config instead of docker-registry (`distribution_v3()`)."""
    serve = command or [require_tool("docker-registry"), "serve"]
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "root")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if user is not None:
        hashed = bcrypt.hashpw(user[1].encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{user[0]}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "registry2-test", "path": str(workdir / "htpasswd")}}
    (workdir / "registry2.yml").write_text(yaml.safe_dump(config))
    log_path = workdir / "registry2.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*serve, str(workdir / "registry2.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{serve} did not start: {log_path.read_text()}"
            time.sleep(0.1)
        yield url
    finally:
        stop_process(process)
