"""The files of one layer, read from its stored blob in one streaming pass (the scanner's TarStream:
nothing unpacked, nothing held but the current header), for the layer browser of the management API.

A layer is attacker content. Names are shown as the runtime would unpack them (`normalise`: absolute
names count from the root; a name climbing out with `../` is reported as skipped, never listed), bytes
that are not UTF-8 are shown as `\\xNN`, links are listed with their targets and never followed (there is
no disk to follow them on), and every request is bounded: decompressed bytes (a gzip bomb stops at
`Limits.max_layer_bytes`), entries, header sizes and time.
"""

from __future__ import annotations

import hashlib
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard.scanning.interfaces import (
    FileNotInLayer,
    LayerReadLimit,
    LayerUnreadable,
    Limits,
    TarInvalid,
    WalkAborted,
)
from dockyard.scanning.tarstream import DIR, FILE, HARDLINK, OTHER, SYMLINK, Budget, Counted, TarStream
from dockyard.scanning.tarstream import decompressed as _decompressed
from dockyard.scanning.walker import OPAQUE, WHITEOUT, normalise

MAX_SKIPPED_LISTED = 100
MAX_HARDLINK_HOPS = 8  # a hard link to a hard link...: a tar writer never chains them; a crafted one may
_TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, HARDLINK: stat.S_IFREG}


@dataclass(slots=True)
class FileEntry:
    """One entry of a layer (or of the merged image, with the layer it comes from)."""

    path: str  # below the root, no leading slash ("" never: the root itself is not listed)
    type: str  # file, dir, symlink, hardlink, other
    size: int
    mode: int  # permission bits (and setuid/setgid/sticky)
    uid: int
    gid: int
    mtime: int
    link: str  # a symlink's or hard link's target, as written in the archive
    whiteout: bool = False  # `.wh.NAME`: deletes NAME of lower layers
    opaque: bool = False  # `.wh..wh..opq`: hides what lower layers have in this directory
    digest: str | None = None  # sha256 of a regular file's content (listings that read it)
    layer: str | None = None  # the merged tree: the layer the entry comes from
    implied: bool = False  # a directory only named by its contents' paths (no entry of its own)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.path)

    def as_json(self) -> dict[str, Any]:
        bits = _TYPE_BITS.get(self.type, 0)
        return {
            "path": "/" + self.path,
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "mode": f"{self.mode & 0o7777:04o}",
            "mode_string": stat.filemode(bits | (self.mode & 0o7777))
            if bits
            else "?" + stat.filemode(self.mode & 0o7777)[1:],
            "uid": self.uid,
            "gid": self.gid,
            "mtime": self.mtime,
            "link": self.link or None,
            "whiteout": self.whiteout,
            "opaque": self.opaque,
            "digest": self.digest,
            "layer": self.layer,
            "implied": self.implied,
        }


@dataclass(slots=True)
class LayerListing:
    """What a pass over a layer saw besides its entries: for the listing's last line."""

    entries: int = 0
    bytes_read: int = 0
    compression: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_total: int = 0

    def skip(self, name: str, reason: str) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append({"name": shown(name), "reason": reason})

    def as_json(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "bytes_read": self.bytes_read,
            "compression": self.compression,
            "skipped": self.skipped,
            "skipped_total": self.skipped_total,
        }


