"""Administration in the portal: users (list, create, disable or enable, make or unmake a system
administrator), the audit log with its filters, system information and health, and the job runs (GC,
retention, replication...) with each run's progress and log. Each is the management API's call as
the user, so a user who is no system administrator gets the API's own refusal (403) on every page
but the system information, which the API shows to anyone signed in.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.manage import form_text

if TYPE_CHECKING:
    from dockyard.ui.pages import Portal

NUMBER = re.compile(r"[0-9]{1,18}")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")
AUDIT_FILTERS = (
    "actor",
    "actor_kind",
    "action",
    "resource_type",
    "resource",
    "result",
    "client_ip",
    "since",
    "until",
)
JOB_FILTERS = ("kind", "status")
PAGE_SIZE = 50


class AdminPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/users", self.users, methods=["GET"]),
            Route("/admin/users", self.create_user, methods=["POST"]),
            Route("/admin/users/{username}/change", self.change_user, methods=["POST"]),
            Route("/admin/audit", self.audit, methods=["GET"]),
            Route("/admin/system", self.system, methods=["GET"]),
            Route("/admin/jobs", self.jobs, methods=["GET"]),
            Route("/admin/jobs/{job_id}", self.job, methods=["GET"]),
        ]

    # --- users -------------------------------------------------------------------------------------
    async def users(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        q, page = request.query_params.get("q", "")[:255], _page(request)
        params = {"page": str(page), "page_size": str(PAGE_SIZE), **({"q": q} if q else {})}
        answer = await portal.read(caller, "/users", params)
        return portal.render(
            request,
            "admin_users.html",
            status,
            users=answer.json(),
            total=answer.total,
            q=q,
            page=page,
            pages=max(1, -(-answer.total // PAGE_SIZE)),
            error=error,
        )

    async def create_user(self, request: Request) -> Response:
        portal = self.portal
        caller, _, form = await portal.checked(request)
        body = {
            "username": form_text(form, "username").strip(),
            "password": form_text(form, "password") or None,
            "email": form_text(form, "email").strip() or None,
            "admin": form.get("admin") == "on",
        }
        answer = await portal.api.call(caller, "POST", "/users", body=body)
        if answer.status in (401, 403, 404):
            portal.refused(answer)
        if not answer.ok:
            return await self.users(request, error=answer.message, status=answer.status)
        return RedirectResponse(f"{MOUNT_PATH}/admin/users?q={quote(str(body['username']))}", 303)

    async def change_user(self, request: Request) -> Response:
        """One change per form: `disabled` or `admin`, "true" or "false"."""
        portal = self.portal
        caller, _, form = await portal.checked(request)
        username = request.path_params["username"]
        if not USERNAME.fullmatch(username):
            raise portal.not_found()
        body = {f: form_text(form, f) == "true" for f in ("disabled", "admin") if f in form}
        if len(body) != 1:
            return await self.users(request, error="Change one thing at a time.", status=400)
        answer = await portal.api.call(caller, "PATCH", f"/users/{username}", body=body)
        if answer.status in (401, 403, 404):
            portal.refused(answer)
        if not answer.ok:
            return await self.users(request, error=answer.message, status=answer.status)
        return RedirectResponse(f"{MOUNT_PATH}/admin/users?q={quote(username)}", 303)

    # --- the audit log -----------------------------------------------------------------------------
    async def audit(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        filters = {k: request.query_params.get(k, "")[:255].strip() for k in AUDIT_FILTERS}
        page = _page(request)
        params = {"page": str(page), "page_size": str(PAGE_SIZE), **{k: v for k, v in filters.items() if v}}
        answer = await portal.api.call(caller, "GET", "/audit", params=params)
        if answer.status in (401, 403, 404):
            portal.refused(answer)
        error = None if answer.ok else answer.message  # a filter the API refuses (400, 422): say which
        total = answer.total if answer.ok else 0
        return portal.render(
            request,
            "admin_audit.html",
            200 if answer.ok else answer.status,
            events=answer.json() if answer.ok else [],
            total=total,
            filters=filters,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            error=error,
        )

    # --- system ------------------------------------------------------------------------------------
    async def system(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        info, health = await asyncio.gather(
            portal.read(caller, "/systeminfo"), portal.read(caller, "/health", quiet=True)
        )
        return portal.render(request, "admin_system.html", info=info.json(), health=health.json())

    # --- jobs --------------------------------------------------------------------------------------
    async def jobs(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        filters = {k: request.query_params.get(k, "")[:64].strip() for k in JOB_FILTERS}
        page = _page(request)
        params = {"page": str(page), "page_size": str(PAGE_SIZE), **{k: v for k, v in filters.items() if v}}
        answer = await portal.api.call(caller, "GET", "/jobs", params=params)
        if answer.status in (401, 403, 404):
            portal.refused(answer)
        total = answer.total if answer.ok else 0
        return portal.render(
            request,
            "admin_jobs.html",
            200 if answer.ok else answer.status,
            jobs=answer.json() if answer.ok else [],
            total=total,
            filters=filters,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            error=None if answer.ok else answer.message,
        )

    async def job(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        job_id = request.path_params["job_id"]
        if not NUMBER.fullmatch(job_id):
            raise portal.not_found()
        job = (await portal.read(caller, f"/jobs/{job_id}")).json()
        return portal.render(request, "admin_job.html", job=job)


def _page(request: Request) -> int:
    try:
        return max(1, min(int(request.query_params.get("page", "1")), 1_000_000))
    except ValueError:
        return 1
