"""What an installed package is called in OSV: the release-qualified ecosystem and the source package.

An inventory (dockyard.scanning) names a Debian package's ecosystem "Debian" and its distribution
"debian-12" (os-release ID-VERSION_ID) apart; OSV's distribution advisories are per release ("Debian:12",
"Alpine:v3.19", "Ubuntu:22.04:LTS", "Rocky Linux:9") and per *source* package (openssl, not libssl3).
`osv_query` makes the one from the other for any object with `ecosystem`, `name` and `version`, and, if it
has them, `distro` and `source_name`; objects without them are taken as they are.
"""

from __future__ import annotations

import re
from typing import Any

from dockyard.vulndb.interfaces import Package
from dockyard.vulndb.versions import ecosystem_base

DISTRIBUTIONS = frozenset(
    {
        "debian",
        "ubuntu",
        "alpine",
        "wolfi",
        "chainguard",
        "red hat",
        "rocky linux",
        "almalinux",
        "opensuse",
        "suse",
        "azure linux",
        "mariner",
    }
)
_NUMBER = re.compile(r"^(\d+)(?:\.(\d+))?")


def release_ecosystem(ecosystem: str, distro: str | None) -> str:
    """ "Debian" + "debian-12" -> "Debian:12"; "Alpine" + "alpine-3.19.1" -> "Alpine:v3.19"; an ecosystem
    that already names a release, or a distribution without a known release scheme, as it is."""
    if ":" in ecosystem or not distro or "-" not in distro:
        return ecosystem
    release = distro.split("-", 1)[1]
    number = _NUMBER.match(release)
    base = ecosystem_base(ecosystem)
    if number is None:
        return f"{ecosystem}:{release}" if base == "debian" else ecosystem  # "Debian:sid"
    major, minor = number.group(1), number.group(2)
    if base == "debian":
        return f"{ecosystem}:{major}"
    if base == "alpine" and minor is not None:
        return f"{ecosystem}:v{major}.{minor}"
    if base == "ubuntu" and minor is not None:
        lts = minor == "04" and int(major) % 2 == 0
        return f"{ecosystem}:{major}.{minor}{':LTS' if lts else ''}"
    if base in ("rocky linux", "almalinux"):
        return f"{ecosystem}:{major}"
    return ecosystem


def osv_query(package: Any) -> Package:
    """The (ecosystem, name, version) to look `package` up by."""
    ecosystem = str(package.ecosystem)
    name = str(package.name)
    if ecosystem_base(ecosystem) in DISTRIBUTIONS:
        ecosystem = release_ecosystem(ecosystem, getattr(package, "distro", None))
        name = getattr(package, "source_name", None) or name
    return Package(ecosystem, name, str(package.version))
