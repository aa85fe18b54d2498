"""Tables of token auth: the keys tokens are signed with, shared by every node through the DB."""

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow


class SigningKey(Base):
    """An ES256 key pair. The newest unretired key signs; every unretired key verifies, so a rotation
    never breaks tokens already handed out. Retiring a key revokes the tokens it signed."""

    __tablename__ = "auth_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)  # libtrust fingerprint of the public key
    algorithm: Mapped[str] = mapped_column(String(16), default="ES256")
    private_key: Mapped[str] = mapped_column(Text)  # PKCS#8 PEM
    public_key: Mapped[str] = mapped_column(Text)  # SubjectPublicKeyInfo PEM
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
