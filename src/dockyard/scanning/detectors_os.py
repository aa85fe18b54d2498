"""Distribution package databases: dpkg, apk, the RPM sqlite database; and etc/os-release."""

from __future__ import annotations

import re
import shlex
import sqlite3
import struct
from collections.abc import Iterator

from dockyard.scanning.interfaces import Detected, Finding, Limits

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = re.compile(r"var/lib/dpkg/status\.d/[^/]+")
APK_INSTALLED = "lib/apk/db/installed"
RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_BDB = ("var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages")
RPM_NDB = ("var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db")
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """RFC 822-like paragraphs (dpkg's format): `Field: value`, continuation lines start with a space."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0] in " \t":
            if last:
                fields[last] += "\n" + line.strip()
        else:
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip()
                fields[last] = value.strip()
    if fields:
        yield fields


class Dpkg:
    name = "dpkg"
    head_only = False

    def wants(self, path: str) -> bool:
        return path == DPKG_STATUS or (
            path.startswith("var/lib/dpkg/status.d/") and bool(DPKG_STATUS_D.fullmatch(path))
        )

    def max_bytes(self, limits: Limits) -> int:
        return limits.max_file_bytes

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        if path.endswith(".md5sums"):  # distroless keeps checksums beside the stanzas
            return found
        for stanza in _stanzas(data.decode("utf-8", "replace")):
            name, version = stanza.get("Package"), stanza.get("Version")
            if not name or not version:
                continue
            status = stanza.get("Status")  # status.d entries (distroless) have none: installed
            if status is not None and status.split()[-1:] != ["installed"]:
                continue
            source = stanza.get("Source", "").split(" ", 1)[0] or None
            found.findings.append(Finding(name, version, "deb", source, stanza.get("Architecture")))
        return found


class Apk:
    name = "apk"
    head_only = False

    def wants(self, path: str) -> bool:
        return path == APK_INSTALLED

    def max_bytes(self, limits: Limits) -> int:
        return limits.max_file_bytes

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        for block in re.split(r"\n\s*\n", data.decode("utf-8", "replace")):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if len(line) > 2 and line[1] == ":" and line[0] not in fields:
                    fields[line[0]] = line[2:]
            if fields.get("P") and fields.get("V"):
                found.findings.append(
                    Finding(fields["P"], fields["V"], "apk", fields.get("o"), fields.get("A"))
                )
        return found


class Rpm:
    """The sqlite rpmdb (RHEL 9, Fedora 33+, Amazon Linux 2023, openSUSE): each row of `Packages` is an
    RPM header blob. The Berkeley DB (RHEL 7/8, CentOS) and NDB (SUSE) databases are recognised and
    reported as unreadable."""

    name = "rpm"
    head_only = False

    def wants(self, path: str) -> bool:
        return path in RPM_SQLITE or path in RPM_BDB or path in RPM_NDB

    def max_bytes(self, limits: Limits) -> int:
        return limits.max_file_bytes * 4  # rpmdb.sqlite holds every file list: larger than dpkg's status

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        if path in RPM_BDB:
            found.unreadable.append(("rpm-bdb", "RPM Berkeley DB database: not read by this scanner"))
            return found
        if path in RPM_NDB:
            found.unreadable.append(("rpm-ndb", "RPM NDB database: not read by this scanner"))
            return found
        try:
            rows = _sqlite_rows(data)
        except (sqlite3.Error, ValueError) as exc:
            found.unreadable.append(("rpm-sqlite", f"not a readable sqlite database: {exc}"))
            return found
        bad = 0
        for blob in rows:
            try:
                tags = rpm_header(blob)
            except ValueError:
                bad += 1
                continue
            name, version = tags.get(1000), tags.get(1001)
            if not isinstance(name, str) or not isinstance(version, str) or name == "gpg-pubkey":
                continue
            release, epoch = tags.get(1002), tags.get(1003)
            full = f"{version}-{release}" if isinstance(release, str) else version
            if isinstance(epoch, int) and epoch:
                full = f"{epoch}:{full}"
            arch = tags.get(1022)
            source = tags.get(1044)
            source_name = _srpm_name(source) if isinstance(source, str) else None
            qualifiers = {"epoch": str(epoch)} if isinstance(epoch, int) and epoch else {}
            found.findings.append(
                Finding(
                    name,
                    full,
                    "rpm",
                    source_name,
                    arch if isinstance(arch, str) else None,
                    qualifiers=qualifiers,
                )
            )
        if bad:
            found.unreadable.append(("rpm-header", f"{bad} package headers could not be parsed"))
        return found


def _sqlite_rows(data: bytes) -> list[bytes]:
    if len(data) < 512 or not data.startswith(b"SQLite format 3\0"):
        raise ValueError("no SQLite header")
    if len(data) >= 100 and data[:16] == b"SQLite format 3\0" and data[18:20] == b"\2\2":
        # A WAL-mode database (rpm's): an in-memory copy cannot have a WAL, so read it as a rollback-
        # journal one (bytes 18-19 are the file format versions: 2 = WAL, 1 = legacy). What sat in an
        # un-checkpointed -wal file is not seen; rpm checkpoints when a transaction ends.
        data = data[:18] + b"\1\1" + data[20:]
    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(data)
        return [bytes(row[0]) for row in db.execute("SELECT blob FROM Packages")]
    finally:
        db.close()


_RPM_STRING, _RPM_INT32, _RPM_STRING_ARRAY, _RPM_I18N = 6, 4, 8, 9
_WANTED_TAGS = frozenset({1000, 1001, 1002, 1003, 1022, 1044})


def rpm_header(blob: bytes) -> dict[int, str | int]:
    """The few tags the inventory uses from an RPM header blob (as rpmdb stores it: no lead, no magic):
    index count and data length, 16-byte index entries (tag, type, offset, count), then the data."""
    if len(blob) < 8:
        raise ValueError("short header")
    count, length = struct.unpack(">II", blob[:8])
    start = 8 + 16 * count
    if count > 100_000 or start + length > len(blob):
        raise ValueError("header sizes out of range")
    store = blob[start : start + length]
    tags: dict[int, str | int] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack(">IIII", blob[8 + 16 * i : 24 + 16 * i])
        if tag not in _WANTED_TAGS or offset >= len(store):
            continue
        if kind in (_RPM_STRING, _RPM_I18N, _RPM_STRING_ARRAY):
            end = store.find(b"\0", offset)
            tags[tag] = store[offset : end if end >= 0 else len(store)].decode("utf-8", "replace")
        elif kind == _RPM_INT32 and n >= 1 and offset + 4 <= len(store):
            tags[tag] = struct.unpack(">I", store[offset : offset + 4])[0]
    return tags


def _srpm_name(source_rpm: str) -> str:
    """`openssl-3.0.7-24.el9.src.rpm` -> `openssl`: drop .src.rpm, then release, then version."""
    base = source_rpm.removesuffix(".rpm").removesuffix(".src").removesuffix(".nosrc")
    return base.rsplit("-", 2)[0] if base.count("-") >= 2 else base


class OsRelease:
    name = "os-release"
    head_only = False

    def wants(self, path: str) -> bool:
        return path in OS_RELEASE

    def max_bytes(self, limits: Limits) -> int:
        return 64 * 1024

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        for line in data.decode("utf-8", "replace").splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or key.startswith("#"):
                continue
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value.strip("\"'")]
            found.facts[key] = words[0] if words else ""
        return found
