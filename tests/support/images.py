"""The container images `make image` and `make images` build (scripts/build_images.py), for tests/images.

`built_images(set)` runs the build script, which does nothing when its cached archive is up to date
(and waits on its lock while another session builds); the tests load the archive into a dockerd of their
own (tests/support/docker.py, data root on a tmpfs) and run containers there with `--network host` or on
a compose network. A missing tool (mmdebstrap, dockerd, docker-compose) fails, it never skips.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.docker import DockerClient, RunningDocker
from tests.support.server import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_images.py"
ARCHIVES = REPO_ROOT / "build" / "images"
DOCKYARD_IMAGE = "dockyard:latest"
ADMIN_PASSWORD_LINE = re.compile(r"created the administrator 'admin' with password: (\S+)")


def built_images(image_set: str) -> Path:
    """Build (or find up to date) the images of `image_set`, "dockyard" or "ha"; their archive."""
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--set", image_set],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        command = f"scripts/build_images.py --set {image_set}"
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return ARCHIVES / f"{image_set}.tar"


@dataclass
class ImagesDaemon:
    """A dockerd the image tests share (tests/images/conftest.py), and the image sets loaded into it."""

    daemon: RunningDocker
    root: Path
    _loaded: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, name: str) -> DockerClient:
        """A client of the daemon with logins of its own (config dir `name`)."""
        return self.daemon.client(self.root / name)

    def load(self, *image_sets: str) -> None:
        """Build (or find up to date) each image set in turn, and `docker load` those not loaded yet, at
        once (the load of one beside the build of the next)."""
        loader = self.client("loader")
        with self._lock, concurrent.futures.ThreadPoolExecutor() as pool:
            loads = {}
            for image_set in image_sets:
                if image_set not in self._loaded:
                    archive = built_images(image_set)
                    loads[image_set] = pool.submit(loader, "load", "--input", str(archive), timeout=900)
            for image_set, done in loads.items():
                done.result()
                self._loaded.add(image_set)


@dataclass
class Container:
    """One container of a test's dockerd, by name."""

    docker: DockerClient
    name: str

    def inspect(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.docker("container", "inspect", self.name).stdout)
        return found[0]

    def logs(self) -> str:
        """Everything it wrote, stdout and stderr, over all its starts."""
        result = self.docker("logs", self.name)
        return result.stdout + result.stderr

    def health(self) -> str:
        state = self.inspect()["State"]
        return str(state["Health"]["Status"]) if state.get("Health") else state["Status"]

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Until the image's HEALTHCHECK passed (it first runs one --health-interval after the start)."""
        deadline = time.monotonic() + timeout
        while (state := self.inspect()["State"])["Health"]["Status"] != "healthy":
            if not state["Running"]:
                raise AssertionError(f"{self.name} exited with {state['ExitCode']}:\n{self.logs()[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} not healthy after {timeout}s: {state['Health']}\n{self.logs()[-6000:]}"
                )
            time.sleep(0.3)

    def wait_ready(self, url: str, timeout: float = 180.0) -> None:
        """Until GET {url}/readyz answers 200: sooner than the health check's next run."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            state = self.inspect()["State"]
            if not state["Running"]:
                raise AssertionError(f"{self.name} exited with {state['ExitCode']}:\n{self.logs()[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.logs()[-6000:]}")
            time.sleep(0.5)

    def wait_exited(self, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while (state := self.inspect()["State"])["Running"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {timeout}s")
            time.sleep(0.2)
        return int(state["ExitCode"])

    def admin_passwords_shown(self) -> list[str]:
        return ADMIN_PASSWORD_LINE.findall(self.logs())


def image_config(docker: DockerClient, image: str) -> dict[str, Any]:
    found = docker.inspect(image)
    assert found is not None, f"no image {image}"
    return found


__all__ = ["DOCKYARD_IMAGE", "Container", "ImagesDaemon", "built_images", "image_config"]
