"""Run the real container clients (skopeo, podman, buildah) in a sandbox of their own.

Each `ContainerTools` has its own storage root (vfs driver, so it works rootful without overlay or fuse),
registries.conf, auth file and HOME, all under one temp directory: tests never touch the host's image store
and can run in parallel. A missing tool is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import require_tool


class CommandFailed(AssertionError):
    """A client command exited non-zero; the message carries everything needed to see why."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"command failed with exit code {result.returncode}: {' '.join(map(str, result.args))}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def run(
    command: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell, capturing text; raise CommandFailed on a non-zero exit if `check`."""
    result = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


@dataclass
class ContainerTools:
    home: Path

    def __post_init__(self) -> None:
        self.skopeo_bin = require_tool("skopeo")
        self.podman_bin = require_tool("podman")
        self.buildah_bin = require_tool("buildah")
        self.storage_root = self.home / "storage"
        # podman refuses a runroot longer than 50 characters, so it cannot live under pytest's tmp_path.
        self.run_root = Path(tempfile.mkdtemp(prefix="dockyard-e2e-run-"))
        self.podman_tmp = self.home / "podman-tmp"
        for directory in (self.storage_root, self.run_root, self.podman_tmp, self.home / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.home / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.storage_root}"\nrunroot = "{self.run_root}"\n'
        )
        # Fully qualified names only: no short-name lookups against public registries.
        (self.home / "registries.conf").write_text("unqualified-search-registries = []\n")
        (self.home / "auth.json").write_text('{"auths": {}}\n')

    def cleanup(self) -> None:
        shutil.rmtree(self.run_root, ignore_errors=True)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "CONTAINERS_STORAGE_CONF": str(self.home / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.home / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(self.home / "auth.json"),
        }

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.skopeo_bin, *args], env=self.env, check=check)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # No daemon, no systemd: cgroupfs and a file for events; all state under self.home.
        options = {
            **self._storage_options(),
            "--tmpdir": str(self.podman_tmp),
            "--cgroup-manager": "cgroupfs",
            "--events-backend": "file",
        }
        return run([self.podman_bin, *as_flags(options), *args], env=self.env, check=check)

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.buildah_bin, *as_flags(self._storage_options()), *args], env=self.env, check=check)

    def _storage_options(self) -> dict[str, str]:
        return {"--root": str(self.storage_root), "--runroot": str(self.run_root), "--storage-driver": "vfs"}


def as_flags(options: dict[str, str]) -> list[str]:
    return [part for option in options.items() for part in option]
