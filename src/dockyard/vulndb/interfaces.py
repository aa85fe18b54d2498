"""What the vulnerability database takes and gives: packages in, findings out; imports and the errors.

A package to match is anything with `ecosystem` (an OSV ecosystem name, with the distribution release
where there is one: "Debian:12", "Alpine:v3.20", "PyPI"), `name` (for Debian and Alpine the *source*
package, as OSV names them) and `version` attributes: the scanning package's records fit as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dockyard.errors import Category, DockyardError


class ImportInvalid(DockyardError):
    """An import was refused; nothing of it was written (the previous version stays)."""

    category = Category.INVALID
    message = "the advisories could not be imported"


class NotOSV(ImportInvalid):
    message = "not an OSV record"


class ArchiveUnsafe(ImportInvalid):
    """A zip entry whose name leaves the archive (../, /abs), or that expands past the size limit."""

    message = "unsafe archive"


class AllowlistInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid allowlist entry"


class AllowlistEntryNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "no such allowlist entry"


class PackageLike(Protocol):
    @property
    def ecosystem(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class Package:
    """The plain PackageLike."""

    ecosystem: str
    name: str
    version: str


@dataclass
class Finding:
    """An advisory that affects an installed package."""

    advisory_id: str
    aliases: list[str]
    summary: str
    severity: str  # critical | high | medium | low | none | unknown
    cvss_score: float | None
    cvss_vector: str | None
    ecosystem: str
    name: str
    installed_version: str
    fixed_versions: list[str]  # the first fix above the installed version, per matching range
    allowlisted: bool = False
    package: Any = field(default=None, repr=False, compare=False)  # what was passed in

    def ids(self) -> set[str]:
        return {self.advisory_id.upper(), *(a.upper() for a in self.aliases)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.advisory_id,
            "aliases": self.aliases,
            "summary": self.summary,
            "severity": self.severity,
            "cvss_score": self.cvss_score,
            "cvss_vector": self.cvss_vector,
            "ecosystem": self.ecosystem,
            "package": self.name,
            "installed_version": self.installed_version,
            "fixed_versions": self.fixed_versions,
            "allowlisted": self.allowlisted,
        }


@dataclass
class ImportReport:
    import_id: int
    version: int  # the database version after the import (unchanged when nothing changed)
    documents: int
    added: int
    updated: int
    unchanged: int
    affected: int
    ignored: int  # files skipped by name: not .json/.yaml in a directory or zip
    advisories_total: int
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"changed": self.changed}


@dataclass
class VulnDBStatus:
    version: int  # 0: nothing imported yet
    advisories: int
    affected: int
    withdrawn: int
    by_ecosystem: dict[str, int]  # affected-package rows per ecosystem
    last_import: dict[str, Any] | None  # the newest import, changed anything or not
    last_change: dict[str, Any] | None  # the import that made the current version

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class AllowlistEntry:
    id: int
    vuln_id: str
    project: str | None  # None: system-wide
    expires_at: datetime | None
    reason: str
    created_by: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
