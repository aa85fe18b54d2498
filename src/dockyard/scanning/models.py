"""The records an inventory is made of. Plain values (no tables): the vulnerability matcher consumes
`Package`, the SBOM writers turn an `ImageInventory` into CycloneDX or SPDX.

Ecosystems use OSV's names (https://ossf.github.io/osv-schema/#affectedpackage-field): "Debian",
"Ubuntu", "Alpine", "Red Hat", "PyPI", "npm", "Go", "Maven"; an OSV advisory's `affected[].package`
names (ecosystem, name) the way `Package` does, and distribution advisories are keyed by the *source*
package, which `source_name` carries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Package:
    name: str  # as the ecosystem spells it: dpkg/apk/rpm name, PyPI project, npm name, Go module, g:a
    version: str  # as installed: dpkg "1:2.36-9+deb12u4", apk "3.1.4-r5", rpm "[E:]V-R", PEP 440, semver
    ecosystem: str  # OSV ecosystem name
    purl: str  # package URL (https://github.com/package-url/purl-spec)
    layer: str  # digest of the layer that added it (the first layer in which it appears as installed)
    path: str  # the file it was read from, relative to the image root ("var/lib/dpkg/status")
    source_name: str | None = None  # source package: dpkg Source, apk origin, rpm source rpm name
    arch: str | None = None
    distro: str | None = None  # "debian-12", from etc/os-release (distribution packages only)

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def osv(self) -> OsvPackage:
        """The package as an OSV advisory names it: a distribution package by its *source* package,
        in the release's ecosystem ("Debian:12", "Ubuntu:22.04", "Alpine:v3.19"); others as they are."""
        release = self.distro.rsplit("-", 1)[1] if self.distro and "-" in self.distro else ""
        if self.ecosystem in ("Debian", "Ubuntu", "Alpine", "Rocky Linux", "AlmaLinux") and release:
            if self.ecosystem == "Debian":
                release = release.split(".", 1)[0]  # VERSION_ID is "12"; point releases share advisories
            elif self.ecosystem == "Alpine":
                release = "v" + ".".join(release.split(".")[:2])  # "3.19.1" -> "v3.19"
            elif self.ecosystem in ("Rocky Linux", "AlmaLinux"):
                release = release.split(".", 1)[0]
            return OsvPackage(f"{self.ecosystem}:{release}", self.source_name or self.name, self.version)
        if self.ecosystem in ("Debian", "Ubuntu", "Alpine"):
            return OsvPackage(self.ecosystem, self.source_name or self.name, self.version)
        return OsvPackage(self.ecosystem, self.name, self.version)


@dataclass(frozen=True, slots=True)
class OsvPackage:
    """What an OSV query names (`vulndb`'s PackageLike): ecosystem, name, version."""

    ecosystem: str
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A package format that is there but that the scanner could not read: never "no packages"."""

    format: str  # "rpm-bdb", "go-buildinfo", "layer", ...
    path: str  # the file (or, for a whole layer, "")
    layer: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file (or the rest of a layer) the walker did not read, and why: size caps, unsafe names."""

    path: str
    layer: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ImageInventory:
    """One image manifest's packages: for an index, one of these per platform."""

    manifest: str  # the image manifest's digest
    platform: str  # "linux/amd64", from the image config
    distro: str | None = None  # "debian-12"
    packages: list[Package] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    skipped_total: int = 0  # `skipped` lists at most Limits.max_skipped of them
    layers: list[str] = field(default_factory=list)
    bytes_read: int = 0  # uncompressed layer bytes walked
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "platform": self.platform,
            "distro": self.distro,
            "layers": list(self.layers),
            "packages": [p.to_json() for p in self.packages],
            "unreadable": [u.to_json() for u in self.unreadable],
            "skipped": [s.to_json() for s in self.skipped],
            "skipped_total": self.skipped_total,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class InventoryReport:
    """What `inventory(repository, digest)` answers: the manifest asked for, and an image per platform."""

    repository: str
    digest: str
    media_type: str
    images: list[ImageInventory] = field(default_factory=list)
    # Index entries that are not images (attestations, artifacts), by digest, with why.
    not_images: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "media_type": self.media_type,
            "images": [image.to_json() for image in self.images],
            "not_images": dict(self.not_images),
        }
