"""Tables of the storage layer: the blobs the registry holds and the uploads in flight."""

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow

DIGEST_LENGTH = 160  # "sha512:" + 128 hex, with room


class Blob(Base):
    """A blob stored once in the storage driver, whatever number of repositories link it."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # When a manifest that referenced the blob was last deleted: garbage collection keeps the blob
    # for its safety window from then (see docs/gc.md).
    unreferenced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set by garbage collection when it commits to deleting the blob; the row goes once the bytes
    # are gone. Readers treat such a row as absent (docs/gc.md).
    deleting_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Upload(Base):
    """An upload session: this row plus a temp object at `uploads/<id>/data` in storage."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    repository: Mapped[str] = mapped_column(String(255))
    # Its repository's project: the bytes of a project's open uploads count against its quota
    # (projects.upload_room).
    project: Mapped[str] = mapped_column(String(255), index=True)
    # Who started it (with auth on, e.g. "user:12"; None with auth off): only they may continue it.
    owner: Mapped[str | None] = mapped_column(String(300), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # The writer state (FileWriter.fingerprint) `size` was recorded with, where the driver cannot keep
    # two writers of the upload apart (S3): a resume finding another knows the bytes are not these.
    storage_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
