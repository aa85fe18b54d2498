"""Start a throwaway `dockerd` for a test module and drive it with the docker client that came with it.

The daemon runs in a mount namespace of its own (`unshare --mount`), where a temp directory is bound over
/etc/docker and a hosts file of the test's over /etc/hosts. So it reads its registry CAs from the test's own
`certs.d/<host:port>/ca.crt` and writes its trust key there, never into the host's /etc/docker, and the test
can give a registry a name. Its data root, exec root (with its own managed containerd), pid file and API
socket are temp paths too, with no networking of its own (no bridge, no iptables). Its storage driver is
vfs, which works on any data root, or overlay2 on a data root of its own tmpfs (`data_tmpfs`: the
daemons that build images and run containers). tests/e2e pull, push, load and inspect images with it;
tests/images run containers on it, with `--network host` or on a compose network (a user-defined bridge,
which works without the default one). It needs root (CI runs as root). A missing `dockerd` or docker
client is a failure, never a skip.

Why a name and IPv6 for HTTPS: dockerd always counts 127.0.0.0/8 as an insecure registry, and for an
insecure registry it skips certificate checks and ignores certs.d. A registry it must verify is reached
under a name that resolves to ::1 only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import stop_process

# Where Debian's docker.io puts the client; /usr/local/bin/docker (a bare client of another version, found
# first on PATH on some machines) is not it.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class DockerFailed(AssertionError):
    """A docker client command exited non-zero; the message carries its output and the daemon's log."""

    def __init__(self, result: subprocess.CompletedProcess[str], daemon_log: str) -> None:
        self.result = result
        super().__init__(
            f"docker failed with exit code {result.returncode}: {' '.join(map(str, result.args))}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
            f"--- dockerd log (tail) ---\n{daemon_log[-4000:]}"
        )


@dataclass
class RunningDocker:
    socket: Path  # the daemon's API socket
    process: subprocess.Popen[bytes]
    log_path: Path
    docker_bin: str  # the client from the daemon's package
    etc_dir: Path  # the daemon's /etc/docker
    short_dir: Path  # socket and exec root (a unix socket path must stay under ~100 bytes)

    def client(self, config_dir: Path) -> DockerClient:
        """A client of this daemon that keeps its logins in `config_dir` (its DOCKER_CONFIG)."""
        config_dir.mkdir(parents=True, exist_ok=True)
        return DockerClient(self, config_dir)

    def trust(self, registry: str, ca_file: Path) -> None:
        """Make the daemon verify `registry` (host:port) against this CA: certs.d/<host:port>/ca.crt."""
        directory = self.etc_dir / "certs.d" / registry
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_file, directory / "ca.crt")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        # dockerd stops its managed containerd; the namespace and its bind mounts end with the last process.
        stop_process(self.process, grace=30)
        shutil.rmtree(self.short_dir, ignore_errors=True)