def shown(name: str) -> str:
    """A name as text anyone can print: bytes that are not UTF-8 as `\\xNN`, NUL and controls escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


def clean_path(path: str) -> str:
    """A requested path as listings show it, without the leading slash; InvalidPath when it climbs out."""
    normal = normalise(path) if path.strip("/") else ""
    if normal is None:
        raise FileNotInLayer(f"{shown(path)} is outside the image root")
    return normal


class LayerReader:
    """Reads one layer blob: `entries()` lists it, `open_file()` finds one file and streams it."""

    def __init__(self, blob: BinaryIO, limits: Limits, budget: Budget | None = None) -> None:
        self.blob = blob
        self._limits = limits
        self.budget = budget or Budget(limits)
        self.listing = LayerListing()

    def _tar(self) -> TarStream:
        try:
            stream, self.listing.compression = _decompressed(self.blob)
        except TarInvalid:
            raise LayerUnreadable(
                "the layer is zstd-compressed: only gzip and uncompressed layers can be browsed"
            ) from None
        except (OSError, EOFError) as exc:
            raise LayerUnreadable(f"the layer cannot be read: {exc}") from None
        return TarStream(Counted(stream, self.budget), self._limits)  # type: ignore[arg-type]

    def entries(self, digests: bool = False) -> Iterator[FileEntry]:
        """Every entry, in archive order, with names normalised; raises LayerUnreadable (not a tar,
        corrupt) or LayerReadLimit (a bound) where the archive goes wrong: maybe after some entries."""
        tar = self._tar()
        try:
            for raw in tar.entries():
                self.listing.bytes_read = self.budget.layer_bytes
                path = normalise(raw.name)
                if path is None:
                    self.listing.skip(raw.name, "climbs out of the image root (../): a runtime refuses it")
                    continue
                if path == "":
                    continue  # "./": the root itself
                base = posixpath.basename(path)
                digest = None
                if digests and raw.kind == FILE and not raw.sparse:
                    sha = hashlib.sha256()
                    for chunk in tar.chunks():
                        sha.update(chunk)
                    digest = "sha256:" + sha.hexdigest()
                self.listing.entries += 1
                yield FileEntry(
                    shown(path),
                    OTHER if raw.sparse else raw.kind,
                    raw.size,
                    raw.mode,
                    raw.uid,
                    raw.gid,
                    raw.mtime,
                    shown(raw.linkname) if raw.kind in (SYMLINK, HARDLINK) else "",
                    whiteout=base.startswith(WHITEOUT) and base != OPAQUE,
                    opaque=base == OPAQUE,
                    digest=digest,
                )
            self.listing.bytes_read = self.budget.layer_bytes
        except TarInvalid as exc:
            raise LayerUnreadable(f"the layer is not a readable tar archive: {exc}") from None
        except WalkAborted as exc:
            raise LayerReadLimit(f"the layer's listing stopped: {exc}") from None

    def find(self, path: str) -> tuple[FileEntry, TarStream]:
        """The entry at `path` (a hard link as itself), with the stream positioned on its content."""
        tar = self._tar()
        try:
            for raw in tar.entries():
                normal = normalise(raw.name)
                if normal is not None and shown(normal) == path:
                    entry = FileEntry(
                        path,
                        OTHER if raw.sparse else raw.kind,
                        raw.size,
                        raw.mode,
                        raw.uid,
                        raw.gid,
                        raw.mtime,
                        raw.linkname,
                    )
                    return entry, tar
        except TarInvalid as exc:
            raise LayerUnreadable(f"the layer is not a readable tar archive: {exc}") from None
        except WalkAborted as exc:
            raise LayerReadLimit(f"the layer was read up to its limit: {exc}") from None
        raise FileNotInLayer(f"no /{path} in this layer")

    def content(self, tar: TarStream) -> Iterator[bytes]:
        try:
            yield from tar.chunks()
        except TarInvalid as exc:
            raise LayerUnreadable(f"the layer is not a readable tar archive: {exc}") from None
        except WalkAborted as exc:
            raise LayerReadLimit(f"the layer was read up to its limit: {exc}") from None


def children(entries: Iterator[FileEntry], directory: str, recursive: bool) -> Iterator[FileEntry]:
    """The entries below `directory` ("" for the root): direct children, or all with `recursive`. A
    directory that only appears in its contents' names is given once, as `implied`."""
    prefix = directory + "/" if directory else ""
    seen_dirs: set[str] = set()
    for entry in entries:
        if not entry.path.startswith(prefix) or entry.path == directory:
            continue
        rest = entry.path[len(prefix) :]
        if recursive or "/" not in rest:
            if entry.type == DIR:
                if entry.path in seen_dirs:
                    continue
                seen_dirs.add(entry.path)
            yield entry
            continue
        child = prefix + rest.split("/", 1)[0]
        if child not in seen_dirs:
            seen_dirs.add(child)
            yield FileEntry(child, DIR, 0, 0o755, 0, 0, 0, "", implied=True)


def readable_target(entry: FileEntry) -> str | None:
    """A hard link's target, as a path listings show; None when it climbs out of the root."""
    target = normalise(entry.link)
    return None if target is None else shown(target)


def check_downloadable(entry: FileEntry) -> None:
    if entry.type == FILE:
        return
    if entry.type == SYMLINK:
        raise FileNotInLayer(
            f"/{entry.path} is a symbolic link to {shown(entry.link)}: links are not followed; "
            "ask for its target's path"
        )
    raise FileNotInLayer(f"/{entry.path} is a {entry.type}, not a regular file")


__all__ = ["MAX_HARDLINK_HOPS", "FileEntry", "LayerListing", "LayerReader", "children", "clean_path"]
