"""Whether a version is affected, by the OSV schema's evaluation algorithm (`IsVulnerable`).

For one `affected[]` entry of an advisory: the version is affected if it is in the explicit `versions`
list or inside any of the `ranges`. A range is evaluated as the schema's pseudocode says:

- its `limit` events first: with none, an implicit `"*"` (infinity); else the version must be below
  at least one of them;
- then its events in version order (`introduced: "0"` sorts before everything): `introduced` at or
  below the version makes it vulnerable, `fixed` at or below it makes it not vulnerable, and a
  `last_affected` strictly below it makes it not vulnerable.

Range types: `SEMVER` ranges are ordered by SemVer 2.0 (a Go version's "v" prefix dropped), `ECOSYSTEM`
ranges by the ecosystem's own rules (versions.py). `GIT` ranges are skipped: they need the project's
commit graph, which an installed package does not name; the explicit `versions` list (which the schema
requires beside GIT ranges, and which osv.dev fills in) still matches. A range whose ecosystem has no
known ordering, or one of whose versions does not parse, is skipped too, and so counted in `skipped`.

safety-db's advisories (not OSV, safetydb.py) keep their PEP 440 specifier sets as a range of type
`PEP440_SPECIFIERS`, evaluated with `packaging`'s SpecifierSet (pre-releases included).

Comparisons use `<` only (`a >= b` is `not a < b`, equality is neither `<`): some of univers' classes
define `<` by their scheme but `<=`/`>=`/`==` by the version string (AlpineLinuxVersion: "3.1.4_rc1-r0"
is both `<` and `>=` "3.1.4-r0"), tests/unit/vulndb/test_ranges.py holds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.vulndb.versions import SEMVER, UnorderedVersion, parse_version, scheme_for

PEP440_SPECIFIERS = "PEP440_SPECIFIERS"  # dockyard's own range type, for safety-db (safetydb.py)


@dataclass
class Verdict:
    affected: bool = False
    fixed: list[str] = field(default_factory=list)  # fixed events above the installed version
    skipped: int = 0  # ranges that could not be evaluated (GIT, unknown ordering, unparsable versions)


def evaluate(
    ecosystem: str, version: str, ranges: Sequence[Mapping[str, Any]], versions: Sequence[str]
) -> Verdict:
    """The verdict for `version` of a package of `ecosystem` against one `affected[]` entry."""
    verdict = Verdict()
    if version in versions or _listed(ecosystem, version, versions):
        verdict.affected = True
    for item in ranges:
        kind = str(item.get("type", "")).upper()
        if kind == PEP440_SPECIFIERS:
            inside, fixed = _in_specifiers(version, item.get("specs") or [])
            if inside:
                verdict.affected = True
                verdict.fixed.extend(f for f in fixed if f not in verdict.fixed)
            continue
        scheme = SEMVER if kind == "SEMVER" else scheme_for(ecosystem) if kind == "ECOSYSTEM" else None
        if scheme is None:
            verdict.skipped += 1
            continue
        try:
            inside, fixed = _in_range(scheme, ecosystem, version, item.get("events") or [])
        except UnorderedVersion:
            verdict.skipped += 1
            continue
        if inside:
            verdict.affected = True
            verdict.fixed.extend(f for f in fixed if f not in verdict.fixed)
    return verdict


def _in_specifiers(version: str, specs: Sequence[str]) -> tuple[bool, list[str]]:
    """safety-db's ranges (safetydb.py): affected if any PEP 440 specifier set contains the version."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    from dockyard.vulndb.safetydb import fixed_bound

    try:
        parsed = Version(version)
    except InvalidVersion:
        return False, []
    for spec in specs:
        try:
            if SpecifierSet(spec).contains(parsed, prereleases=True):
                bound = fixed_bound(spec)
                return True, [bound] if bound else []
        except InvalidSpecifier:
            continue
    return False, []


def _listed(ecosystem: str, version: str, versions: Sequence[str]) -> bool:
    """Equal under the ecosystem's ordering ("1.0" is "1.0.0" in PEP 440), when it has one."""
    scheme = scheme_for(ecosystem)
    if scheme is None or not versions:
        return False
    try:
        installed = parse_version(scheme, ecosystem, version)
    except UnorderedVersion:
        return False
    for listed in versions:
        try:
            other = parse_version(scheme, ecosystem, listed)
            if not other < installed and not installed < other:
                return True
        except UnorderedVersion:
            continue
    return False


def _in_range(
    scheme: str, ecosystem: str, version: str, events: Sequence[Mapping[str, Any]]
) -> tuple[bool, list[str]]:
    """(affected, the fixed versions above `version`); raises UnorderedVersion if anything won't parse."""
    v = parse_version(scheme, ecosystem, version)
    limits = [str(e["limit"]) for e in events if "limit" in e]
    if limits and not any("*" in lim or v < parse_version(scheme, ecosystem, lim) for lim in limits):
        return False, []
    zero: list[tuple[str, str]] = []
    ordered: list[tuple[Any, str, str]] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                value = str(event[kind])
                if kind == "introduced" and value == "0":
                    zero.append((kind, value))
                else:
                    ordered.append((parse_version(scheme, ecosystem, value), kind, value))
                break
    ordered.sort(key=lambda item: item[0])  # stable: equal versions keep the record's order
    vulnerable = bool(zero)
    fixed_above: list[str] = []
    for parsed, kind, value in ordered:
        if kind == "introduced" and not v < parsed:  # only `<`: see the note at the top
            vulnerable = True
        elif (kind == "fixed" and not v < parsed) or (kind == "last_affected" and parsed < v):
            vulnerable = False
        elif kind == "fixed":
            fixed_above.append(value)
    if not vulnerable:
        return False, []
    return True, fixed_above[:1]  # the first fix after the version is the one to upgrade to
