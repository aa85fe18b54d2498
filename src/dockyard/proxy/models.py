"""Tables of the pull-through cache: which projects proxy which endpoint, and what each cached tag was
last checked against upstream. The cached manifests, tags and blobs themselves are ordinary rows of the
registry's tables (so quotas, retention, GC and listings treat them like pushed ones); these rows are
the cache's state, in the metadata DB so every node of a cluster sees the same cache."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.endpoints import models as _endpoint_models  # noqa: F401  (registry_endpoints)
from dockyard.projects import models as _project_models  # noqa: F401  (projects)
from dockyard.registry import models as _registry_models  # noqa: F401  (repositories)
from dockyard.storage.models import DIGEST_LENGTH

_ID = BigInteger().with_variant(Integer(), "sqlite")


class ProxyProjectRow(Base):
    """A project that is a pull-through cache of one endpoint. An endpoint in use cannot be deleted."""

    __tablename__ = "proxy_projects"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    endpoint_id: Mapped[int] = mapped_column(
        _ID, ForeignKey("registry_endpoints.id", ondelete="RESTRICT"), index=True
    )
    tag_ttl_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProxyTagRow(Base):
    """A tag of a proxy project: the digest upstream last gave for it, and when it was last checked
    (a tag younger than the project's TTL is served without asking upstream)."""

    __tablename__ = "proxy_tags"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    upstream_digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
