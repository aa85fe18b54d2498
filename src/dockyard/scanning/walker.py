"""Apply an image's layers in order, as a container runtime would, but only for the files the detectors
want: whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete what lower layers added, a later file replaces an
earlier one, and only the final state is reported. Nothing is unpacked; each layer is one pass over
its (decompressed) tar stream, with the bounds of `Limits`."""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO

from dockyard.scanning.detectors_lang import Java, Npm, Python
from dockyard.scanning.detectors_os import OS_RELEASE, Apk, Dpkg, OsRelease, Rpm
from dockyard.scanning.gobuildinfo import ELF_MAGIC, GoBuildInfoScanner
from dockyard.scanning.interfaces import Detected, Detector, Limits, TarInvalid, WalkAborted
from dockyard.scanning.models import Package, Skipped, Unreadable
from dockyard.scanning.purls import distro_of, to_package
from dockyard.scanning.tarstream import DIR, FILE, HARDLINK, SYMLINK, Budget, Counted, TarStream, decompressed

log = logging.getLogger("dockyard.scanning")
DETECTORS: tuple[Detector, ...] = (Dpkg(), Apk(), Rpm(), OsRelease(), Python(), Npm(), Java())
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(slots=True)
class FileState:
    """What a wanted file in the image's current state says, and which layer each package came from."""

    path: str
    layer: str
    detected: Detected
    finding_layers: list[str] = field(default_factory=list)


def normalise(name: str) -> str | None:
    """A tar entry's name as a path below the image root ("" for the root itself); None when it climbs
    out of it (`../`), which a runtime refuses to unpack. Absolute names count from the root, as
    runtimes unpack them."""
    path = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if path == ".." or path.startswith("../"):
        return None
    return "" if path == "." else path


