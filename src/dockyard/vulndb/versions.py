"""Version ordering per ecosystem, and package-name normalisation, for OSV matching.

The orderings come from `univers` (aboutcode's library of version schemes: dpkg, apk, rpm, PEP 440 via
`packaging`, semver, Maven, ...), imported on first use: the server imports none of it until a match
or an import needs a comparison.

An OSV ecosystem string may carry a suffix: "Debian:12", "Alpine:v3.20", "Maven:https://maven.google.com".
The part before the first colon picks the ordering; the whole string (lower-cased) is what is stored and
looked up, so a Debian 12 package only meets Debian 12's advisories (and those for plain "Debian").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

# OSV ecosystem (the part before ":") -> the name of univers' version class.
_SCHEMES: dict[str, str] = {
    "pypi": "PypiVersion",
    "npm": "SemverVersion",
    "go": "SemverVersion",
    "crates.io": "SemverVersion",
    "hex": "SemverVersion",
    "pub": "SemverVersion",
    "maven": "MavenVersion",
    "debian": "DebianVersion",
    "ubuntu": "DebianVersion",
    "alpine": "AlpineLinuxVersion",
    "wolfi": "AlpineLinuxVersion",
    "chainguard": "AlpineLinuxVersion",
    "red hat": "RpmVersion",
    "rocky linux": "RpmVersion",
    "almalinux": "RpmVersion",
    "opensuse": "RpmVersion",
    "suse": "RpmVersion",
    "photon os": "RpmVersion",
    "mageia": "RpmVersion",
    "openeuler": "RpmVersion",
    "rubygems": "RubygemsVersion",
    "nuget": "NugetVersion",
    "packagist": "ComposerVersion",
}
SEMVER = "SemverVersion"  # what a range of type SEMVER uses, whatever the ecosystem

_PEP503 = re.compile(r"[-_.]+")


class UnorderedVersion(ValueError):
    """A version string its scheme cannot parse."""


def ecosystem_key(ecosystem: str) -> str:
    """The stored, looked-up form of an ecosystem string: stripped and lower-cased."""
    return ecosystem.strip().lower()


def ecosystem_base(ecosystem: str) -> str:
    """ "Debian:12" -> "debian"; "Maven:https://..." -> "maven"."""
    return ecosystem_key(ecosystem).split(":", 1)[0]


def scheme_for(ecosystem: str) -> str | None:
    """The version scheme of an ecosystem, or None if dockyard cannot order its versions."""
    return _SCHEMES.get(ecosystem_base(ecosystem))


def normalize_name(ecosystem: str, name: str) -> str:
    """The stored, looked-up form of a package name in its ecosystem.

    PyPI names by PEP 503 ("Jinja2" and "jinja_2" are different; "PyYAML" and "pyyaml" are one);
    npm, the distributions' packages and Maven coordinates lower-cased (all are case-insensitive in
    practice); Go module paths as they are (they are case-sensitive)."""
    base = ecosystem_base(ecosystem)
    name = name.strip()
    if base == "pypi":
        return _PEP503.sub("-", name).lower()
    if base == "go":
        return name
    return name.lower()


def _strip(scheme: str, ecosystem: str, version: str) -> str:
    version = version.strip()
    if scheme == SEMVER and ecosystem_base(ecosystem) == "go":
        # Go reports "v1.2.3" and the toolchain as "go1.21.3"; OSV stores both without the prefix.
        if version.startswith("go"):
            version = version[2:]
        if version.startswith("v"):
            version = version[1:]
    return version


@lru_cache(maxsize=64)
def _factory(scheme: str) -> Callable[[str], Any]:
    from univers import versions  # ~0.1 s to import: only when a comparison is needed

    cls = getattr(versions, scheme)
    invalid = versions.InvalidVersion

    def parse(text: str) -> Any:
        try:
            return cls(text)
        except (invalid, ValueError, TypeError) as exc:
            raise UnorderedVersion(f"{text!r} is not a valid {scheme[: -len('Version')]} version") from exc

    return parse


@lru_cache(maxsize=65536)
def parse_version(scheme: str, ecosystem: str, version: str) -> Any:
    """An orderable object for `version` under `scheme` (univers' class name). Raises UnorderedVersion."""
    text = _strip(scheme, ecosystem, version)
    if not text:
        raise UnorderedVersion("empty version")
    return _factory(scheme)(text)
