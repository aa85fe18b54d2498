"""From a detector's finding to a `Package`: the OSV ecosystem, the distribution, the package URL."""

from __future__ import annotations

import re

from packageurl import PackageURL

from dockyard.scanning.interfaces import Finding
from dockyard.scanning.models import Package

LANGUAGE_ECOSYSTEMS = {"pypi": "PyPI", "npm": "npm", "golang": "Go", "maven": "Maven"}
# os-release ID -> OSV ecosystem, for the distribution package formats.
DEB_ECOSYSTEMS = {"debian": "Debian", "ubuntu": "Ubuntu"}
APK_ECOSYSTEMS = {"alpine": "Alpine", "wolfi": "Wolfi", "chainguard": "Chainguard"}
RPM_ECOSYSTEMS = {
    "rhel": "Red Hat",
    "centos": "Red Hat",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "opensuse-leap": "openSUSE",
    "opensuse-tumbleweed": "openSUSE",
    "sles": "SUSE",
    "azurelinux": "Azure Linux",
    "mariner": "Mariner",
}
# os-release ID -> purl namespace where the purl spec's examples differ from the ID.
PURL_NAMESPACES = {"rhel": "redhat", "opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse"}
_DEFAULT_DISTRO = {"deb": "debian", "apk": "alpine", "rpm": "rpm"}


def distro_of(os_release: dict[str, str]) -> str | None:
    """`debian-12`, `alpine-3.19.1`, `ubuntu-22.04` (ID-VERSION_ID), the purl `distro` qualifier."""
    ident = os_release.get("ID", "").strip().lower()
    if not ident:
        return None
    version = os_release.get("VERSION_ID") or os_release.get("VERSION_CODENAME") or ""
    return f"{ident}-{version}" if version else ident


def ecosystem_of(kind: str, os_release: dict[str, str]) -> str:
    ident = os_release.get("ID", "").strip().lower()
    if kind == "deb":
        return DEB_ECOSYSTEMS.get(ident, "Debian")
    if kind == "apk":
        return APK_ECOSYSTEMS.get(ident, "Alpine")
    if kind == "rpm":
        return RPM_ECOSYSTEMS.get(ident, ident.capitalize() if ident else "RPM")
    return LANGUAGE_ECOSYSTEMS[kind]


def pypi_name(name: str) -> str:
    """PEP 503's normal form, which the purl spec asks for."""
    return re.sub(r"[-_.]+", "-", name).lower()


def to_package(
    finding: Finding, layer: str, path: str, distro: str | None, os_release: dict[str, str]
) -> Package:
    kind = finding.kind
    qualifiers = dict(finding.qualifiers)
    namespace: str | None = None
    name = finding.name
    package_distro = None
    if kind in ("deb", "apk", "rpm"):
        ident = os_release.get("ID", "").strip().lower() or _DEFAULT_DISTRO[kind]
        namespace = PURL_NAMESPACES.get(ident, ident)
        if finding.arch:
            qualifiers["arch"] = finding.arch
        if distro:
            qualifiers["distro"] = distro
            package_distro = distro
    elif kind == "pypi":
        name = pypi_name(name)
    elif kind in ("npm", "golang"):
        namespace, _, name = name.rpartition("/")
        namespace = namespace or None
    elif kind == "maven":
        group, _, artifact = name.rpartition(":")
        namespace, name = group or None, artifact
    purl = PackageURL(kind, namespace, name, finding.version, qualifiers or None).to_string()
    where = f"{path}!/{finding.subpath}" if finding.subpath else path
    return Package(
        finding.name,
        finding.version,
        ecosystem_of(kind, os_release),
        purl,
        layer,
        where,
        finding.source_name,
        finding.arch,
        package_distro,
    )
