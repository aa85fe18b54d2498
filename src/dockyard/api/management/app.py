"""The management API: a FastAPI app the composition root mounts at /api/v1.

Routes are relative (`/repositories`); mounted with `Mount("/api/v1", app=...)` they answer at
`/api/v1/repositories`, and the OpenAPI document at `/api/v1/openapi.json`.
"""

from __future__ import annotations

import threading
from functools import partial

from fastapi import Depends, FastAPI

from dockyard import __version__
from dockyard.api.management import dispatch
from dockyard.api.management.audit import record_refusal
from dockyard.api.management.context import ManagementServices
from dockyard.api.management.errors import install_error_handlers
from dockyard.api.management.plain_text import refuse_nul_characters
from dockyard.api.management.router_groups import ALL, IncludedRouters, RouterGroups, include_routers


def create_management_app(services: ManagementServices) -> FastAPI:
    """The whole API, every router included."""
    app = _bare_app(services)
    include_routers(app, ALL, set(), included_routers())
    return app


def create_lazy_management_app(services: ManagementServices) -> RouterGroups:
    """The API as a worker serves it: each router included on the first request under its paths."""
    return RouterGroups(_bare_app(services), included_routers())


_included: IncludedRouters | None = None
_included_lock = threading.Lock()


def included_routers() -> IncludedRouters:
    """The routers as included in this process's API apps (router_groups.IncludedRouters), made on the
    first call: a worker's one API, or the many a test process builds, share them."""
    global _included
    with _included_lock:
        if _included is None:
            _included = IncludedRouters(_api_app)
        return _included


def _bare_app(services: ManagementServices) -> FastAPI:
    app = _api_app()
    app.state.services = services
    dispatch.install(app.router)  # a request tries the routes under its first segment only
    install_error_handlers(app, partial(record_refusal, services))
    return app


def _api_app() -> FastAPI:
    """The API's FastAPI app without routers, services or error handlers: its configuration, which is
    what including a router reads from it (IncludedRouters' template is one)."""
    return FastAPI(
        title="dockyard management API",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(refuse_nul_characters)],
        description=(
            'Errors: `{"errors": [{"code": "NOT_FOUND", "message": "..."}]}`. Lists: `page`, '
            "`page_size` (at most 100), `sort` (`name`, `-created_at`), `q` (substring) and per-list "
            "filters; totals in `X-Total-Count`, pages in `Link`. Authentication: HTTP Basic (password, "
            "personal access token or robot secret) or the session cookie from `POST /login` (then "
            "unsafe methods need the `X-CSRF-Token` header)."
        ),
    )
