"""The inventory's contracts: the walker's limits, what a detector is, and the errors raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from dockyard.errors import Category, DockyardError

MIB = 1024 * 1024
GIB = 1024 * MIB


class NotAnImage(DockyardError):
    """The manifest is not a container image (an artifact: a Helm chart, a signature, an SBOM...)."""

    category = Category.INVALID
    message = "not a container image"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one image's walk: what is read into memory, how much is decompressed, for how long.
    A file or layer past a bound is reported as skipped (or unreadable), never silently dropped."""

    max_file_bytes: int = 32 * MIB  # a package database read into memory (dpkg status, rpmdb.sqlite)
    max_metadata_bytes: int = 1 * MIB  # a METADATA, package.json, pom.properties, apk entry
    max_archive_bytes: int = 64 * MIB  # a jar/war/ear held in memory to read its index
    max_nested_archive_bytes: int = 16 * MIB  # a jar inside a jar
    max_archive_depth: int = 2  # jar in jar in jar: no deeper
    max_archive_entries: int = 1000  # metadata entries read from one archive
    max_binary_bytes: int = 512 * MIB  # an executable scanned for Go build info
    max_header_bytes: int = 1 * MIB  # a pax or GNU long-name header
    max_layer_bytes: int = 16 * GIB  # uncompressed bytes of one layer
    max_image_bytes: int = 64 * GIB  # uncompressed bytes of all the layers of one image
    max_entries: int = 2_000_000  # tar entries in one layer
    max_seconds: float = 600.0  # the whole image
    max_skipped: int = 1000  # skipped entries listed (the count goes on)


class WalkAborted(Exception):
    """A bound was hit in the middle of a layer: the rest of it is not read."""


class TarInvalid(Exception):
    """The layer is not a tar archive the walker can read (bad header, truncated)."""


@dataclass(slots=True)
class Finding:
    """A package as a detector reads it, before the walker knows its layer, distribution and purl."""

    name: str
    version: str
    kind: str  # "deb", "apk", "rpm", "pypi", "npm", "golang", "maven"
    source_name: str | None = None
    arch: str | None = None
    namespace: str | None = None  # Maven group, npm scope, Go module path prefix
    qualifiers: dict[str, str] = field(default_factory=dict)
    subpath: str | None = None  # inside the file: a jar within a jar ("BOOT-INF/lib/x.jar")


@dataclass(slots=True)
class Detected:
    """What a detector found in one file: packages, a format it could not read, facts (os-release)."""

    findings: list[Finding] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (format, reason)
    facts: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path inside the file, reason)


class Detector(Protocol):
    """Reads one kind of package metadata file. `wants` decides by path alone (cheap: it runs for every
    file of every layer); `detect` gets the file's bytes, at most `max_bytes(limits)` of them."""

    name: str
    # True: the first max_bytes of a larger file will do (headers come first); False: larger is skipped.
    head_only: bool

    def wants(self, path: str) -> bool: ...

    def max_bytes(self, limits: Limits) -> int: ...

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected: ...


class PlatformUnknown(DockyardError):
    """An index was given where one image is needed, and no (or no matching) platform was chosen."""

    category = Category.INVALID
    message = "choose one of the index's platforms"


class LayerUnreadable(DockyardError):
    """A layer blob that cannot be browsed: not a tar archive, corrupt, or compressed with zstd."""

    category = Category.INVALID
    message = "the layer is not a readable tar archive"


class LayerReadLimit(DockyardError):
    """Reading a layer went past a bound (decompressed bytes, entries, time): a gzip bomb stops here."""

    category = Category.TOO_LARGE
    message = "the layer was read up to its limit"


class FileNotInLayer(DockyardError):
    """No such path in the layer (or the merged image), or one that cannot be downloaded (a link)."""

    category = Category.NOT_FOUND
    message = "no such file in the layer"


class LayerNotInImage(DockyardError):
    """The digest asked for is not one of the image manifest's layers."""

    category = Category.NOT_FOUND
    message = "the image has no such layer"
