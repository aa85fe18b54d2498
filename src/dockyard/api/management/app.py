"""The management API: a FastAPI app the composition root mounts at /api/v1.

Routes are relative (`/repositories`); mounted with `Mount("/api/v1", app=...)` they answer at
`/api/v1/repositories`, and the OpenAPI document at `/api/v1/openapi.json`.
"""

from __future__ import annotations

from functools import partial

from fastapi import Depends, FastAPI

from dockyard import __version__
from dockyard.api.management import dispatch
from dockyard.api.management.audit import record_refusal
from dockyard.api.management.context import ManagementServices
from dockyard.api.management.errors import install_error_handlers
from dockyard.api.management.plain_text import refuse_nul_characters
from dockyard.api.management.router_groups import ALL, RouterGroups, include_routers


def create_management_app(services: ManagementServices) -> FastAPI:
    """The whole API, every router included."""
    app = _bare_app(services)
    include_routers(app, ALL, set())
    return app


def create_lazy_management_app(services: ManagementServices) -> RouterGroups:
    """The API as a worker serves it: each router included on the first request under its paths."""
    return RouterGroups(_bare_app(services))


def _bare_app(services: ManagementServices) -> FastAPI:
    app = FastAPI(
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
    app.state.services = services
    dispatch.install(app.router)  # a request tries the routes under its first segment only
    install_error_handlers(app, partial(record_refusal, services))
    return app
