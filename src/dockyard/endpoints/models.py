"""The table of registry endpoints. The credential's secret is stored sealed (`secrets.py`): a copy of
the database alone cannot reveal it."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")


class EndpointRow(Base):
    __tablename__ = "registry_endpoints"
    __table_args__ = (UniqueConstraint("name", name="uq_registry_endpoints_name"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    kind: Mapped[str] = mapped_column(String(16))  # interfaces.EndpointKind
    auth_kind: Mapped[str] = mapped_column(String(8), default="none")  # none | basic | token
    username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # secrets.SecretBox.seal(name, secret): "v1:" + base64(nonce + AES-GCM ciphertext); never in the clear.
    sealed_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    ca_pem: Mapped[str | None] = mapped_column(Text, nullable=True)  # extra CAs: public, not secret
    verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
