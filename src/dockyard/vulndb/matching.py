"""From the affected rows of the packages' names to findings: ranges evaluated, duplicates merged.

Databases describe one vulnerability under several ids (PYSEC-2021-66 and GHSA-g3rq-g295-4j3m are one
flaw in Jinja2, linked by `aliases`): per package, findings whose ids or aliases overlap are merged into
one, named by its most severe member (ties: the smallest id), with every other id among its aliases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dockyard.vulndb.distros import osv_query
from dockyard.vulndb.interfaces import Finding, PackageLike
from dockyard.vulndb.osv import LEVELS
from dockyard.vulndb.ranges import evaluate
from dockyard.vulndb.versions import ecosystem_base, ecosystem_key, normalize_name


def match_rows(packages: Sequence[PackageLike], rows: Sequence[Any]) -> list[Finding]:
    by_name: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_name.setdefault((row.ecosystem, row.package), []).append(row)
    findings: list[Finding] = []
    for original in packages:
        pkg = osv_query(original)
        name = normalize_name(pkg.ecosystem, pkg.name)
        key, base = ecosystem_key(pkg.ecosystem), ecosystem_base(pkg.ecosystem)
        candidates = by_name.get((key, name), []) + (by_name.get((base, name), []) if base != key else [])
        found: dict[str, Finding] = {}
        for row in candidates:
            verdict = evaluate(pkg.ecosystem, pkg.version, row.ranges or [], row.versions or [])
            if not verdict.affected:
                continue
            known = found.get(row.id)
            if known is not None:  # a second affected[] entry of the same advisory
                known.fixed_versions.extend(f for f in verdict.fixed if f not in known.fixed_versions)
                continue
            level = row.level if row.level != "unknown" or not row.severity else row.severity
            found[row.id] = Finding(
                advisory_id=row.id,
                aliases=list(row.aliases or []),
                summary=row.summary,
                severity=level,
                cvss_score=row.cvss_score,
                cvss_vector=row.cvss_vector,
                ecosystem=pkg.ecosystem,
                name=original.name,
                installed_version=pkg.version,
                fixed_versions=list(verdict.fixed),
                package=original,
            )
        findings.extend(_merge(list(found.values())))
    findings.sort(key=lambda f: (LEVELS.index(f.severity), f.name, f.advisory_id))
    return findings


def _merge(findings: list[Finding]) -> list[Finding]:
    groups: list[list[Finding]] = []
    for finding in sorted(findings, key=lambda f: f.advisory_id):
        ids = finding.ids()
        joined = [g for g in groups if any(ids & member.ids() for member in g)]
        merged = [finding]
        for group in joined:
            merged.extend(group)
            groups.remove(group)
        groups.append(merged)
    out = []
    for group in groups:
        group.sort(key=lambda f: (LEVELS.index(f.severity), f.cvss_score is None, f.advisory_id))
        head = group[0]
        for other in group[1:]:
            for alias in [other.advisory_id, *other.aliases]:
                if alias != head.advisory_id and alias not in head.aliases:
                    head.aliases.append(alias)
            head.fixed_versions.extend(v for v in other.fixed_versions if v not in head.fixed_versions)
        out.append(head)
    return out
