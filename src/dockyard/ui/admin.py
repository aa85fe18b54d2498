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
from dockyard.ui.handlers import form_text, read_page, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer
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
            Route("/admin/jobs/{job_id}/cancel", self.cancel_job, methods=["POST"]),
            Route("/admin/jobs/{job_id}/retry", self.retry_job, methods=["POST"]),
        ]

    # --- users -------------------------------------------------------------------------------------
    async def users(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        q = request.query_params.get("q", "")[:255]
        paged = await read_page(portal, caller, request, "/users", PAGE_SIZE, {"q": q})
        return portal.render(
            request,
            "admin_users.html",
            status,
            users=paged.items,
            total=paged.total,
            q=q,
            page=paged.page,
            pages=paged.pages,
            error=error,
        )

    async def create_user(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        body = {
            "username": form_text(form, "username").strip(),
            "password": form_text(form, "password") or None,
            "email": form_text(form, "email").strip() or None,
            "admin": form.get("admin") == "on",
        }
        done = f"{MOUNT_PATH}/admin/users?q={quote(str(body['username']))}"
        return await submit(self.portal, request, caller, "POST", "/users", body, done=done, again=self.users)

    async def change_user(self, request: Request) -> Response:
        """One change per form: `disabled` or `admin`, "true" or "false"."""
        caller, _, form = await self.portal.checked(request)
        username = request.path_params["username"]
        if not USERNAME.fullmatch(username):
            raise self.portal.not_found()
        body = {f: form_text(form, f) == "true" for f in ("disabled", "admin") if f in form}
        if len(body) != 1:
            return await self.users(request, error="Change one thing at a time.", status=400)
        path, done = f"/users/{username}", f"{MOUNT_PATH}/admin/users?q={quote(username)}"
        return await submit(self.portal, request, caller, "PATCH", path, body, done=done, again=self.users)

    # --- the audit log -----------------------------------------------------------------------------
    async def audit(self, request: Request) -> Response:
        return await self._filtered(request, "/audit", "admin_audit.html", AUDIT_FILTERS, "events", 255)

    async def _filtered(
        self, request: Request, path: str, template: str, names: tuple[str, ...], key: str, width: int
    ) -> Response:
        """A list with the API's filters; a filter the API refuses (400, 422) is said on the page."""
        portal = self.portal
        caller, _ = portal.signed_in(request)
        filters = {k: request.query_params.get(k, "")[:width].strip() for k in names}
        paged = await read_page(portal, caller, request, path, PAGE_SIZE, filters, tolerant=True)
        return portal.render(
            request,
            template,
            paged.status,
            **{key: paged.items},
            total=paged.total,
            filters=filters,
            page=paged.page,
            pages=paged.pages,
            error=paged.error,
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
        return await self._filtered(request, "/jobs", "admin_jobs.html", JOB_FILTERS, "jobs", 64)

    async def job(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        """The job's page; asked by htmx (the page follows a running job), its live part alone."""
        portal = self.portal
        caller, _ = portal.signed_in(request)
        job_id = request.path_params["job_id"]
        if not NUMBER.fullmatch(job_id):
            raise portal.not_found()
        job = (await portal.read(caller, f"/jobs/{job_id}")).json()
        live_part = request.headers.get("hx-request") == "true"
        template = "_job_state.html" if live_part else "admin_job.html"
        return portal.render(request, template, status, job=job, error=error)

    async def cancel_job(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        job_id = request.path_params["job_id"]
        if not NUMBER.fullmatch(job_id):
            raise self.portal.not_found()
        path, done = f"/jobs/{job_id}/cancel", f"{MOUNT_PATH}/admin/jobs/{job_id}"
        return await submit(self.portal, request, caller, "POST", path, done=done, again=None)

    async def retry_job(self, request: Request) -> Response:
        """A new job like a failed or cancelled one; its page follows. A job that may not be retried
        (still queued or running, or done) is the API's 409, said on the job's page."""
        caller, _, _ = await self.portal.checked(request)
        job_id = request.path_params["job_id"]
        if not NUMBER.fullmatch(job_id):
            raise self.portal.not_found()

        async def to_new_job(answer: ApiAnswer) -> Response:
            return RedirectResponse(f"{MOUNT_PATH}/admin/jobs/{int(answer.json()['id'])}", 303)

        async def again(request: Request, error: str | None = None, status: int = 200) -> Response:
            return await self.job(request, error=error, status=status)

        path = f"/jobs/{job_id}/retry"
        return await submit(self.portal, request, caller, "POST", path, done=to_new_job, again=again)