@dataclass
class DockerClient:
    daemon: RunningDocker
    config_dir: Path

    def __call__(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": SYSTEM_PATH,  # no credential helper from elsewhere: logins land in config.json
            "HOME": str(self.config_dir),
            "DOCKER_HOST": f"unix://{self.daemon.socket}",
            "DOCKER_CONFIG": str(self.config_dir),
        }
        result = subprocess.run(
            [self.daemon.docker_bin, *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise DockerFailed(result, self.daemon.log())
        return result

    def login(
        self, registry: str, username: str, password: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self(
            "login", "--username", username, "--password-stdin", registry, stdin=password, check=check
        )

    def saved_logins(self) -> set[str]:
        """The registries config.json holds credentials for."""
        path = self.config_dir / "config.json"
        return set(json.loads(path.read_text()).get("auths", {})) if path.exists() else set()

    def inspect(self, image: str) -> dict[str, Any] | None:
        """`docker image inspect`, None when the daemon has no such image."""
        result = self("image", "inspect", image, check=False)
        if result.returncode != 0:
            assert "No such image" in result.stderr, result.stderr
            return None
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found[0]


def write_hosts_file(path: Path, names: dict[str, str]) -> Path:
    """The host's /etc/hosts plus `address name` lines for the test's registry names."""
    base = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else "127.0.0.1 localhost\n"
    path.write_text(base.rstrip("\n") + "\n" + "".join(f"{ip} {name}\n" for name, ip in names.items()))
    return path


def require_system_tool(name: str) -> str:
    """`name` from the system's directories (dockerd is in /usr/sbin, which a PATH may lack); in CI a
    missing tool is a failure, never a skip."""
    path = shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make test` (it installs docker.io)")
    return path


def storage_driver(tmpfs_data_root: bool) -> str:
    """overlay2 on a data root of its own tmpfs when the kernel has overlay; else vfs, which needs
    nothing of the file system under it (overlay2 refuses some, overlay itself for one)."""
    filesystems = Path("/proc/filesystems")
    has_overlay = filesystems.is_file() and "\toverlay\n" in filesystems.read_text()
    return "overlay2" if tmpfs_data_root and has_overlay else "vfs"


def start_docker(
    workdir: Path,
    *,
    insecure_registries: tuple[str, ...] = (),
    names: dict[str, str] | None = None,
    timeout: float = 60.0,
    data_tmpfs: str | None = None,
    daemon_config: dict[str, Any] | None = None,
) -> RunningDocker:
    """Start dockerd with everything under `workdir` (and a short temp dir), wait until its API answers.

    `insecure_registries` (host:port) are spoken to over plain HTTP; `names` are extra hosts-file entries
    (name -> address) the daemon resolves. `data_tmpfs` (a size, e.g. "6g") puts the data root on a tmpfs
    mounted in the daemon's namespace only: for daemons that build images or run containers. Memory
    instead of disk, and gone with the daemon (no slow deletion of gigabytes on a disk mounted with
    `discard`). Such a daemon stores on overlay2 (tmpfs has what it needs) when the kernel has overlay:
    on vfs every layer, build step and container is a full copy of its tree, which made building the HA
    example's images twice as slow and loading them (600 MB) copy gigabytes. The images are the same
    either way (`docker save` writes each layer's changes as a tar).
    """
    dockerd_bin = require_system_tool("dockerd")
    unshare_bin = require_system_tool("unshare")
    docker_bin = require_system_tool("docker")  # the daemon's own client, checked against it below
    workdir.mkdir(parents=True, exist_ok=True)
    short_dir = Path(tempfile.mkdtemp(prefix="dockyard-dockerd-"))
    etc_dir = workdir / "etc-docker"
    (etc_dir / "certs.d").mkdir(parents=True)
    (etc_dir / "daemon.json").write_text(json.dumps(daemon_config or {}) + "\n")  # e.g. registry-mirrors
    hosts_file = write_hosts_file(workdir / "hosts", names or {})
    socket = short_dir / "docker.sock"
    data_root = workdir / "data"
    command = [
        dockerd_bin,
        "--config-file", str(etc_dir / "daemon.json"),
        "--data-root", str(data_root),
        "--exec-root", str(short_dir / "exec"),
        "--host", f"unix://{socket}",
        "--pidfile", str(short_dir / "docker.pid"),
        "--storage-driver", storage_driver(data_tmpfs is not None),
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        *(f"--insecure-registry={registry}" for registry in insecure_registries),
    ]  # fmt: skip
    # In a private mount namespace: bind the test's /etc/docker and hosts file, then become dockerd.
    in_namespace = 'mount --bind "$1" /etc/docker && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"'
    if data_tmpfs is not None:
        data_root.mkdir()
        in_namespace = (
            f'mount -t tmpfs -o size={data_tmpfs},mode=0711 dockerd-data "{data_root}" && {in_namespace}'
        )
    log_path = workdir / "dockerd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [unshare_bin, "--mount", "--propagation", "private", "--", "sh", "-c", in_namespace, "dockerd-ns",
             str(etc_dir), str(hosts_file), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": SYSTEM_PATH},
            start_new_session=True,
        )  # fmt: skip
    daemon = RunningDocker(socket, process, log_path, docker_bin, etc_dir, short_dir)
    probe = daemon.client(workdir / "probe-config")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            shutil.rmtree(short_dir, ignore_errors=True)
            raise RuntimeError(f"dockerd exited with {process.returncode}:\n{daemon.log()}")
        if socket.exists():
            versions = probe("version", "--format", "{{.Client.Version}} {{.Server.Version}}", check=False)
            if versions.returncode == 0:
                client_version, server_version = versions.stdout.split()
                if client_version != server_version:
                    daemon.stop()
                    raise RuntimeError(f"{docker_bin} is {client_version}, dockerd is {server_version}")
                return daemon
        time.sleep(0.2)
    daemon.stop()
    raise RuntimeError(f"dockerd did not answer within {timeout}s:\n{daemon.log()}")
