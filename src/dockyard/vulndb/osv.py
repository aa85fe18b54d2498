"""One OSV document (https://ossf.github.io/osv-schema/) to the rows the database keeps.

Kept: id, aliases, summary (else the first line of `details`), published/modified/withdrawn, a
severity, and per `affected[]` entry the package (ecosystem and normalised name), the non-GIT ranges and
the explicit `versions` list. Left out: details, references, credits, GIT ranges (ranges.py says why).

Severity: the CVSS vector in `severity[]` (the advisory's, else an affected package's; v3 preferred, then
v4, then v2) scored with the `cvss` library; else a level the database gives (`database_specific.severity`
as GitHub's "MODERATE", an `Ubuntu` priority, `ecosystem_specific`/`database_specific` severity of an
affected package); else "unknown". Levels: critical >= 9.0, high >= 7.0, medium >= 4.0, low > 0, none 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from dockyard.vulndb.interfaces import NotOSV
from dockyard.vulndb.versions import ecosystem_key, normalize_name

LEVELS = ("critical", "high", "medium", "low", "none", "unknown")  # most severe first
_WORDS = {
    "critical": "critical",
    "high": "high",
    "important": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "negligible": "low",
    "unimportant": "low",
    "none": "none",
}
_CVSS_ORDER = ("CVSS_V3", "CVSS_V4", "CVSS_V2")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$", re.IGNORECASE)
MAX_ID = 128
MAX_NAME = 512
MAX_ECOSYSTEM = 255


@dataclass
class Affected:
    ecosystem: str
    package: str
    ranges: list[dict[str, Any]]
    versions: list[str]
    severity: str | None


@dataclass
class Advisory:
    id: str
    modified: datetime
    published: datetime | None
    withdrawn: datetime | None
    aliases: list[str]
    summary: str
    severity: str
    cvss_vector: str | None
    cvss_score: float | None
    affected: list[Affected] = field(default_factory=list)


def level_for_score(score: float) -> str:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else "none"


def parse_advisory(doc: Any, where: str) -> Advisory:
    """The rows of one OSV document; NotOSV (naming `where`) if it is not one."""
    if not isinstance(doc, Mapping):
        raise NotOSV(f"{where}: not an OSV record (a JSON object is expected)")
    ident = doc.get("id")
    if not isinstance(ident, str) or not ident.strip() or len(ident) > MAX_ID:
        raise NotOSV(f"{where}: not an OSV record (no valid `id`)")
    if "modified" not in doc:
        raise NotOSV(f"{where}: not an OSV record ({ident} has no `modified`)")
    modified = _time(doc["modified"], where, "modified")
    assert modified is not None
    aliases = doc.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise NotOSV(f"{where}: `aliases` must be a list of strings")
    affected_docs = doc.get("affected") or []
    if not isinstance(affected_docs, list):
        raise NotOSV(f"{where}: `affected` must be a list")
    summary = doc.get("summary") or ""
    if not summary and isinstance(doc.get("details"), str):
        summary = doc["details"].strip().split("\n", 1)[0][:300]
    severity, vector, score = _severity(doc, affected_docs)
    return Advisory(
        id=ident.strip(),
        modified=modified,
        published=_time(doc.get("published"), where, "published"),
        withdrawn=_time(doc.get("withdrawn"), where, "withdrawn"),
        aliases=[a.strip() for a in aliases if a.strip()][:200],
        summary=str(summary)[:2000],
        severity=severity,
        cvss_vector=vector,
        cvss_score=score,
        affected=[_affected(item, where) for item in affected_docs],
    )


def _affected(item: Any, where: str) -> Affected:
    if not isinstance(item, Mapping) or not isinstance(item.get("package"), Mapping):
        raise NotOSV(f"{where}: an `affected` entry has no `package`")
    package = item["package"]
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not isinstance(name, str) or not ecosystem or not name:
        raise NotOSV(f"{where}: an affected package needs `ecosystem` and `name` strings")
    if len(ecosystem) > MAX_ECOSYSTEM or len(name) > MAX_NAME:
        raise NotOSV(f"{where}: an affected package's ecosystem or name is too long")
    ranges = []
    for rng in item.get("ranges") or []:
        if not isinstance(rng, Mapping) or not isinstance(rng.get("events"), list):
            raise NotOSV(f"{where}: a range of {name} has no `events` list")
        kind = str(rng.get("type", "")).upper()
        if kind == "GIT":
            continue
        events = [
            {k: str(v) for k, v in e.items() if k in ("introduced", "fixed", "last_affected", "limit")}
            for e in rng["events"]
            if isinstance(e, Mapping)
        ]
        ranges.append({"type": kind, "events": [e for e in events if e]})
    versions = item.get("versions") or []
    if not isinstance(versions, list):
        raise NotOSV(f"{where}: `versions` of {name} must be a list")
    return Affected(
        ecosystem=ecosystem_key(ecosystem),
        package=normalize_name(ecosystem, name),
        ranges=ranges,
        versions=[str(v) for v in versions],
        severity=_word(item.get("ecosystem_specific")) or _word(item.get("database_specific")),
    )


def _severity(doc: Mapping[str, Any], affected: list[Any]) -> tuple[str, str | None, float | None]:
    entries = list(_entries(doc.get("severity")))
    for item in affected:
        if isinstance(item, Mapping):
            entries.extend(_entries(item.get("severity")))
    for kind in _CVSS_ORDER:
        for typ, score in entries:
            if typ == kind:
                value = cvss_score(kind, score)
                if value is not None:
                    return level_for_score(value), score, value
    word = _word(doc.get("database_specific"))
    if word:
        return word, None, None
    for typ, score in entries:
        if typ == "UBUNTU" and score.lower() in _WORDS:
            return _WORDS[score.lower()], None, None
    for item in affected:
        if isinstance(item, Mapping):
            word = _word(item.get("ecosystem_specific")) or _word(item.get("database_specific"))
            if word:
                return word, None, None
    return "unknown", None, None


def _entries(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return []
    return [
        (str(e.get("type", "")).upper(), str(e.get("score", "")))
        for e in value
        if isinstance(e, Mapping) and e.get("score")
    ]


def _word(value: Any) -> str | None:
    if isinstance(value, Mapping):
        word = value.get("severity")
        if isinstance(word, str):
            return _WORDS.get(word.strip().lower())
    return None


@lru_cache(maxsize=4096)
def cvss_score(kind: str, vector: str) -> float | None:
    """The base score of a CVSS vector, or None if it does not parse."""
    import cvss  # lazily: only imports need it

    classes = {"CVSS_V2": cvss.CVSS2, "CVSS_V3": cvss.CVSS3, "CVSS_V4": cvss.CVSS4}
    try:
        return float(classes[kind](vector).base_score)
    except Exception:  # the library raises several kinds of errors for bad vectors
        return None


def _time(value: Any, where: str, key: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # YAML loaders turn timestamps into datetimes
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    match = _TIME.match(str(value).strip())
    if match is None:
        raise NotOSV(f"{where}: `{key}` is not an RFC 3339 time: {str(value)[:40]!r}")
    base, fraction, zone = match.groups()
    text = base + (fraction[:7] if fraction else "") + ("+00:00" if zone in (None, "Z", "z") else zone)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise NotOSV(f"{where}: `{key}` is not a valid time: {str(value)[:40]!r}") from None
