"""Tables of signature verification: a project's trusted public keys, its key-set version, and the
cached verdicts (one row per project and artifact digest, valid for one key-set version)."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.projects import models as _projects  # noqa: F401  (project_id refers to it)
from dockyard.registry import models as _registry  # noqa: F401  (repository_id refers to it)
from dockyard.storage.models import DIGEST_LENGTH

_ID = BigInteger().with_variant(Integer(), "sqlite")


class TrustedKeyRow(Base):
    """A PEM public key (SubjectPublicKeyInfo) a project trusts for signatures."""

    __tablename__ = "trusted_keys"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    algorithm: Mapped[str] = mapped_column(String(32))  # ecdsa-p256 | ecdsa-p384 | rsa | ed25519
    public_key: Mapped[str] = mapped_column(Text)  # the PEM as given (normalised to SPKI)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the DER SubjectPublicKeyInfo, hex
    # A certificate's named notation trust store (`ca:<store>` in trust policies); NULL: its own name.
    trust_store: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrustKeySetRow(Base):
    """The version of a project's key set: bumped by every add and delete, never reset, so a verdict
    made against an older set is never read again."""

    __tablename__ = "trust_keysets"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    version: Mapped[int] = mapped_column(_ID)


class NotationTrustPolicyRow(Base):
    """A project's notation trust policy (notation's trustpolicy.json, validated, as JSON); setting or
    removing it bumps the key-set version, as a key change does."""

    __tablename__ = "notation_trust_policies"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    document: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignatureVerdictRow(Base):
    """The last verdict on an artifact of a repository (signatures count in the repository they are
    in). `keyset_version` (of the repository's project) and `evidence` (the digests of the signature
    manifests seen) say what it was made from: a different key set or a new signature manifest makes
    it stale."""

    __tablename__ = "signature_verdicts"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    keyset_version: Mapped[int] = mapped_column(_ID)
    evidence: Mapped[str] = mapped_column(Text)  # sorted signature manifest digests, comma-separated
    status: Mapped[str] = mapped_column(String(16))  # verified | unsigned | invalid
    key_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    signature: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), nullable=True)  # the manifest
    reason: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SigstoreTrustRootRow(Base):
    """A Sigstore `trusted_root.json` (Fulcio CAs, Rekor and CT log keys) the operator imported, for a
    project or (project_id NULL) system-wide; keyless bundles verify against it."""

    __tablename__ = "sigstore_trust_roots"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True, nullable=True
    )
    name: Mapped[str] = mapped_column(String(128))
    document: Mapped[str] = mapped_column(Text)  # the JSON as imported
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SigstoreIdentityRow(Base):
    """Who may sign a project's artifacts keyless: the certificate's SAN (exact, or a regular
    expression) and its OIDC issuer (cosign's --certificate-identity[-regexp], --certificate-oidc-issuer)."""

    __tablename__ = "sigstore_identities"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    issuer: Mapped[str] = mapped_column(String(1024))
    san: Mapped[str | None] = mapped_column(Text, nullable=True)
    san_regex: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
