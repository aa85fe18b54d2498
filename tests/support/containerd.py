"""Start a throwaway `containerd` daemon for a test and drive it with `ctr`.

Each daemon has its own root, state and unix socket under temp directories and a minimal config (no CRI, no
snapshotters that cannot work here), so it never touches a system containerd and several can run side by
side. It needs root (CI runs as root). A missing `containerd` or `ctr` is a failure, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop_process
from tests.support.server import require_tool

NAMESPACE = "test"
# Debian 12's ctr (containerd 1.6.20, built with grpc-go 1.33) now and then fails a push that uploads
# several blobs at once before it sends a byte of one of them: reading that blob from its own daemon
# over gRPC ends in this error (likely grpc-go's flow-control race #5358, fixed in 1.49), and ctr
# closes its connections after the PUT's headers. The registry is not involved: a gRPC status is never
# an HTTP answer, and distribution 2.8.2 sees the same rate (5 of 300 pushes of a 3-layer image; with
# --max-concurrent-uploaded-layers 1, 0 of 300). `push` tries again on it, and only on it.
CLIENT_READ_FLAKE = "failed to copy: rpc error: code = Internal desc = unexpected EOF"
# The same failure, met while ctr retries the PUT: its push writer was closed by the failed read, and
# the retry's new pipe panics in containerd's pusher (pusher.go setPipe: "send on closed channel").
# The registry saw the PUT's headers and no byte of its body, as above. The same panic also ended, once
# in a CI run (2026-12-07), a push the registry refused with 403 (a full project): `refused_push`.
CLIENT_PUSH_PANIC = "panic: send on closed channel"
CLIENT_FLAKES = (CLIENT_READ_FLAKE, CLIENT_PUSH_PANIC)
# Plugins a registry client does not need; leaving them out keeps the start quick and the log quiet.
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",  # would create /opt/containerd, shared with the host
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
)


class CtrFailed(AssertionError):
    """A `ctr` command exited non-zero; the message carries its output and the daemon's log."""

    def __init__(self, result: subprocess.CompletedProcess[bytes], daemon_log: str) -> None:
        self.result = result
        super().__init__(
            f"ctr failed with exit code {result.returncode}: {' '.join(map(str, result.args))}\n"
            f"--- stdout ---\n{result.stdout.decode(errors='replace')}\n"
            f"--- stderr ---\n{result.stderr.decode(errors='replace')}\n"
            f"--- containerd log (tail) ---\n{daemon_log[-4000:]}"
        )


@dataclass
class RunningContainerd:
    address: Path  # the daemon's gRPC unix socket
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    ctr_bin: str
    snapshotter: str  # overlayfs when this machine can mount it, else native
    short_dir: Path  # holds the socket and the state (a unix socket path must stay under ~100 bytes)
    client_read_flakes: int = 0  # pushes `push` tried again after one of CLIENT_FLAKES

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """`ctr --address SOCK -n test ARGS`; stdout stays bytes (`content get` prints a blob's bytes)."""
        command = [self.ctr_bin, "--address", str(self.address), "--namespace", NAMESPACE, *args]
        result = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERD_SNAPSHOTTER": self.snapshotter},
            check=False,
        )
        if check and result.returncode != 0:
            raise CtrFailed(result, self.log())
        return result

    def push(self, *args: str, attempts: int = 3) -> subprocess.CompletedProcess[bytes]:
        """`ctr images push ARGS`, again (up to `attempts` in all) when ctr failed reading its own
        content (CLIENT_FLAKES); any other failure raises CtrFailed at once."""
        result = self._push_past_client_flakes(args, attempts, timeout=120)
        if result.returncode != 0:
            raise CtrFailed(result, self.log())
        return result

    def refused_push(
        self, *args: str, timeout: float = 120, attempts: int = 3
    ) -> subprocess.CompletedProcess[bytes]:
        """`ctr images push ARGS` that the registry is to refuse: its failed result, again (up to
        `attempts` in all) when the failure was one of ctr's own (CLIENT_FLAKES: the panic also ends a
        push the registry answered with an error, once in a CI run), so the test sees the
        registry's answer. A push that succeeds fails the test; TimeoutExpired reaches the caller."""
        result = self._push_past_client_flakes(args, attempts, timeout)
        assert result.returncode != 0, f"the push was not refused: {result.stdout.decode(errors='replace')}"
        return result

    def _push_past_client_flakes(
        self, args: tuple[str, ...], attempts: int, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        for attempt in range(1, attempts + 1):
            result = self.ctr("images", "push", *args, check=False, timeout=timeout)
            stderr = result.stderr.decode(errors="replace")
            if result.returncode == 0 or not any(flake in stderr for flake in CLIENT_FLAKES):
                break
            if attempt < attempts:
                self.client_read_flakes += 1
        return result

    def ctr_text(self, *args: str) -> str:
        return self.ctr(*args).stdout.decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.short_dir, ignore_errors=True)


def write_config(path: Path, root: Path, state: Path, address: Path) -> None:
    disabled = ", ".join(f'"{plugin}"' for plugin in DISABLED_PLUGINS)
    path.write_text(
        "version = 2\n"
        f'root = "{root}"\n'
        f'state = "{state}"\n'
        f"disabled_plugins = [{disabled}]\n"
        "[grpc]\n"
        f'  address = "{address}"\n'
        "[ttrpc]\n"
        f'  address = "{address}.ttrpc"\n'
        "[debug]\n"
        '  address = ""\n'
        "[metrics]\n"
        '  address = ""\n'
    )


def start_containerd(workdir: Path, timeout: float = 30.0) -> RunningContainerd:
    """Start containerd with everything under `workdir` (and a short temp dir for the socket), wait until
    `ctr version` answers, and pick the snapshotter this machine supports."""
    daemon_bin = require_tool("containerd")
    ctr_bin = require_tool("ctr")
    workdir.mkdir(parents=True, exist_ok=True)
    short_dir = Path(tempfile.mkdtemp(prefix="dockyard-ctrd-"))
    address = short_dir / "containerd.sock"
    config_path = workdir / "config.toml"
    write_config(config_path, workdir / "root", short_dir / "state", address)
    log_path = workdir / "containerd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [daemon_bin, "--config", str(config_path), "--log-level", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    daemon = RunningContainerd(address, workdir / "root", process, log_path, ctr_bin, "native", short_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            shutil.rmtree(short_dir, ignore_errors=True)
            raise RuntimeError(f"containerd exited with {process.returncode}:\n{daemon.log()}")
        if address.exists() and daemon.ctr("version", check=False, timeout=10).returncode == 0:
            daemon.snapshotter = "overlayfs" if overlayfs_works(daemon) else "native"
            return daemon
        time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"containerd did not answer `ctr version` within {timeout}s:\n{daemon.log()}")


def overlayfs_works(daemon: RunningContainerd) -> bool:
    """containerd's overlayfs plugin test-mounts an overlay in its root when it loads: `ok` means it can."""
    listing = daemon.ctr_text("plugins", "ls")
    for line in listing.splitlines():
        fields = line.split()
        if fields[:2] == ["io.containerd.snapshotter.v1", "overlayfs"]:
            return fields[-1] == "ok"
    return False
