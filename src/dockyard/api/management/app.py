"""The management API: a FastAPI app the composition root mounts at /api/v1.

Routes are relative (`/repositories`); mounted with `Mount("/api/v1", app=...)` they answer at
`/api/v1/repositories`, and the OpenAPI document at `/api/v1/openapi.json`.
"""

from __future__ import annotations

from functools import partial

from fastapi import Depends, FastAPI

from dockyard import __version__
from dockyard.api.management.audit import record_refusal
from dockyard.api.management.context import ManagementServices
from dockyard.api.management.errors import install_error_handlers
from dockyard.api.management.plain_text import refuse_nul_characters
from dockyard.api.management.routers import (
    artifact_contents,
    audit,
    endpoints,
    files,
    groups,
    immutable_rules,
    keys,
    notifications,
    oidc,
    projects,
    quotas,
    replication,
    repositories,
    robots,
    scanners,
    scans,
    search,
    session,
    sign_in,
    signatures,
    sigstore,
    system,
    users,
    vulndb,
    webhooks,
)
from dockyard.api.management.routers import jobs as job_routes
from dockyard.api.management.routers import retention as retention_routes


def create_management_app(services: ManagementServices) -> FastAPI:
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
    install_error_handlers(app, partial(record_refusal, services))
    # Before repositories: its /repositories/{name:path} would take .../artifacts/{ref}/signature.
    app.include_router(signatures.router)  # trusted keys, signature verdicts
    app.include_router(sigstore.router)  # Sigstore trust roots and identities (keyless)
    app.include_router(scans.router)  # vulnerability scans of artifacts, scan settings (the same)
    app.include_router(files.router)  # the layer browser: files of layers and images, diffs (the same)
    app.include_router(artifact_contents.router)  # an artifact's config and referrers (the same)
    for module in (system, sign_in, keys, session, oidc, users, groups, projects, robots, repositories):
        app.include_router(module.router)
    app.include_router(search.router)
    app.include_router(audit.router)
    for module in (quotas, immutable_rules, webhooks):  # project policies
        app.include_router(module.router)
    app.include_router(job_routes.router)  # background jobs and their schedules
    app.include_router(retention_routes.router)  # tag retention policies and runs
    app.include_router(endpoints.router)  # registry endpoints (remote registries)
    app.include_router(notifications.router)  # registry:2 notification endpoints, their delivery log
    app.include_router(vulndb.router)  # the offline vulnerability database's status
    app.include_router(replication.router)  # replication policies and their runs
    app.include_router(scanners.router)  # external scanners (Harbor pluggable scanner API adapters)
    return app
