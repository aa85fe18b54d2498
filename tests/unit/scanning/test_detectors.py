"""The detectors on real content of this machine: the test venv's Python distributions, node's bundled
npm packages, Debian's jars (and a Spring-Boot-style jar holding them), Go binaries (seaweedfs's, with
modules; Debian's umoci, without), an RPM database that rpm itself wrote."""

from __future__ import annotations

import importlib.metadata
import io
import json
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from dockyard.scanning.detectors_os import Rpm, rpm_header
from dockyard.scanning.gobuildinfo import MAGIC, GoBuildInfoScanner
from dockyard.scanning.interfaces import Limits
from dockyard.scanning.walker import Walk
from tests.support.layers import (
    GO_BINARY_DEBIAN,
    GO_BINARY_WITH_MODULES,
    dist_info,
    file,
    first_jar,
    layer,
    npm_root,
    real,
    write_tar,
)

L1 = "sha256:" + "a" * 64


def walk_members(members: list, limits: Limits | None = None) -> Walk:  # type: ignore[type-arg]
    result = Walk(limits)
    result.layer(L1, io.BytesIO(layer(members)))
    return result


def test_python_distributions_from_the_test_venv() -> None:
    projects = ["httpx", "SQLAlchemy", "pydantic", "typing_extensions"]
    members = [real(f"usr/lib/python3/dist-packages/{dist_info(p).name}", dist_info(p)) for p in projects]
    found = {p.name: p for p in walk_members(members).packages()}
    for project in projects:
        distribution = importlib.metadata.distribution(project)
        package = found[distribution.metadata["Name"]]
        assert package.version == distribution.version
        assert package.ecosystem == "PyPI"
    assert found["typing_extensions"].purl == (
        f"pkg:pypi/typing-extensions@{importlib.metadata.version('typing_extensions')}"
    )


def test_npm_packages_from_nodes_bundled_npm() -> None:
    root = npm_root()
    result = walk_members([real("usr/lib/node_modules/npm", root)])
    found = {p.name: p for p in result.packages() if p.ecosystem == "npm"}
    expected = {}
    for manifest in [root / "package.json", *root.glob("node_modules/*/package.json")]:
        document = json.loads(manifest.read_text())
        expected[document["name"]] = document["version"]
    for scoped in root.glob("node_modules/@*/*/package.json"):
        document = json.loads(scoped.read_text())
        expected[document["name"]] = document["version"]
    assert {name: p.version for name, p in found.items() if name in expected} == expected
    assert len(expected) > 50
    scoped_name = next(name for name in found if name.startswith("@"))
    scope, bare = scoped_name[1:].split("/")
    assert found[scoped_name].purl == f"pkg:npm/%40{scope}/{bare}@{found[scoped_name].version}"
    # package.json files inside a package (tests, docs) are not packages
    assert all(
        p.path.endswith(f"node_modules/{p.name}/package.json") or p.name == "npm" for p in found.values()
    )


def pom(jar: Path) -> dict[str, str]:
    with zipfile.ZipFile(jar) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/pom.properties"))
        lines = archive.read(name).decode().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_a_real_jar_and_the_same_jar_nested_in_a_spring_boot_style_jar() -> None:
    jar = first_jar()
    props = pom(jar)
    coordinate = f"{props['groupId']}:{props['artifactId']}"
    boot = io.BytesIO()
    with zipfile.ZipFile(boot, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nImplementation-Title: app\n")
        archive.write(jar, f"BOOT-INF/lib/{jar.name}")
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as deeper:
            deeper.write(jar, "lib/too-deep.jar")
        archive.writestr("BOOT-INF/lib/wrapper.jar", inner.getvalue())
    result = walk_members([real("opt/lib/direct.jar", jar), file("opt/app.jar", boot.getvalue())])
    found = [(p.name, p.version, p.path) for p in result.packages()]
    assert (coordinate, props["version"], "opt/lib/direct.jar") in found
    assert (coordinate, props["version"], f"opt/app.jar!/BOOT-INF/lib/{jar.name}") in found
    assert result.packages()[0].purl.startswith(f"pkg:maven/{props['groupId']}/{props['artifactId']}@")
    # depth 2 by default: the jar in wrapper.jar is one too deep, and is reported as skipped
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("opt/app.jar!/BOOT-INF/lib/wrapper.jar!/lib/too-deep.jar", "nested deeper than 2 archives")
    ]
    # the app itself names no version, but it holds jars: those are its content, nothing is unreadable
    assert result.unreadable_formats() == []


