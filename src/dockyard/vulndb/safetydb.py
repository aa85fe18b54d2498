"""PyUp's safety-db (`insecure_full.json` of the PyPI package `safety-db`): a published advisory set for
Python packages that is not OSV. Each entry becomes an advisory for one PyPI package:

- id `pyup.io-NNNNN` (safety's own), its CVE (if any) as alias, the advisory text as summary, the
  database's `$meta.timestamp` as `modified` (the file has no per-entry times), severity unknown;
- its `specs` (PEP 440 specifier sets such as `<1.0.4` and `>=1.1,<1.1.1`, any of which matching makes a
  version affected) kept as one range of dockyard's own type `PEP440_SPECIFIERS`, which ranges.py
  evaluates with `packaging`: `>1.0` has no exact OSV form, so no conversion is attempted.

The data is licensed CC BY-NC-SA 4.0 by PyUp (non-commercial use): dockyard ships none of it.
`insecure.json` (the short form, specs only) is refused with a pointer to `insecure_full.json`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from dockyard.vulndb.interfaces import NotOSV
from dockyard.vulndb.osv import MAX_ID, Advisory, Affected
from dockyard.vulndb.versions import normalize_name

RANGE_TYPE = "PEP440_SPECIFIERS"
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)


def is_safety_db(doc: Any) -> bool:
    meta = doc.get("$meta") if isinstance(doc, Mapping) else None
    return isinstance(meta, Mapping) and str(meta.get("advisory", "")).startswith("PyUp.io")


def advisories(doc: Mapping[str, Any], where: str) -> Iterator[Advisory]:
    stamp = doc["$meta"].get("timestamp")
    if not isinstance(stamp, int | float):
        raise NotOSV(f"{where}: safety-db file without a `$meta.timestamp`")
    modified = datetime.fromtimestamp(stamp, UTC)
    for package, entries in doc.items():
        if package == "$meta":
            continue
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise NotOSV(
                f"{where}: not safety-db's insecure_full.json (entries of {package!r} are not objects; "
                "insecure.json has specifiers only: import insecure_full.json)"
            )
        for entry in entries:
            yield _advisory(package, entry, modified, where)


def _advisory(package: str, entry: Mapping[str, Any], modified: datetime, where: str) -> Advisory:
    ident, specs = entry.get("id"), entry.get("specs")
    if not isinstance(ident, str) or not ident or len(ident) > MAX_ID:
        raise NotOSV(f"{where}: a safety-db entry of {package!r} has no valid `id`")
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise NotOSV(f"{where}: {ident} has no `specs` list")
    text = str(entry.get("advisory") or "")
    return Advisory(
        id=ident,
        modified=modified,
        published=None,
        withdrawn=None,
        aliases=sorted({m.upper() for m in _CVE.findall(str(entry.get("cve") or ""))}),
        summary=text[:2000],
        severity="unknown",
        cvss_vector=None,
        cvss_score=None,
        affected=[
            Affected(
                ecosystem="pypi",
                package=normalize_name("PyPI", package),
                ranges=[{"type": RANGE_TYPE, "events": [], "specs": specs}],
                versions=[],
                severity=None,
            )
        ],
    )


def fixed_bound(spec: str) -> str | None:
    """The version a `<X` clause names: the first one outside the specifier set."""
    for clause in spec.split(","):
        clause = clause.strip()
        if clause.startswith("<") and not clause.startswith("<="):
            return clause[1:].strip()
    return None
