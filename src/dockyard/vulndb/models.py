"""Tables of the offline vulnerability database: advisories, their affected packages, the imports (the
database's versions), and the allowlist of vulnerability ids a project (or everyone) accepts."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.projects import models as _projects  # noqa: F401  (project_id refers to it)

_ID = BigInteger().with_variant(Integer(), "sqlite")


class VulnImportRow(Base):
    """One import. The database's version is the id of the last import that changed something."""

    __tablename__ = "vulndb_imports"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(Text)  # the paths given, or what the caller says
    documents: Mapped[int] = mapped_column(Integer)  # advisories read (OSV records, safety-db entries)
    added: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)  # a newer `modified` replaced the stored record
    unchanged: Mapped[int] = mapped_column(Integer)  # same `modified` as stored (or older)
    affected: Mapped[int] = mapped_column(Integer)  # affected-package rows written
    advisories_total: Mapped[int] = mapped_column(Integer)  # in the database after the import


class AdvisoryRow(Base):
    __tablename__ = "vulndb_advisories"
    __table_args__ = (Index("ix_vulndb_advisories_import", "import_id"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the OSV id: GHSA-..., PYSEC-..., DSA-...
    modified: Mapped[datetime] = mapped_column(UTCDateTime)
    published: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    withdrawn: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # never matched
    aliases: Mapped[list[str]] = mapped_column(JSON)  # CVE-..., GHSA-...
    summary: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))  # critical | high | medium | low | none | unknown
    cvss_vector: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cvss_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    import_id: Mapped[int] = mapped_column(_ID)  # the import that last wrote it: "what changed since N"


class AffectedRow(Base):
    """One `affected[]` entry: a package in an ecosystem (both normalised, versions.py) and its ranges."""

    __tablename__ = "vulndb_affected"
    __table_args__ = (
        Index("ix_vulndb_affected_package", "ecosystem", "package"),
        Index("ix_vulndb_affected_advisory", "advisory_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    advisory_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("vulndb_advisories.id", ondelete="CASCADE")
    )
    ecosystem: Mapped[str] = mapped_column(String(255))  # lower-cased: "pypi", "debian:12"
    package: Mapped[str] = mapped_column(String(512))  # normalised name
    ranges: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{"type", "events"}], GIT ones left out
    versions: Mapped[list[str]] = mapped_column(JSON)  # the explicit `versions` list
    severity: Mapped[str | None] = mapped_column(String(16), nullable=True)  # this package's own, if any


class AllowlistRow(Base):
    """A vulnerability id (CVE or advisory id, matched against ids and aliases) that is accepted:
    system-wide (project_id NULL) or in one project, until `expires_at` (NULL: no expiry)."""

    __tablename__ = "vulndb_allowlist"
    __table_args__ = (Index("ix_vulndb_allowlist_vuln", "vuln_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True
    )
    vuln_id: Mapped[str] = mapped_column(String(128))  # as written; compared without case
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