def test_a_zip_bomb_in_a_jar_stays_bounded() -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", b"Implementation-Version: 1\n" + bytes(64 * 1024 * 1024))
        archive.writestr("lib/huge.jar", bytes(64 * 1024 * 1024))
        archive.writestr("junk/not-a-jar.jar", b"PK garbage")
    result = walk_members([file("app/bomb.jar", bomb.getvalue())])
    reasons = sorted(s.reason for s in result.skipped)
    assert reasons == ["larger than 256 KiB", "nested archive larger than 16777216 bytes"]
    assert [(u.format, u.reason) for u in result.unreadable_formats()] == [
        ("java-archive", "junk/not-a-jar.jar: not a readable zip: File is not a zip file")
    ]
    assert len(bomb.getvalue()) < 1024 * 1024  # 128 MiB inflated


def test_a_jar_without_version_metadata_is_reported_unreadable() -> None:
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: App\n")
        archive.writestr("App.class", b"\xca\xfe\xba\xbe")
    result = walk_members([file("srv/app.jar", plain.getvalue())])
    assert result.packages() == []
    assert [(u.format, u.path, u.reason) for u in result.unreadable_formats()] == [
        ("java-archive", "srv/app.jar", "archive: no pom.properties, no version in MANIFEST.MF")
    ]


def scan_file(path: Path) -> GoBuildInfoScanner:
    scanner = GoBuildInfoScanner()
    with path.open("rb") as binary:
        while chunk := binary.read(1024 * 1024):
            scanner.feed(chunk)
            if scanner.done:
                break
    return scanner


def test_go_build_info_of_a_real_binary_with_modules_through_a_layer() -> None:
    binary = GO_BINARY_WITH_MODULES
    data = binary.read_bytes()
    start = data.find(MAGIC)
    version = data[start + 33 : start + 33 + data[start + 32]].decode()  # the independent reading
    del data
    with tempfile.TemporaryFile() as layer_file:  # 150 MB: streamed from disk, as storage serves it
        write_tar(layer_file, [real("usr/local/bin/weed", binary)])
        layer_file.seek(0)
        result = Walk()
        result.layer(L1, layer_file)
    found = {p.name: p for p in result.packages()}
    assert found["stdlib"].version == version.removeprefix("go")
    assert found["github.com/seaweedfs/seaweedfs"].ecosystem == "Go"
    assert len(found) > 100  # its dependencies
    dep = found["cloud.google.com/go"]
    assert dep.version.startswith("v") and dep.purl == f"pkg:golang/cloud.google.com/go@{dep.version}"
    assert all(p.path == "usr/local/bin/weed" for p in found.values())


def test_go_build_info_of_a_debian_binary_has_no_modules() -> None:
    found = scan_file(GO_BINARY_DEBIAN).finish()
    assert found is not None
    assert found.facts["go_path"] == "github.com/opencontainers/umoci/cmd/umoci"
    assert [f.name for f in found.findings] == ["stdlib"]
    assert scan_file(Path("/usr/bin/ls")).finish() is None  # ELF, not Go


def test_go_build_info_before_go_1_18_is_reported_unreadable() -> None:
    old = b"\x7fELF" + bytes(100) + MAGIC + b"\x08\x00" + bytes(16) + b"\x00" * 64
    scanner = GoBuildInfoScanner()
    scanner.feed(old)
    found = scanner.finish()
    assert found is not None and found.unreadable == [
        ("go-buildinfo", "built before Go 1.18 (pointer-format build info)")
    ]


