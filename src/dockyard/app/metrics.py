"""/metrics: what a scrape renders (the process's metrics and the sections computed from the
database at scrape time) and who may read it on http.addr."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from dockyard.api.health import OPTIONAL_CHECKS, Check
from dockyard.api.metrics import MetricsAccess, Render
from dockyard.api.metrics_state import RegistryStateCollector

# The composition without HTTP lives in dockyard.services (the job runner builds it without the web
# stack); these names stay importable from here too.
from dockyard.bootstrap import (
    auth_mode,
)
from dockyard.config.settings import Settings
from dockyard.errors import DockyardError
from dockyard.jobs.metrics import QueueDepthCollector
from dockyard.observability.metrics import Metrics
from dockyard.observability.state import StateCollector
from dockyard.projects.quotas import exposition as quota_exposition
from dockyard.services import (
    Services,
)

if TYPE_CHECKING:  # ldap3 loads only where LDAP is configured
    pass
from dockyard.app.auth import Auth

log = logging.getLogger("dockyard.app")


def metrics_render(metrics: Metrics, services: Services, state: StateCollector) -> Render:
    # The queue's depth is read from the DB too, with the names a standalone `dockyard worker` uses.
    queue_depth = QueueDepthCollector(services.jobs.db, services.jobs.known_kinds or ())
    registry_state = RegistryStateCollector(services.db)
    quotas = services.quotas
    # Computed at scrape time (the same on every worker and node). Those that read the database are
    # left out while it is down, so the scrape still answers with dockyard_up{check="database"} 0.
    sections: list[Callable[[], bytes]] = [
        state.exposition,
        lambda: quota_exposition(quotas.all()),
        queue_depth.exposition,
        registry_state.exposition,
    ]

    def render() -> tuple[bytes, str]:
        body, content_type = metrics.render()
        return body + b"".join(_section(part) for part in sections), content_type

    return render


def _section(part: Callable[[], bytes]) -> bytes:
    try:
        return part()
    except (SQLAlchemyError, DockyardError, OSError) as exc:
        log.warning("metrics: left out %s: %s", getattr(part, "__qualname__", part), exc)
        return b""


def state_collector(settings: Settings, services: Services, checks: dict[str, Check]) -> StateCollector:
    volumes: dict[str, Path] = {}
    if settings.storage.driver_name == "filesystem":
        volumes["storage"] = settings.storage_root
    database = services.db.engine.url.database
    if services.db.dialect == "sqlite" and database and database != ":memory:":
        volumes["database"] = Path(database).parent
    return StateCollector(
        checks,
        required=(name for name in checks if name not in OPTIONAL_CHECKS),
        volumes=volumes,
        certificate=settings.http.tls.certificate,
    )


def metrics_access(settings: Settings, auth: Auth) -> MetricsAccess:
    """/metrics on http.addr: administrators and the metrics token; open with auth off (anyone may pull
    anything there) unless a token is set, or when metrics.public says so."""
    mode = auth_mode(settings)
    return MetricsAccess(
        open_to_all=settings.metrics.public or (mode == "none" and not settings.metrics.token),
        token=settings.metrics.token,
        logins=auth.logins,
        admins_only=mode != "htpasswd",  # htpasswd users may do everything
    )
