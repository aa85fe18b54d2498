"""The layer walker: layers applied in order, whiteouts honoured, and every bound holding against
hostile layers (names that climb out, links that point out, a 1 GiB file, a gzip bomb, huge headers)."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import time
import tracemalloc
import zlib

import pytest

from dockyard.scanning.interfaces import MIB, Limits
from dockyard.scanning.walker import Walk, normalise
from tests.support.layers import (
    Member,
    dpkg_files,
    dpkg_stanzas,
    dpkg_version,
    file,
    layer,
    opaque,
    whiteout,
)

L1, L2, L3 = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64
OS_RELEASE = file("etc/os-release", b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
PACKAGES = ["adduser", "sed", "base-files"]


def walk(*layers: tuple[str, bytes], limits: Limits | None = None) -> Walk:
    result = Walk(limits)
    for digest, blob in layers:
        result.layer(digest, io.BytesIO(blob))
    return result


def names(result: Walk, ecosystem: str | None = None) -> dict[str, str]:
    return {p.name: p.version for p in result.packages() if ecosystem is None or p.ecosystem == ecosystem}


def status(*packages: str) -> bytes:
    stanzas = dpkg_stanzas(list(PACKAGES))
    return "\n".join(stanzas[name] for name in packages).encode()


def test_real_dpkg_packages_with_distro_and_layer() -> None:
    stanzas = dpkg_stanzas(PACKAGES)
    base = layer([OS_RELEASE, file("var/lib/dpkg/status", status(*PACKAGES)), *dpkg_files("sed")])
    result = walk((L1, base))
    found = {p.name: p for p in result.packages()}
    for name in PACKAGES:
        package = found[name]
        assert package.version == dpkg_version(stanzas[name])
        assert package.ecosystem == "Debian"
        assert package.layer == L1
        assert package.distro == "debian-12"
        assert package.purl.startswith(f"pkg:deb/debian/{name}@")
        assert "distro=debian-12" in package.purl
    assert result.unreadable_formats() == []


def test_a_rewritten_status_keeps_each_package_in_the_layer_that_added_it() -> None:
    first = layer([OS_RELEASE, file("var/lib/dpkg/status", status("adduser", "base-files"))])
    second = layer([file("var/lib/dpkg/status", status("adduser", "base-files", "sed"))])
    layers = {p.name: p.layer for p in walk((L1, first), (L2, second)).packages()}
    assert layers == {"adduser": L1, "base-files": L1, "sed": L2}


def test_a_package_removed_in_an_upper_layer_is_not_reported() -> None:
    first = layer([OS_RELEASE, file("var/lib/dpkg/status", status(*PACKAGES))])
    removed = layer([file("var/lib/dpkg/status", status("adduser", "base-files"))])  # apt-get remove sed
    assert set(names(walk((L1, first), (L2, removed)))) == {"adduser", "base-files"}


def test_whiteout_deletes_a_database_and_an_opaque_directory_hides_the_lower_one() -> None:
    first = layer(
        [
            OS_RELEASE,
            file("var/lib/dpkg/status", status(*PACKAGES)),
            file("app/node_modules/left-pad/package.json", b'{"name": "left-pad", "version": "1.3.0"}'),
            file("app/node_modules/lodash/package.json", b'{"name": "lodash", "version": "4.17.20"}'),
            file(
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA", b"Name: six\nVersion: 1.16.0\n"
            ),
        ]
    )
    second = layer(
        [
            whiteout("var/lib/dpkg/status"),
            opaque("app/node_modules"),
            file("app/node_modules/lodash/package.json", b'{"name": "lodash", "version": "4.17.21"}'),
            whiteout("usr/lib/python3/dist-packages/six-1.16.0.dist-info"),
        ]
    )
    assert names(walk((L1, first))) == {
        "adduser": dpkg_version(dpkg_stanzas(["adduser"])["adduser"]),
        "sed": dpkg_version(dpkg_stanzas(["sed"])["sed"]),
        "base-files": dpkg_version(dpkg_stanzas(["base-files"])["base-files"]),
        "left-pad": "1.3.0",
        "lodash": "4.17.20",
        "six": "1.16.0",
    }
    result = walk((L1, first), (L2, second))
    assert names(result) == {"lodash": "4.17.21"}
    assert result.packages()[0].layer == L2


def test_a_whiteout_applies_to_lower_layers_only() -> None:
    # The OCI spec: a whiteout and a file of the same name in one layer: the file stays.
    only = layer([file("var/lib/dpkg/.wh.status", b""), file("var/lib/dpkg/status", status("sed"))])
    assert set(names(walk((L1, only)))) == {"sed"}


def test_a_file_or_link_replacing_a_directory_hides_what_was_below() -> None:
    first = layer([file("srv/node_modules/a/package.json", b'{"name": "a", "version": "1.0.0"}')])
    second = layer([file("srv/node_modules", b"not a directory any more")])
    assert names(walk((L1, first), (L2, second))) == {}


def test_hard_links_are_read_through_their_target_when_it_was_read() -> None:
    only = layer(
        [
            file("var/lib/dpkg/status.d/sed", status("sed")),
            Member("hardlink", "var/lib/dpkg/status.d/sed-again", target="var/lib/dpkg/status.d/sed"),
            file("backup/status", status("adduser")),
            Member("hardlink", "var/lib/dpkg/status.d/adduser", target="backup/status"),
        ]
    )
    result = walk((L1, only))
    assert sorted(p.path for p in result.packages()) == [
        "var/lib/dpkg/status.d/sed",
        "var/lib/dpkg/status.d/sed-again",
    ]
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("var/lib/dpkg/status.d/adduser", "hard link to backup/status, which holds nothing read")
    ]


# --- abuse ------------------------------------------------------------------------------------------
def test_names_that_climb_out_are_skipped_and_absolute_names_count_from_the_root() -> None:
    assert normalise("../../var/lib/dpkg/status") is None
    assert normalise("a/../../etc/passwd") is None
    assert normalise("/var/lib/dpkg/status") == "var/lib/dpkg/status"
    assert normalise("./var//lib/./dpkg/status") == "var/lib/dpkg/status"
    hostile = layer(
        [
            file("../../../var/lib/dpkg/status", status("sed")),
            file("/lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\n"),
        ]
    )
    result = walk((L1, hostile))
    assert names(result) == {"musl": "1.2.4-r2"}
    assert [s.reason for s in result.skipped] == ["path climbs out of the image root"]


def test_symlinks_are_never_followed() -> None:
    hostile = layer(
        [
            file("var/lib/dpkg/status", status("sed")),
            Member("symlink", "var/lib/dpkg/status", target="/etc/shadow"),
            Member("symlink", "lib/apk/db/installed", target="../../../../../../var/lib/dpkg/status"),
        ]
    )
    result = walk((L1, hostile))
    assert names(result) == {}  # the link replaced the status file; nothing on this machine was read
    assert [(s.path, s.reason) for s in result.skipped] == [
        (
            "lib/apk/db/installed",
            "symbolic link out of the image root (../../../../../../var/lib/dpkg/status), not followed",
        )
    ]


def zero_file_layer(name: str, size: int) -> bytes:
    """A gzip'd tar with one file of `size` zero bytes, made without holding it in memory.

    Each MiB of zeros is deflated once: after a full flush the compressor starts afresh, so every
    further MiB deflates to the same bytes, repeated (deflating the 1 GiB cost ~6 s of CPU)."""
    header = tarfile.TarInfo(name)
    header.size = size
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the gzip wrapper is written here
    out = io.BytesIO()
    head = header.tobuf(format=tarfile.PAX_FORMAT)
    out.write(deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH))
    block = bytes(MIB)
    deflated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(size // MIB):
        out.write(deflated)
        crc = zlib.crc32(block, crc)
    tail = bytes(size % MIB + (-size % 512) + 1024)
    out.write(deflate.compress(tail) + deflate.flush())
    crc = zlib.crc32(tail, crc)
    length = len(head) + size // MIB * MIB + len(tail)
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no name, no mtime
    return gzip_header + out.getvalue() + struct.pack("<II", crc, length & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def gib_zero_status() -> bytes:
    return zero_file_layer("var/lib/dpkg/status", 1024 * MIB)


def test_a_1_gib_database_is_skipped_in_bounded_memory(gib_zero_status: bytes) -> None:
    assert len(gib_zero_status) < 2 * MIB  # a gzip bomb: ~1000:1
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = walk((L1, gib_zero_status), (L2, layer([file("lib/apk/db/installed", b"P:a\nV:1\n")])))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 60
    assert peak < 48 * MIB, peak
    assert [(s.path, s.layer) for s in result.skipped] == [("var/lib/dpkg/status", L1)]
    assert "over the dpkg cap" in result.skipped[0].reason
    assert result.bytes_read > 1024 * MIB
    assert names(result) == {"a": "1"}


def test_the_layer_and_time_bounds_stop_a_bomb_and_say_so(gib_zero_status: bytes) -> None:
    small = Limits(max_layer_bytes=64 * MIB)
    result = walk((L1, gib_zero_status), (L2, layer([OS_RELEASE])), limits=small)
    assert [(u.format, u.layer) for u in result.unreadable_formats()] == [("layer", L1)]
    assert "larger than 67108864 bytes" in result.unreadable_formats()[0].reason
    assert result.distro()[0] == "debian-12"  # the next layer is still read
    started = time.monotonic()
    result = walk((L1, gib_zero_status), (L2, layer([OS_RELEASE])), limits=Limits(max_seconds=0.2))
    assert time.monotonic() - started < 5
    reasons = [u.reason for u in result.unreadable_formats()]
    assert reasons[0].startswith("read stopped: time limit")
    assert reasons[1].startswith("not read: time limit")  # the walk stopped: later layers are not read
    assert result.distro()[0] is None


def test_huge_pax_headers_many_entries_and_garbage_are_bounded() -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "y" * (2 * MIB)}
    huge_pax = gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT) + bytes(1024))
    result = walk(
        (L1, huge_pax), (L2, b"not a tar at all, and not gzip" * 40), (L3, b"\x28\xb5\x2f\xfd" + bytes(600))
    )
    reasons = {u.layer: u.reason for u in result.unreadable_formats()}
    assert "extended header" in reasons[L1]
    assert "not a tar archive" in reasons[L2]
    assert "zstd" in reasons[L3]
    climbing = layer([file(f"../x{i}", b"") for i in range(30)])
    result = walk((L1, climbing), limits=Limits(max_skipped=5))
    assert (len(result.skipped), result.skipped_total) == (5, 30)
    many = layer([file(f"f{i}", b"") for i in range(50)])
    result = walk((L1, many), limits=Limits(max_entries=10))
    assert "more than 10 entries" in result.unreadable_formats()[0].reason
    truncated = gzip.compress(layer([file("var/lib/dpkg/status", status(*PACKAGES))], compress=False)[:1500])
    result = walk((L1, truncated))
    assert result.unreadable_formats()[0].reason == "archive ends inside an entry"
    whole = layer([file("var/lib/dpkg/status", status(*PACKAGES))])
    result = walk((L1, whole[: len(whole) // 2]))  # the gzip stream ends inside the status file
    assert [u.format for u in result.unreadable_formats()] == ["layer"]
    assert result.unreadable_formats()[0].reason.startswith("corrupt compressed stream")
