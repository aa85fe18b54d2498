"""Tables of stored scans: one row per artifact (repository and manifest digest) with its status and
summary counts, its findings, and each project's scan settings.

Per repository and digest, not per digest alone: the allowlist that hides findings is per project, a
repository's deletion takes its scans with it (the foreign key), and a pull policy asks about the
artifact of the repository it serves, as signature verdicts are kept (signatures.models).
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.projects import models as _projects  # noqa: F401  (project_id refers to it)
from dockyard.registry import models as _registry  # noqa: F401  (repository_id refers to it)
from dockyard.storage import models as _storage  # noqa: F401  (layer_file_indexes refers to it)
from dockyard.storage.models import DIGEST_LENGTH

_ID = BigInteger().with_variant(Integer(), "sqlite")


class ScanRow(Base):
    """An artifact's scan. `status` is the latest scan's (pending | running | done | failed, `reason`
    says why it failed); the result columns (`scanned_at`, `vulndb_version`, the counts) are the last
    finished scan's, so a rescan that is pending or running leaves the previous result readable. A
    failed scan clears them: a scan that could not read the image has no result, never "no
    vulnerabilities". Counts leave allowlisted findings out (`allowlisted` counts those)."""

    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_stale", "status", "vulndb_version"),)

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(_ID, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # of the result
    vulndb_version: Mapped[int | None] = mapped_column(_ID, nullable=True)
    packages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    critical: Mapped[int | None] = mapped_column(Integer, nullable=True)
    high: Mapped[int | None] = mapped_column(Integer, nullable=True)
    medium: Mapped[int | None] = mapped_column(Integer, nullable=True)
    low: Mapped[int | None] = mapped_column(Integer, nullable=True)
    negligible: Mapped[int | None] = mapped_column(Integer, nullable=True)  # OSV's "none"
    unknown: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allowlisted: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The earliest expiry of the allowlist entries that hid findings: past it the counts are recomputed.
    allowlist_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    incomplete: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)  # unreadable formats
    # Which scanner made the last result or failure: "built-in", or a registered scanner's name (the name
    # as it was: a scanner deleted or renamed later leaves its results readable, and attributed).
    scanner: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ScanFindingRow(Base):
    """One advisory affecting one package of the scanned artifact (of one image of an index)."""

    __tablename__ = "scan_findings"
    __table_args__ = (
        ForeignKeyConstraint(
            ["repository_id", "digest"], ["scans.repository_id", "scans.digest"], ondelete="CASCADE"
        ),
        Index("ix_scan_findings_scan", "repository_id", "digest"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    repository_id: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    image: Mapped[str] = mapped_column(String(DIGEST_LENGTH))  # the image manifest (an index's child)
    platform: Mapped[str] = mapped_column(String(64))
    advisory_id: Mapped[str] = mapped_column(String(128))
    aliases: Mapped[list[str]] = mapped_column(JSON)
    summary: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    cvss_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    cvss_vector: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ecosystem: Mapped[str] = mapped_column(String(255))
    package: Mapped[str] = mapped_column(String(512))
    installed_version: Mapped[str] = mapped_column(String(255))
    fixed_versions: Mapped[list[str]] = mapped_column(JSON)
    layer: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    path: Mapped[str] = mapped_column(Text)
    purl: Mapped[str] = mapped_column(Text)
    allowlisted: Mapped[bool] = mapped_column(Boolean, default=False)


class ScanSettingsRow(Base):
    """A project's scan settings: scan every manifest pushed to it (a job, after the push)."""

    __tablename__ = "scan_settings"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    scan_on_push: Mapped[bool] = mapped_column(Boolean, default=False)


class ScannerRow(Base):
    """An external scanner: a Harbor pluggable scanner API adapter (Trivy's, another dockyard's) that
    `scan` jobs send scan requests to. Its secret (a bearer token or a Basic password) is sealed like
    an endpoint's (endpoints.secrets); at most one row is the default (`is_default`), none: the built-in
    scanner."""

    __tablename__ = "scanners"
    __table_args__ = (UniqueConstraint("name", name="uq_scanners_name"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))  # the adapter's base: {url}/api/v1/metadata
    auth_kind: Mapped[str] = mapped_column(String(8), default="none")  # none | basic | token
    username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sealed_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The URL the adapter pulls this registry from (null: the registry's own, http.host).
    registry_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    request_timeout: Mapped[float] = mapped_column(Float, default=30.0)  # one HTTP request, seconds
    scan_timeout: Mapped[float] = mapped_column(Float, default=600.0)  # a report, polled, seconds
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LayerFileIndex(Base):
    """The entries of one layer blob, as the layer browser lists them (scans.layer_index), so browsing
    a directory does not read the whole layer again. Derived from the blob and keyed by its digest:
    never stale, and deleted with the blob's row (the foreign key) when GC deletes the blob."""

    __tablename__ = "layer_file_indexes"

    digest: Mapped[str] = mapped_column(
        String(DIGEST_LENGTH), ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True
    )
    entries: Mapped[int] = mapped_column(Integer)
    with_digests: Mapped[bool] = mapped_column(Boolean, default=False)  # each file's sha256 is kept
    content: Mapped[bytes] = mapped_column(LargeBinary)  # gzip of one JSON array per entry, a line each
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