class Walk:
    """One image: call `layer()` for each layer, bottom first; then `packages()` and the reports."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.budget = Budget(self.limits)
        self.state: dict[str, FileState] = {}
        self._dirs: Counter[str] = Counter()  # ancestors of the paths in state, to find what a delete hits
        self.unreadable: list[Unreadable] = []
        self.skipped: list[Skipped] = []
        self.skipped_total = 0
        self.aborted: str | None = None  # why the walk stopped early (time, image size)

    # --- reports ------------------------------------------------------------------------------
    def skip(self, path: str, layer: str, reason: str) -> None:
        self.skipped_total += 1
        if len(self.skipped) < self.limits.max_skipped:
            self.skipped.append(Skipped(path, layer, reason))

    @property
    def bytes_read(self) -> int:
        return self.budget.image_bytes

    # --- the state ------------------------------------------------------------------------------
    def _put(self, entry: FileState) -> None:
        old = self.state.get(entry.path)
        if old is None:
            for parent in _parents(entry.path):
                self._dirs[parent] += 1
        # A rewritten database (apt-get install rewrites all of var/lib/dpkg/status) keeps each package
        # that was already there in the layer that first added it.
        earlier = {}
        if old is not None:
            earlier = {
                (f.name, f.version, f.subpath): layer
                for f, layer in zip(old.detected.findings, old.finding_layers, strict=True)
            }
        entry.finding_layers = [
            earlier.get((f.name, f.version, f.subpath), entry.layer) for f in entry.detected.findings
        ]
        self.state[entry.path] = entry

    def _delete(self, path: str) -> None:
        if self.state.pop(path, None) is not None:
            for parent in _parents(path):
                self._dirs[parent] -= 1
                if not self._dirs[parent]:
                    del self._dirs[parent]

    def _delete_below(self, directory: str) -> None:
        if directory == "":
            for path in list(self.state):
                self._delete(path)
        elif directory in self._dirs:
            prefix = directory + "/"
            for path in [p for p in self.state if p.startswith(prefix)]:
                self._delete(path)

    # --- one layer --------------------------------------------------------------------------------
    def layer(self, digest: str, blob: BinaryIO) -> None:
        if self.aborted is not None:
            self.unreadable.append(Unreadable("layer", "", digest, f"not read: {self.aborted}"))
            return
        self.budget.start_layer()
        pending: dict[str, FileState] = {}
        try:
            stream, _compression = decompressed(blob)
            tar = TarStream(Counted(stream, self.budget), self.limits)  # type: ignore[arg-type]
            for entry in tar.entries():
                path = normalise(entry.name)
                if path is None:
                    self.skip(entry.name, digest, "path climbs out of the image root")
                    continue
                base = posixpath.basename(path)
                if base.startswith(WHITEOUT):
                    parent = posixpath.dirname(path)
                    if base == OPAQUE:
                        self._delete_below(parent)
                    else:
                        hidden = posixpath.join(parent, base[len(WHITEOUT) :])
                        self._delete(hidden)
                        self._delete_below(hidden)
                    continue
                if path == "":
                    continue
                if entry.kind == DIR:
                    self._delete(path)
                    pending.pop(path, None)
                    continue
                self._delete_below(path)  # a file or link where a directory was
                detected = self._entry(
                    tar,
                    entry.kind,
                    entry.size,
                    entry.mode,
                    entry.sparse,
                    entry.linkname,
                    path,
                    digest,
                    pending,
                )
                if detected is None:
                    self._delete(path)
                    pending.pop(path, None)
                else:
                    pending[path] = FileState(path, digest, detected)
        except TarInvalid as exc:
            self.unreadable.append(Unreadable("layer", "", digest, str(exc)))
        except WalkAborted as exc:
            self.unreadable.append(Unreadable("layer", "", digest, f"read stopped: {exc}"))
            if (
                self.budget.image_bytes > self.limits.max_image_bytes
                or time.monotonic() > self.budget.deadline
            ):
                self.aborted = str(exc)
        for path in sorted(pending):
            self._put(pending[path])

    def _entry(
        self,
        tar: TarStream,
        kind: str,
        size: int,
        mode: int,
        sparse: bool,
        linkname: str,
        path: str,
        digest: str,
        pending: dict[str, FileState],
    ) -> Detected | None:
        detector = next((d for d in DETECTORS if d.wants(path)), None)
        if detector is None:
            if kind == FILE and mode & 0o111 and size >= 64 and not sparse:
                return self._binary(tar, size, path, digest)
            return None
        if kind == HARDLINK:
            target = normalise(linkname)
            source = pending.get(target or "") or self.state.get(target or "")
            if source is None:
                self.skip(path, digest, f"hard link to {linkname}, which holds nothing read")
                return None
            return source.detected
        if kind == SYMLINK:
            # Never followed: a link's target is read where it is a file of the image. One that climbs
            # out of the root (which a runtime would clamp to it) is worth a line in the report.
            target = (
                linkname if linkname.startswith("/") else posixpath.join(posixpath.dirname(path), linkname)
            )
            if normalise(target) is None:
                self.skip(path, digest, f"symbolic link out of the image root ({linkname}), not followed")
            return None
        if kind != FILE or sparse:
            self.skip(path, digest, "not a regular file" if not sparse else "sparse file (not read)")
            return None
        cap = detector.max_bytes(self.limits)
        if size > cap and not detector.head_only:
            self.skip(path, digest, f"{size} bytes, over the {detector.name} cap of {cap}")
            return None
        data = tar.read_head(cap) if size > cap else tar.read(cap)
        assert data is not None
        try:
            found = detector.detect(path, data, self.limits)
        except Exception as exc:  # a file no detector foresaw must not cost the whole image's inventory
            log.warning("inventory: %s could not read %s in %s: %r", detector.name, path, digest, exc)
            found = Detected(unreadable=[(detector.name, f"could not be parsed ({type(exc).__name__})")])
        for inner, reason in found.skipped:
            self.skip(f"{path}!/{inner}", digest, reason)
        return found

    def _binary(self, tar: TarStream, size: int, path: str, digest: str) -> Detected | None:
        head = tar.read_head(4)
        if head != ELF_MAGIC:
            return None
        if size > self.limits.max_binary_bytes:
            self.skip(
                path, digest, f"executable of {size} bytes, over the cap of {self.limits.max_binary_bytes}"
            )
            return None
        scanner = GoBuildInfoScanner()
        scanner.feed(head)
        for chunk in tar.chunks():
            scanner.feed(chunk)
            if scanner.done:
                break
        return scanner.finish()

    # --- the result -----------------------------------------------------------------------------
    def distro(self) -> tuple[str | None, dict[str, str]]:
        for path in OS_RELEASE:
            entry = self.state.get(path)
            if entry is not None and entry.detected.facts:
                return distro_of(entry.detected.facts), entry.detected.facts
        return None, {}

    def packages(self) -> list[Package]:
        distro, os_release = self.distro()
        out = []
        for path in sorted(self.state):
            entry = self.state[path]
            for finding, layer in zip(entry.detected.findings, entry.finding_layers, strict=True):
                out.append(to_package(finding, layer, path, distro, os_release))
        return sorted(out, key=lambda p: (p.ecosystem, p.name, p.version, p.path))

    def unreadable_formats(self) -> list[Unreadable]:
        out = list(self.unreadable)
        for path in sorted(self.state):
            entry = self.state[path]
            out.extend(
                Unreadable(fmt, path, entry.layer, reason) for fmt, reason in entry.detected.unreadable
            )
        return out


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