@pytest.fixture(scope="module")
def rpmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sqlite rpmdb: rpmbuild makes a package, rpm --justdb records it."""
    top = tmp_path_factory.mktemp("rpm")
    (top / "SPECS").mkdir()
    (top / "SPECS" / "hello.spec").write_text(
        "Name: dockyard-hello\nVersion: 1.2.3\nRelease: 4.el9\nEpoch: 2\nSummary: test\nLicense: MIT\n"
        "BuildArch: noarch\n%description\ntest\n%files\n"
    )
    subprocess.run(
        ["rpmbuild", "-bb", "--define", f"_topdir {top}", str(top / "SPECS" / "hello.spec")],
        check=True,
        capture_output=True,
    )
    db = top / "db"
    subprocess.run(["rpm", "--initdb", "--dbpath", str(db)], check=True)
    package = next((top / "RPMS" / "noarch").glob("*.rpm"))
    subprocess.run(
        [
            "rpm",
            "-i",
            "--dbpath",
            str(db),
            "--nodeps",
            "--justdb",
            "--ignorearch",
            "--ignoreos",
            str(package),
        ],
        check=True,
        capture_output=True,
    )
    return db / "rpmdb.sqlite"


def test_rpm_sqlite_database_written_by_rpm(rpmdb: Path) -> None:
    os_release = file("etc/os-release", b'ID="rocky"\nVERSION_ID="9.3"\n')
    result = walk_members([os_release, real("var/lib/rpm/rpmdb.sqlite", rpmdb)])
    [package] = result.packages()
    assert (package.name, package.version, package.ecosystem) == (
        "dockyard-hello",
        "2:1.2.3-4.el9",
        "Rocky Linux",
    )
    assert package.source_name == "dockyard-hello"
    assert package.purl == "pkg:rpm/rocky/dockyard-hello@2:1.2.3-4.el9?arch=noarch&distro=rocky-9.3&epoch=2"


def test_rpm_formats_it_cannot_read_are_reported_never_as_no_packages() -> None:
    result = walk_members(
        [
            file("var/lib/rpm/Packages", b"\x00\x06\x15\x61" + bytes(4000)),  # Berkeley DB (RHEL 8)
            file("usr/lib/sysimage/rpm/Packages.db", b"RpmP" + bytes(100)),  # NDB (SUSE)
            file("usr/lib/sysimage/rpm/rpmdb.sqlite", b"SQLite format 3\0 but then garbage" * 10),
        ]
    )
    assert result.packages() == []
    assert sorted((u.format, u.path) for u in result.unreadable_formats()) == [
        ("rpm-bdb", "var/lib/rpm/Packages"),
        ("rpm-ndb", "usr/lib/sysimage/rpm/Packages.db"),
        ("rpm-sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite"),
    ]


def test_rpm_header_parser_refuses_lying_sizes(rpmdb: Path) -> None:
    found = Rpm().detect("var/lib/rpm/rpmdb.sqlite", b"", Limits())
    assert found.unreadable == [("rpm-sqlite", "not a readable sqlite database: no SQLite header")]
    with pytest.raises(ValueError, match="out of range"):
        rpm_header(struct.pack(">II", 3, 10_000) + bytes(100))
    with pytest.raises(ValueError, match="short"):
        rpm_header(b"\0\0")
    # a header whose string offsets point past its data is read as far as it goes, never past
    blob = struct.pack(">II", 1, 4) + struct.pack(">IIII", 1000, 6, 99, 1) + b"abc\0"
    assert rpm_header(blob) == {}


@pytest.mark.parametrize(
    "path",
    [
        "var/lib/dpkg/status",
        "var/lib/dpkg/status.d/x",
        "lib/apk/db/installed",
        "var/lib/rpm/rpmdb.sqlite",
        "etc/os-release",
        "usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
        "app/node_modules/x/package.json",
        "opt/x.jar",
    ],
)
def test_garbage_in_every_detectors_file_never_breaks_the_walk(path: str) -> None:
    import random

    rng = random.Random(path)
    payloads = [bytes(rng.getrandbits(8) for _ in range(size)) for size in (0, 1, 100, 5000)] + [
        b"PK\x03\x04" + bytes(200),
        b"SQLite format 3\0" + bytes(600),
        b"\xff\xfe" * 300,
    ]
    for payload in payloads:
        result = walk_members([file(path, payload), file("lib/apk/db/installed.ok", b"")])
        result.packages()  # reports what it could, raises nothing
        assert all(u.path == path for u in result.unreadable_formats())


def test_a_detector_that_fails_makes_its_file_unreadable_not_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dockyard.scanning.detectors_os import Dpkg

    def broken(self: Dpkg, path: str, data: bytes, limits: Limits) -> None:
        raise RecursionError("what a detector did not foresee")

    monkeypatch.setattr(Dpkg, "detect", broken)
    result = walk_members(
        [file("var/lib/dpkg/status", b"Package: x\n"), file("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\n")]
    )
    assert [p.name for p in result.packages()] == ["musl"]
    assert [(u.format, u.path, u.reason) for u in result.unreadable_formats()] == [
        ("dpkg", "var/lib/dpkg/status", "could not be parsed (RecursionError)")
    ]
